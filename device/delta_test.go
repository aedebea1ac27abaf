package device

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
	"github.com/google/go-cmp/cmp"
)

// deltaFixture: 1.0.0, 1.1.0 (a few blocks of 1.0.0 changed, signing a
// delta from 1.0.0) and 1.2.0 (signing a delta from 1.1.0 only).
type deltaFixture struct {
	v        *vendor
	images   map[string][]byte
	full     map[string][]byte
	delta11  []byte // 1.1.0 from 1.0.0
	delta12  []byte // 1.2.0 from 1.1.0
	compress bool
}

func newDeltaFixture(t *testing.T, compress bool) *deltaFixture {
	f := &deltaFixture{v: newVendor(t), images: map[string][]byte{}, full: map[string][]byte{}, compress: compress}
	f.images["1.0.0"] = testImage(1, imgSize)
	prev := "1.0.0"
	for i, ver := range []string{"1.1.0", "1.2.0"} {
		img := bytes.Clone(f.images[prev])
		for _, off := range []int{100 + i, imgSize / 3, imgSize - 5 - i} {
			img[off] ^= 0xff
		}
		f.images[ver] = img
		prev = ver
	}
	mod := func(from string) func(*repo.ReleaseOptions) {
		return func(o *repo.ReleaseOptions) {
			if compress {
				o.Compress, o.FrameSize = repo.CompressZstd, 64<<10
			}
			if from != "" {
				o.DeltaFrom = []string{from}
			}
		}
	}
	f.full["1.0.0"] = f.v.release("1.0.0", 1, f.images["1.0.0"], mod(""))
	f.full["1.1.0"] = f.v.release("1.1.0", 1, f.images["1.1.0"], mod("1.0.0"))
	f.full["1.2.0"] = f.v.release("1.2.0", 1, f.images["1.2.0"], mod("1.1.0"))
	f.delta11 = f.v.rt.DeltaBundle("1.1.0", "1.0.0")
	f.delta12 = f.v.rt.DeltaBundle("1.2.0", "1.1.0")
	return f
}

