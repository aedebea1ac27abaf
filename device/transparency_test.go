package device

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/tlog/tlogtest"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// logFixture is a device provisioned with 1.0.0 from a vendor whose root
// then starts to require a witnessed transparency log (a root rotation).
type logFixture struct {
	t   *testing.T
	v   *vendor
	lr  *tlogtest.Repo
	d   *Device
	src trust.Source
}

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	v := newVendor(t)
	initial := v.release("1.0.0", 1, testImage(1, imgSize), nil)
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), v.factoryRoot, initial)
	mustBoot(t, d)
	return &logFixture{t: t, v: v, lr: tlogtest.NewRepo(t, v.rt), d: d, src: trust.NewDirSource(v.r.PublicDir())}
}

// publish adds and publishes a release, and logs it if logged.
func (fx *logFixture) publish(version string, logged bool) {
	fx.t.Helper()
	fx.v.rt.Release(version, 1, testImage(uint64(len(fx.lr.Log.Dir))+uint64(version[len(version)-1]), imgSize), func(o *repo.ReleaseOptions) {
		o.Signers = fx.v.product[:1]
	})
	if logged {
		fx.lr.LogRelease(version)
	}
}

func (fx *logFixture) install(version string) error {
	fx.t.Helper()
	_, err := fx.d.Install(context.Background(), fx.src, fx.lr.TargetPath(version), InstallOptions{})
	return err
}

// commit installs version and commits it (boot, health).
func (fx *logFixture) commit(version string) {
	fx.t.Helper()
	if err := fx.install(version); err != nil {
		fx.t.Fatalf("install %s: %v", version, err)
	}
	mustBoot(fx.t, fx.d)
	if _, err := fx.d.Health(context.Background()); err != nil {
		fx.t.Fatal(err)
	}
}

// held returns the log checkpoint the device stored ("" for none).
func (fx *logFixture) held() string {
	fx.t.Helper()
	b, err := durable.ReadFile(fx.d.fsys, path.Join(fx.d.statePath(trustDir), trust.LogCheckpointFile), tlog.MaxCheckpointSize)
	if err != nil {
		return ""
	}
	return string(b)
}

// refused runs install (by default the online install of version) and
// requires a refusal by the transparency check wrapping sentinel and
// saying text, with the device untouched.
func (fx *logFixture) refused(version string, install func() error, sentinel error, text string) {
	fx.t.Helper()
	if install == nil {
		install = func() error { return fx.install(version) }
	}
	before := fingerprint(fx.t, fx.d)
	err := install()
	ie, ok := errors.AsType[*InstallError](err)
	if !ok || ie.Check != CheckTransparency || !errors.Is(err, sentinel) || !strings.Contains(err.Error(), text) {
		fx.t.Fatalf("install %s: err = %v, want the transparency check refusing with %v saying %q", version, err, sentinel, text)
	}
	if !errors.Is(err, verify.ErrVerification) {
		fx.t.Errorf("a refusal must wrap verify.ErrVerification: %v", err)
	}
	if after := fingerprint(fx.t, fx.d); !equalMaps(before, after) {
		fx.t.Fatalf("a refused install changed the device:\nbefore %v\nafter  %v", before, after)
	}
	if r := mustBoot(fx.t, fx.d); r.Trial || r.Version != fx.running() {
		fx.t.Fatalf("boot after a refused install = %+v", r)
	}
}

func (fx *logFixture) running() string {
	f, err := fx.d.Facts()
	if err != nil || f.Device.Current == nil {
		return ""
	}
	return f.Device.Current.String()
}

func TestTransparencyInstallStoresCheckpointOnCommit(t *testing.T) {
	fx := newLogFixture(t)
	fx.publish("1.1.0", true)
	if fx.held() != "" {
		t.Fatal("a checkpoint is held before any install")
	}
	// A refused install (an unlogged newer release) stores nothing either.
	fx.publish("1.2.0", false)
	fx.refused("1.2.0", nil, tlog.ErrNotLogged, "release acme/router-x1@1.2.0 is not in the transparency log")
	fx.commit("1.1.0")
	if got, want := fx.held(), string(fx.lr.Log.Checkpoint()); got != want {
		t.Fatalf("held checkpoint = %q, want the log's %q", got, want)
	}
	fx.lr.LogRelease("1.2.0")
	fx.commit("1.2.0")
	if got, want := fx.held(), string(fx.lr.Log.Checkpoint()); got != want {
		t.Fatalf("held checkpoint after 1.2.0 = %q, want %q", got, want)
	}
}

