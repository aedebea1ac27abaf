package device

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// floorsFixture is a vendor repository whose devices trust root v2 and the
// metadata published after release 1.2.0 and a product key revocation,
// with bundles offering older states and an honest newer release.
type floorsFixture struct {
	v       *vendor
	b10     []byte
	trusted []byte // a bundle carrying the trusted metadata (refresh source)
	attacks map[string][]byte
	b13     []byte // the honest newer release
}

func newFloorsFixture(t *testing.T) *floorsFixture {
	t.Helper()
	v := newVendor(t)
	fx := &floorsFixture{v: v}
	fx.b10 = v.release("1.0.0", 1, testImage(1, imgSize), nil)
	newRoot := genKey(t)
	oldRootID, err := keys.KeyID(v.root[0].Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.r.Rotate(repo.RotateOptions{Role: "root", Add: []crypto.PublicKey{newRoot.Public()}, Remove: []string{oldRootID},
		Threshold: 1, OldSigners: v.root, NewSigners: []crypto.Signer{newRoot}}); err != nil {
		t.Fatal(err)
	}
	v.publish()
	v.root = []crypto.Signer{newRoot}
	b11 := v.release("1.1.0", 1, testImage(2, imgSize), nil) // product role P
	b12 := v.release("1.2.0", 1, testImage(3, imgSize), nil) // product role P+1, targets T
	id, err := keys.KeyID(v.product[1].Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.r.Revoke(testProduct, id, v.targets); err != nil { // targets T+1
		t.Fatal(err)
	}
	v.publish()
	b12r := v.bundle("1.2.0") // timestamp and snapshot S
	v.publish()
	fx.trusted = v.bundle("1.2.0") // timestamp and snapshot S+1: what devices trust
	tm, _ := repotest.ParseBundle(t, fx.trusted)
	next := repotest.SignedVersion(t, tm.Timestamp) + 1

	// What a mirror can replay, and what a holder of the online snapshot
	// and timestamp keys can sign: new versions listing old files.
	fx.attacks = map[string][]byte{
		"older timestamp":      b12r,
		"older snapshot":       fx.edit(t, b12r, func(m *bundle.Metadata) { fx.pinSnapshot(t, m, next) }),
		"older targets":        fx.edit(t, b12, func(m *bundle.Metadata) { fx.repinAt(t, m, next, nil) }),
		"older product role":   fx.edit(t, b11, func(m *bundle.Metadata) { fx.repinAt(t, m, next, nil) }),
		"product role removed": fx.edit(t, fx.trusted, func(m *bundle.Metadata) { fx.repinAt(t, m, next, m.Delegated) }),
	}
	fx.b13 = v.release("1.3.0", 1, testImage(4, imgSize), nil)
	return fx
}

func (fx *floorsFixture) edit(t *testing.T, b []byte, f func(*bundle.Metadata)) []byte {
	t.Helper()
	m, p := repotest.ParseBundle(t, b)
	f(m)
	return repotest.BuildBundle(t, m, p)
}

// pinSnapshot signs timestamp version ver pinning the bundle's snapshot.
func (fx *floorsFixture) pinSnapshot(t *testing.T, m *bundle.Metadata, ver int64) {
	m.Timestamp = repotest.Resign(t, m.Timestamp, func(md *metadata.Metadata[metadata.TimestampType]) {
		md.Signed.Version = ver
		md.Signed.Meta["snapshot.json"] = repotest.MetaFile(repotest.SignedVersion(t, m.Snapshot), m.Snapshot)
	}, fx.v.tstamp)
}

// repinAt signs snapshot and timestamp version ver listing the bundle's
// targets and delegated roles, except the roles in drop.
func (fx *floorsFixture) repinAt(t *testing.T, m *bundle.Metadata, ver int64, drop []bundle.Role) {
	m.Snapshot = repotest.Resign(t, m.Snapshot, func(md *metadata.Metadata[metadata.SnapshotType]) {
		md.Signed.Version = ver
		md.Signed.Meta["targets.json"] = repotest.MetaFile(repotest.SignedVersion(t, m.Targets), m.Targets)
		for _, d := range m.Delegated {
			md.Signed.Meta[d.Name+".json"] = repotest.MetaFile(repotest.SignedVersion(t, d.Data), d.Data)
		}
		for _, d := range drop {
			delete(md.Signed.Meta, d.Name+".json")
		}
	}, fx.v.snapshot)
	fx.pinSnapshot(t, m, ver)
}

// device provisions a device with 1.0.0 and refreshes it to the trusted
// metadata (as a polling agent does), without installing anything else.
func (fx *floorsFixture) device(t *testing.T) *Device {
	t.Helper()
	d := provision(t, durable.NewMem(), testConfig("/dev", 1<<20), fx.v.factoryRoot, fx.b10)
	mustBoot(t, d)
	src, err := verify.OpenBundle(bytes.NewReader(fx.trusted))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(context.Background(), src); err != nil {
		t.Fatalf("refresh to the trusted metadata: %v", err)
	}
	return d
}

// trustedFiles returns the names in the device's trusted metadata store
// the test loses one by one: the top-level files, the product role and
// the floor record.
func trustedFiles(t *testing.T, d *Device) []string {
	t.Helper()
	ents, err := d.fsys.ReadDir(d.statePath(trustDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".json") || n == "floors" {
			names = append(names, n)
		}
	}
	return names
}

func loseTrusted(t *testing.T, d *Device, name, how string) {
	t.Helper()
	p := d.statePath(trustDir, name)
	switch how {
	case "deleted":
		if err := d.fsys.Remove(p); err != nil {
			t.Fatal(err)
		}
	case "corrupted":
		data, err := durable.ReadFile(d.fsys, p, 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		if err := durable.WriteFile(d.fsys, p, data[:len(data)/2], 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// trustedVersions returns the signed version of each readable trusted
// metadata file of the device.
func trustedVersions(t *testing.T, d *Device) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, name := range trustedFiles(t, d) {
		data, err := durable.ReadFile(d.fsys, d.statePath(trustDir, name), 16<<20)
		if err != nil || !strings.HasSuffix(name, ".json") {
			continue
		}
		var md struct {
			Signed struct{ Version int64 } `json:"signed"`
		}
		if json.Unmarshal(data, &md) == nil {
			out[name] = md.Signed.Version
		}
	}
	return out
}

// restoreFactoryRoot is the operator's recovery when root.json is lost.
func restoreFactoryRoot(t *testing.T, d *Device) {
	t.Helper()
	if err := durable.WriteFile(d.fsys, d.statePath(trustDir, "root.json"), d.factoryRoot, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInstallRollbackAfterTrustedFileLost: with any one trusted metadata
// file of the device deleted or corrupted, a bundle offering an older
// repository state (older timestamp, snapshot, targets or product role,
// or a role dropped from the snapshot) never rolls the trusted metadata
// back. Either it is refused at the metadata check with a rollback error
// (a corruption error for a corrupt floor record) and changes nothing, or
// (a stale bundle, docs/bundle-format.md) the release it carries, 1.2.0,
// is listed by the device's own trusted metadata and installs against it,
// leaving every trusted file that remained as it was. The honest newer
// release still installs.
func TestInstallRollbackAfterTrustedFileLost(t *testing.T) {
	fx := newFloorsFixture(t)
	files := trustedFiles(t, fx.device(t))
	if len(files) != 6 {
		t.Fatalf("trusted files %v, want root, timestamp, snapshot, targets, the product role and floors", files)
	}
	for _, file := range files {
		for _, how := range []string{"deleted", "corrupted"} {
			for attack, offer := range fx.attacks {
				t.Run(file+" "+how+"/"+attack, func(t *testing.T) {
					d := fx.device(t)
					loseTrusted(t, d, file, how)
					if file == "root.json" {
						if _, err := installBundle(d, fx.b13, InstallOptions{}); err == nil {
							t.Fatal("install without a valid root.json succeeded")
						}
						restoreFactoryRoot(t, d)
					}
					want := trust.ErrRollback
					if file == "floors" && how == "corrupted" {
						want = trust.ErrCorruptFloors
					}
					// installedStale checks a stale install: 1.2.0 against the
					// trusted metadata, which stays as it was; then commits it.
					installedStale := func(before map[string]int64, res *InstallResult) {
						t.Helper()
						if res.Version != "1.2.0" {
							t.Fatalf("a stale bundle installed %s, want 1.2.0 (the release it carries)", res.Version)
						}
						after := trustedVersions(t, d)
						for name, v := range before {
							if after[name] < v {
								t.Errorf("a stale bundle rolled the trusted %s back from version %d to %d", name, v, after[name])
							}
						}
						mustBoot(t, d)
						if h, err := d.Health(context.Background()); err != nil || !h.Committed {
							t.Fatalf("health = %+v, %v", h, err)
						}
					}
					before, versions := fingerprint(t, d), trustedVersions(t, d)
					res, err := installBundle(d, offer, InstallOptions{})
					var ie *InstallError
					switch {
					case err == nil && want == trust.ErrRollback:
						installedStale(versions, res)
					case !errors.Is(err, want) || !errors.As(err, &ie) || ie.Check != CheckMetadata:
						t.Fatalf("older state after %s %s: got %v, want a %s error wrapping %v", file, how, err, CheckMetadata, want)
					default:
						if diff := cmp.Diff(before, fingerprint(t, d)); diff != "" {
							t.Errorf("refused install changed the device (-before +after):\n%s", diff)
						}
					}
					if want == trust.ErrCorruptFloors {
						// The operator removes the corrupt record; the
						// files rebuild it and still hold the floors.
						if err := d.fsys.Remove(d.statePath(trustDir, "floors")); err != nil {
							t.Fatal(err)
						}
						versions := trustedVersions(t, d)
						res, err := installBundle(d, offer, InstallOptions{})
						if err == nil {
							installedStale(versions, res)
						} else if !errors.Is(err, trust.ErrRollback) {
							t.Fatalf("older state after removing the corrupt record: %v, want %v", err, trust.ErrRollback)
						}
					}
					res, err = installBundle(d, fx.b13, InstallOptions{})
					if err != nil {
						t.Fatalf("honest newer release refused: %v", err)
					}
					if res.Version != "1.3.0" {
						t.Fatalf("installed %+v, want 1.3.0", res)
					}
				})
			}
		}
	}
}

// TestInstallRollbackRootAfterRootJSONLost: root.json lost and restored
// from the factory root (version 1) after the device had trusted root
// version 2; a bundle whose root chain was stripped must not make the
// device settle on version 1.
func TestInstallRollbackRootAfterRootJSONLost(t *testing.T) {
	fx := newFloorsFixture(t)
	stripped := fx.edit(t, fx.b13, func(m *bundle.Metadata) { m.RootChain = nil })
	for _, how := range []string{"deleted", "corrupted"} {
		t.Run(how, func(t *testing.T) {
			d := fx.device(t)
			loseTrusted(t, d, "root.json", how)
			restoreFactoryRoot(t, d)
			_, err := installBundle(d, stripped, InstallOptions{})
			if !errors.Is(err, trust.ErrRollback) {
				t.Fatalf("root chain stripped after root.json %s: got %v, want %v", how, err, trust.ErrRollback)
			}
			if _, err := installBundle(d, fx.b13, InstallOptions{}); err != nil {
				t.Fatalf("honest release with its root chain: %v", err)
			}
			if _, err := d.fsys.Stat(path.Join(d.statePath(trustDir), "floors")); err != nil {
				t.Fatalf("no floor record after the install: %v", err)
			}
		})
	}
}