func TestDeltaBundleInstall(t *testing.T) {
	for _, compress := range []bool{false, true} {
		f := newDeltaFixture(t, compress)
		d := provision(t, durable.NewMem(), testConfig("/dev", 512<<10), f.v.factoryRoot, f.full["1.0.0"])
		mustBoot(t, d)
		if len(f.delta11) > len(f.full["1.1.0"])/4 {
			t.Errorf("the delta bundle is %d bytes, the whole bundle %d", len(f.delta11), len(f.full["1.1.0"]))
		}
		res, err := installBundle(d, f.delta11, InstallOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Delta != "delta bundle from 1.0.0" || res.TransportBytes >= int64(len(f.delta11)) {
			t.Errorf("result %+v", res)
		}
		r := mustBoot(t, d)
		if r.Version != "1.1.0" || !r.Trial || !bytes.Equal(slotImage(t, d, r.Slot, imgSize), f.images["1.1.0"]) {
			t.Fatalf("boot %+v: the slot does not hold 1.1.0", r)
		}
		if _, err := d.Health(context.Background()); err != nil {
			t.Fatal(err)
		}
		// The next delta, from the release now running.
		if _, err := installBundle(d, f.delta12, InstallOptions{}); err != nil {
			t.Fatal(err)
		}
		if r := mustBoot(t, d); r.Version != "1.2.0" || !bytes.Equal(slotImage(t, d, r.Slot, imgSize), f.images["1.2.0"]) {
			t.Fatalf("boot %+v: the slot does not hold 1.2.0", r)
		}
	}
}

func TestDeltaBundleRefusals(t *testing.T) {
	f := newDeltaFixture(t, false)
	reframe := func(b []byte, edit func(*bundle.Metadata, []byte) []byte) []byte {
		r, err := bundle.NewReader(bytes.NewReader(b), bundle.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		m := r.Metadata()
		var p bytes.Buffer
		if _, err := p.ReadFrom(r.Payload()); err != nil {
			t.Fatal(err)
		}
		pl := edit(m, p.Bytes())
		m.PayloadLength = int64(len(pl))
		var out bytes.Buffer
		if err := bundle.Write(&out, m, bytes.NewReader(pl)); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	flip := func(at func(n int) int) []byte {
		return reframe(f.delta11, func(_ *bundle.Metadata, p []byte) []byte { p = bytes.Clone(p); p[at(len(p))] ^= 1; return p })
	}
	for _, c := range []struct {
		name    string
		running string // the committed release
		b       []byte
		check   string
		want    error
		// verifyWords: airlock verify checks the window's digest without
		// decoding it; the device, decoding, words the same refusal
		// otherwise.
		verifyWords bool
	}{
		{"base not running", "1.0.0", f.delta12, CheckPolicy, verify.ErrDeltaBase, false},
		{"no delta signed from that base", "1.0.0", reframe(f.delta12, func(m *bundle.Metadata, p []byte) []byte { m.DeltaFrom = "1.0.0"; return p }), CheckRelease, verify.ErrNoDelta, false},
		{"a whole bundle's metadata with a delta", "1.0.0", reframe(f.delta11, func(m *bundle.Metadata, p []byte) []byte { m.DeltaFrom = ""; return p }), CheckPayload, payload.ErrLength, false},
		{"data window tampered", "1.0.0", flip(func(n int) int { return n - 10 }), CheckPayload, payload.ErrHash, true},
		{"tree stream tampered", "1.0.0", flip(func(n int) int { return 40 }), CheckPayload, payload.ErrDelta, false},
		{"truncated", "1.0.0", reframe(f.delta11, func(_ *bundle.Metadata, p []byte) []byte { return p[:len(p)-1] }), CheckPayload, payload.ErrLength, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := provision(t, durable.NewMem(), testConfig("/dev", 512<<10), f.v.factoryRoot, f.full[c.running])
			mustBoot(t, d)
			facts, err := d.Facts()
			if err != nil {
				t.Fatal(err)
			}
			_, verr := verify.Bundle(context.Background(), bytes.NewReader(c.b), verify.Options{Root: d.FactoryRoot(), Store: d.PreviewStore(), Facts: facts})
			before := fingerprint(t, d)
			_, err = installBundle(d, c.b, InstallOptions{})
			var ie *InstallError
			if !errors.As(err, &ie) || ie.Check != c.check || !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want the %s check refusing with %v", err, c.check, c.want)
			}
			// One pipeline: airlock verify with the device's facts says the
			// same, except where only the active slot can tell (the blocks).
			var ve *verify.Error
			if !errors.As(verr, &ve) || ve.Check != ie.Check || !errors.Is(verr, c.want) {
				t.Errorf("verify: %v\ndevice: %v", verr, err)
			}
			if !c.verifyWords && ve != nil && ve.Err.Error() != ie.Err.Error() {
				t.Errorf("verdicts differ:\nverify: %v\ndevice: %v", ve.Err, ie.Err)
			}
			if diff := cmp.Diff(before, fingerprint(t, d)); diff != "" {
				t.Errorf("the refused install changed the device (-before +after):\n%s", diff)
			}
		})
	}
	// A damaged active slot: the delta fails against the new tree; the
	// whole bundle still installs.
	d := provision(t, durable.NewMem(), testConfig("/dev", 512<<10), f.v.factoryRoot, f.full["1.0.0"])
	r := mustBoot(t, d)
	name, _ := d.slotPath(r.Slot)
	slot, err := d.fsys.OpenFile(name, 2, 0) // O_RDWR
	if err != nil {
		t.Fatal(err)
	}
	slot.WriteAt([]byte{0xde, 0xad}, 4096*9)
	slot.Close()
	if _, err := installBundle(d, f.delta11, InstallOptions{}); err == nil || !strings.Contains(err.Error(), "install the whole release") {
		t.Fatalf("a delta over a damaged active slot: %v", err)
	}
	if _, err := installBundle(d, f.full["1.1.0"], InstallOptions{}); err != nil {
		t.Fatalf("the whole bundle after a failed delta: %v", err)
	}
}

// TestMixedSchemas: a device running a schema 1 release installs a schema 2
// one online (no base index: the whole payload), then a schema 1 one; each
// boots verified (the tree, then the whole-image digest).
func TestMixedSchemas(t *testing.T) {
	v := newVendor(t)
	v.schema = release.SchemaV1
	b10 := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	v.schema = 0
	v.release("1.1.0", 1, testImage(2, imgSize), nil)
	v.schema = release.SchemaV1
	v.release("1.2.0", 1, testImage(3, imgSize), nil)
	rels, err := v.r.Releases(testProduct)
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, r := range rels {
		paths[r.Version] = r.TargetPath
	}
	d := provision(t, durable.NewMem(), testConfig("/dev", 512<<10), v.factoryRoot, b10)
	mustBoot(t, d)
	src := trust.NewDirSource(v.r.PublicDir())
	for i, ver := range []string{"1.1.0", "1.2.0"} {
		res, err := d.Install(context.Background(), src, paths[ver], InstallOptions{})
		if err != nil {
			t.Fatalf("install %s: %v", ver, err)
		}
		if res.Delta != "" {
			t.Errorf("install %s over a schema %d release was a delta: %+v", ver, []int{1, 2}[i], res)
		}
		r := mustBoot(t, d)
		if r.Version != ver || !bytes.Equal(slotImage(t, d, r.Slot, imgSize), testImage(uint64(i+2), imgSize)) {
			t.Fatalf("boot %+v after installing %s", r, ver)
		}
		if _, err := d.Health(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