func TestTransparencyRefusals(t *testing.T) {
	t.Run("release missing from the log", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", false)
		fx.refused("1.1.0", nil, tlog.ErrNotLogged, "install refused: transparency check failed: release acme/router-x1@1.1.0 is not in the transparency log (transparency: not logged")
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", true)
		fx.publish("1.2.0", true)
		cp := string(fx.lr.Log.Checkpoint())
		fx.lr.Log.WriteCheckpoint([]byte(strings.Replace(cp, "\n2\n", "\n3\n", 1)))
		fx.refused("1.2.0", nil, tlog.ErrCheckpoint, "transparency: checkpoint signature")
	})
	t.Run("too few witness cosignatures", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.lr.Log.Cosigners = []*tlogtest.Witness{fx.lr.W1}
		fx.publish("1.1.0", true)
		fx.refused("1.1.0", nil, tlog.ErrWitnesses, "transparency: witness cosignatures (1 of 2 valid, need 2)")
	})
	t.Run("log forks", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", true)
		fx.commit("1.1.0") // the device holds the tree of size 1
		fx.publish("1.2.0", false)
		// A mirror serving the same metadata with a forked log of size 1
		// holding only 1.2.0.
		mirror := t.TempDir()
		for _, d := range []string{"metadata", "targets"} {
			if err := os.Symlink(filepath.Join(fx.v.r.PublicDir(), d), filepath.Join(mirror, d)); err != nil {
				t.Fatal(err)
			}
		}
		fork := fx.lr.Log.Fork(filepath.Join(mirror, "log"))
		if err := os.MkdirAll(fork.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fork.AddRelease(fx.lr.Latest("acme.router-x1"), "acme.router-x1", fx.lr.TargetPath("1.2.0"))
		fx.src = trust.NewDirSource(mirror)
		fx.refused("1.2.0", nil, tlog.ErrConsistency, "split view")
	})
	t.Run("log rolls back", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", true)
		fx.publish("1.2.0", true)
		c2 := fx.lr.Log.Checkpoint()
		fx.publish("1.3.0", true)
		fx.commit("1.1.0") // under the tree of size 3
		fx.lr.Log.WriteCheckpoint(c2)
		fx.refused("1.2.0", nil, tlog.ErrConsistency, "log checkpoint is older than the one this device holds (size 2, the device holds 3)")
	})
	t.Run("bad inclusion proof", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", true)
		fx.publish("1.2.0", true)
		m, p := repotest.ParseBundle(t, fx.v.bundle("1.1.0"))
		proof, err := tlog.ParseProof(m.LogProof)
		if err != nil {
			t.Fatal(err)
		}
		proof.Inclusion[0][5] ^= 0x40
		if m.LogProof, err = proof.Marshal(); err != nil {
			t.Fatal(err)
		}
		b := repotest.BuildBundle(t, m, p)
		fx.refused("1.1.0", func() error { _, err := installBundle(fx.d, b, InstallOptions{}); return err }, tlog.ErrInclusion, "transparency: inclusion")
	})
	t.Run("offline bundle with stale proofs", func(t *testing.T) {
		fx := newLogFixture(t)
		fx.publish("1.1.0", true)
		fx.publish("1.2.0", true)
		b12 := fx.v.bundle("1.2.0") // proves the tree of size 2
		fx.publish("1.3.0", true)
		fx.commit("1.1.0") // the device holds the tree of size 3
		fx.refused("1.2.0", func() error { _, err := installBundle(fx.d, b12, InstallOptions{}); return err }, tlog.ErrStale, "older than the one this device holds")
		// A bundle made now proves consistency from size 3 and installs.
		if _, err := installBundle(fx.d, fx.v.bundle("1.2.0"), InstallOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTransparencyWitnessKeyRotatedThroughRoot(t *testing.T) {
	fx := newLogFixture(t)
	fx.publish("1.1.0", true)
	fx.commit("1.1.0")
	// The root rotates witness w2 out and w3 in.
	w3 := tlogtest.NewWitness(t, "w3.example")
	pol := fx.lr.Log.Policy(2, fx.lr.W1, w3)
	fx.lr.SetPolicy(&pol)
	fx.publish("1.2.0", true) // still cosigned by w1 and w2
	fx.refused("1.2.0", nil, tlog.ErrWitnesses, "(1 of 2 valid, need 2)")
	fx.lr.Log.Cosigners = []*tlogtest.Witness{fx.lr.W1, w3}
	fx.lr.Log.Cosign()
	fx.commit("1.2.0")
	if got, want := fx.held(), string(fx.lr.Log.Checkpoint()); got != want {
		t.Fatalf("held checkpoint = %q, want %q", got, want)
	}
}
