package repo

import (
	"crypto"
	"errors"
	"path/filepath"
	"testing"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/keys"
	"github.com/google/go-cmp/cmp"
)

// TestLibraryOperationsRecordTheirOwnAuditTrail: a library user (no CLI)
// gets an audit entry for every operation, with the actor from Options, and
// the log verifies.
func TestLibraryOperationsRecordTheirOwnAuditTrail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	auditKey := filepath.Join(t.TempDir(), "audit.pem")
	root, targets, snap, ts := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	product := genKey(t, keys.Ed25519)
	r, err := Init(dir, InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootSigners: []crypto.Signer{root},
		Targets: targets, Snapshot: snap, Timestamp: ts, AuditKey: auditKey, Options: Options{Actor: "ci:release-bot"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{product.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeImage(t, 4096), Version: "1.0.0",
		SecurityVersion: 1, Models: []string{"x1"}, Signers: []crypto.Signer{product}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish(snap, ts); err != nil {
		t.Fatal(err)
	}
	other, _ := OpenWith(dir, Options{Actor: "user:carol"})
	if err := other.Revoke("acme/router-x1", keyID(t, product), targets); err == nil {
		t.Fatal("revoking the only product key below its threshold succeeded")
	}
	entries, err := audit.Query(r.AuditDir(), audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Actor, Action, Release string }
	var got []row
	for _, e := range entries {
		got = append(got, row{e.Actor, string(e.Action), e.Release})
	}
	want := []row{
		{"ci:release-bot", "key.generated", ""}, {"ci:release-bot", "key.generated", ""}, {"ci:release-bot", "key.generated", ""}, {"ci:release-bot", "key.generated", ""},
		{"ci:release-bot", "key.rotated", ""},
		{"ci:release-bot", "release.added", "acme/router-x1@1.0.0"},
		{"ci:release-bot", "release.published", "acme/router-x1@1.0.0"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit trail (-want +got), a failed operation records nothing:\n%s", diff)
	}
	pub, err := keys.LoadPublic(auditKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(r.AuditDir(), pub); err != nil {
		t.Errorf("audit log does not verify: %v", err)
	}
}

// TestEnvironmentRuleIsEnforcedByTheRepository: with a keyring, a dev key
// can neither be enrolled in nor sign for a prod repository, through the
// library API alone.
func TestEnvironmentRuleIsEnforcedByTheRepository(t *testing.T) {
	kr, err := keys.OpenKeyring(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	devKey := genKey(t, keys.Ed25519)
	if err := kr.RegisterKeys(keys.EnvDev, "dev", devKey.Public()); err != nil {
		t.Fatal(err)
	}
	root, targets, snap, ts, prodKey := genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519), genKey(t, keys.Ed25519)
	base := InitOptions{RootKeys: []crypto.PublicKey{root.Public()}, RootSigners: []crypto.Signer{root},
		Targets: targets, Snapshot: snap, Timestamp: ts, Environment: keys.EnvProd, Options: Options{Keyring: kr}}

	bad := base
	bad.Targets = devKey
	if _, err := Init(filepath.Join(t.TempDir(), "bad"), bad); !errors.Is(err, keys.ErrEnvironment) {
		t.Fatalf("Init with a dev targets key for prod = %v, want ErrEnvironment", err)
	}
	r, err := Init(filepath.Join(t.TempDir(), "repo"), base)
	if err != nil {
		t.Fatal(err)
	}
	if env, _ := kr.Environment(keyID(t, targets)); env != keys.EnvProd {
		t.Errorf("Init registered the targets key for %q, want prod", env)
	}
	if err := r.Delegate("acme/router-x1", []crypto.PublicKey{devKey.Public()}, 1, targets); !errors.Is(err, keys.ErrEnvironment) {
		t.Fatalf("delegating a dev key in prod = %v, want ErrEnvironment", err)
	}
	// Delegated without the keyring (another machine), the dev key still
	// cannot sign where the keyring is known.
	plain, _ := OpenWith(r.Dir(), Options{})
	if err := plain.Delegate("acme/router-x1", []crypto.PublicKey{devKey.Public(), prodKey.Public()}, 1, targets); err != nil {
		t.Fatal(err)
	}
	opts := ReleaseOptions{Product: "acme/router-x1", ImagePath: writeImage(t, 4096), Version: "1.0.0", SecurityVersion: 1, Models: []string{"x1"}}
	opts.Signers = []crypto.Signer{devKey}
	if _, err := r.AddRelease(opts); !errors.Is(err, keys.ErrEnvironment) {
		t.Fatalf("AddRelease signed by a dev key in prod = %v, want ErrEnvironment", err)
	}
	opts.Signers = []crypto.Signer{prodKey}
	if _, err := r.AddRelease(opts); err != nil {
		t.Fatalf("AddRelease signed by the prod key: %v", err)
	}
	if _, _, err := r.SignPending("acme/router-x1", "1.0.0", devKey, ""); !errors.Is(err, keys.ErrEnvironment) {
		t.Fatalf("SignPending by a dev key in prod = %v, want ErrEnvironment", err)
	}
}
