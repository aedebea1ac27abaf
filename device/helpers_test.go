package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/verify"
)

const (
	testProduct = "acme/router-x1"
	testModel   = "x1"
)

// vendor is a real signed repository (package repo) with one product role.
type vendor struct {
	t                         testing.TB
	rt                        *repotest.Vendor
	r                         *repo.Repo
	dir                       string
	root                      []crypto.Signer
	targets, snapshot, tstamp crypto.Signer
	product                   []crypto.Signer
	factoryRoot               []byte
	schema                    int // of the releases it adds: 0, the default (2), or release.SchemaV1
}

var genKey = repotest.GenKey

func newVendor(t testing.TB) *vendor { return newVendorEnv(t, "") }

// newVendorEnv makes a vendor repository for a trust environment ("" = the
// default, dev), with two product keys (threshold 1).
func newVendorEnv(t testing.TB, env string) *vendor {
	t.Helper()
	rt := repotest.New(t, repotest.Options{Product: testProduct, Model: testModel, ProductKeys: 2, Environment: env})
	return &vendor{t: t, rt: rt, r: rt.Repo, dir: rt.Repo.Dir(), root: []crypto.Signer{rt.Root}, targets: rt.Targets,
		snapshot: rt.Snapshot, tstamp: rt.Timestamp, product: rt.ProductSigners, factoryRoot: rt.FactoryRoot}
}

func (v *vendor) publish() { v.t.Helper(); v.rt.Publish() }

// testImage returns a deterministic pseudo-random image (compressible
// second half).
func testImage(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := 0; i < n/2; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// release adds and publishes a release and returns its bundle.
func (v *vendor) release(version string, sv uint32, image []byte, mod func(*repo.ReleaseOptions)) []byte {
	v.t.Helper()
	v.rt.Release(version, sv, image, func(o *repo.ReleaseOptions) {
		o.Signers = v.product[:1] // tests rotate the product keys
		o.Schema = v.schema
		if mod != nil {
			mod(o)
		}
	})
	return v.rt.Bundle(version)
}

func (v *vendor) bundle(version string) []byte { v.t.Helper(); return v.rt.Bundle(version) }

// testConfig is a device config on a Mem (or OS) filesystem rooted at dir.
func testConfig(dir string, slotSize int64) *Config {
	return &Config{
		Dir: dir, Model: testModel, HWRev: 3, Product: testProduct, Root: "factory-root.json", StateDir: "state",
		WriteChunk: 64 << 10,
		Slots:      SlotsConfig{A: "slot-a.img", B: "slot-b.img", Size: slotSize},
		Boot:       BootConfig{Backend: boot.BackendSim, Path: "bootstate"},
		Health:     HealthConfig{Command: []string{"true"}, Timeout: 10 * time.Second},
	}
}

// provision provisions a device on fsys with an initial bundle.
func provision(t testing.TB, fsys durable.FS, cfg *Config, factoryRoot, initial []byte) *Device {
	t.Helper()
	po := ProvisionOptions{FactoryRoot: factoryRoot, CreateSlots: true}
	if initial != nil {
		src, err := verify.OpenBundle(bytes.NewReader(initial))
		if err != nil {
			t.Fatal(err)
		}
		po.Initial, po.InitialTarget = src, src.TargetPath()
	}
	d, err := Provision(context.Background(), fsys, cfg, po, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func installBundle(d *Device, b []byte, opt InstallOptions) (*InstallResult, error) {
	return d.InstallBundle(context.Background(), bytes.NewReader(b), opt)
}

// fingerprint hashes what a refused install must leave unchanged: the
// active slot, the trusted metadata and the counter.
func fingerprint(t testing.TB, d *Device) map[string]string {
	t.Helper()
	st, err := d.ctl.Load()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"bootstate.good": string(st.Good)}
	hashFile := func(name string) {
		f, err := d.fsys.OpenFile(name, os.O_RDONLY, 0)
		if err != nil {
			out[name] = "error: " + err.Error()
			return
		}
		defer f.Close()
		h := sha256.New()
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			h.Write(buf[:n])
			if err != nil {
				break
			}
		}
		out[name] = hex.EncodeToString(h.Sum(nil))
	}
	active, _ := d.slotPath(st.Good)
	hashFile(active)
	hashFile(d.statePath(counterFile))
	ents, err := d.fsys.ReadDir(d.statePath(trustDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		hashFile(path.Join(d.statePath(trustDir), e.Name()))
	}
	return out
}

func mustBoot(t testing.TB, d *Device) *BootResult {
	t.Helper()
	r, err := d.Boot(context.Background())
	if err != nil {
		t.Fatalf("boot: %v", err)
	}
	return r
}

// slotImage reads the first n bytes of a slot.
func slotImage(t testing.TB, d *Device, s boot.Slot, n int) []byte {
	t.Helper()
	name, err := d.slotPath(s)
	if err != nil {
		t.Fatal(err)
	}
	data, err := durable.ReadFile(d.fsys, name, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return data[:n]
}
