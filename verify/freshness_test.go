package verify

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestBundleOutlivesItsTimestamp: by default a bundle installs after its
// timestamp and snapshot expired (days), until the first of root, targets
// and the product role expires (months); then it is refused as too old,
// with what to do. Every other check still holds.
func TestBundleOutlivesItsTimestamp(t *testing.T) {
	f := newFixture(t, 1)
	b := f.bundle("1.0.0")
	ctx := context.Background()
	o := f.opts()
	for _, age := range []time.Duration{0, 2 * 24 * time.Hour, 30 * 24 * time.Hour, 170 * 24 * time.Hour} {
		o.Now = time.Now().Add(age)
		rep, err := Bundle(ctx, bytes.NewReader(b), o)
		if err != nil {
			t.Fatalf("bundle at +%v: %v", age, err)
		}
		// Targets and the product role live 180 days, root 365; targets,
		// signed at init before the release re-signed the product role,
		// expires first.
		if rep.ExpiringRole != "targets" {
			t.Errorf("expiring role = %q, want targets", rep.ExpiringRole)
		}
		if d := time.Until(rep.InstallsUntil); d < 179*24*time.Hour || d > 181*24*time.Hour {
			t.Errorf("installs until %v (in %v), want in about 180 days", rep.InstallsUntil, d)
		}
	}
	o.Now = time.Now().Add(181 * 24 * time.Hour)
	_, err := Bundle(ctx, bytes.NewReader(b), o)
	expectErr(t, err, CheckMetadata, ErrBundleExpired)
	for _, want := range []string{"the bundle is too old", "expired", "airlock repo renew", "airlock bundle create --force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// A timestamp whose expiry was moved without its key is still refused.
	m, p := repotest.ParseBundle(t, b)
	i := bytes.Index(m.Timestamp, []byte(`"expires": "`)) + len(`"expires": "`)
	if i < len(`"expires": "`) {
		t.Fatalf("no expires in %s", m.Timestamp)
	}
	m.Timestamp = bytes.Clone(m.Timestamp)
	copy(m.Timestamp[i:], "2999")
	o.Now = time.Now().Add(2 * 24 * time.Hour)
	_, err = Bundle(ctx, bytes.NewReader(repotest.BuildBundle(t, m, p)), o)
	if !errors.Is(err, ErrVerification) {
		t.Fatalf("tampered timestamp = %v, want a refusal", err)
	}
}

// TestStaleBundle: a device that trusts newer metadata than a bundle's
// installs the bundle when its trusted metadata still lists the release
// (and the trusted metadata stays as new as it was); otherwise it says the
// bundle predates what it trusts and must be re-created.
func TestStaleBundle(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	old := f.bundle("1.0.0")
	// The repository moves on: a new timestamp, then a new release; the
	// device sees it (online), so the old bundle's metadata is a rollback.
	o, st := f.staleDevice(func() { f.release("1.1.0", "", f.product1) })
	tsBefore, _ := st.Get("timestamp.json")
	rep, err := Bundle(ctx, bytes.NewReader(old), o)
	if err != nil {
		t.Fatalf("stale bundle whose release the device's metadata lists: %v", err)
	}
	if rep.Version != "1.0.0" {
		t.Errorf("verified %s, want 1.0.0", rep.Version)
	}
	if tsAfter, _ := st.Get("timestamp.json"); !bytes.Equal(tsBefore, tsAfter) {
		t.Error("the trusted timestamp changed: a stale bundle must not roll it back")
	}
	// Without the device's newer metadata the same bundle is simply current.
	fresh := f.opts()
	if _, err := Bundle(ctx, bytes.NewReader(old), fresh); err != nil {
		t.Fatal(err)
	}

	// The product's key holder withdraws 1.0.0 (a newer product role that
	// no longer lists it) and the device learns of it.
	m, p := repotest.ParseBundle(t, f.bundle("1.1.0"))
	f.rt.EditRole(t, m, func(md *metadata.Metadata[metadata.TargetsType]) {
		for path := range md.Signed.Targets {
			if strings.Contains(path, "/1.0.0/") {
				delete(md.Signed.Targets, path)
			}
		}
	}, f.product1)
	if _, err := Bundle(ctx, bytes.NewReader(repotest.BuildBundle(t, m, p)), o); err != nil {
		t.Fatal(err)
	}
	_, err = Bundle(ctx, bytes.NewReader(old), o)
	expectErr(t, err, CheckTarget, ErrStaleBundle)
	for _, want := range []string{"predates the metadata this device trusts", "does not list", "1.0.0", "re-create it"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestStaleBundleDoesNotBypassChecks: a stale bundle is checked against the
// trusted metadata: its payload must match the trusted target.
func TestStaleBundleDoesNotBypassChecks(t *testing.T) {
	f := newFixture(t, 1)
	ctx := context.Background()
	old := f.bundle("1.0.0")
	o, _ := f.staleDevice(nil)
	m, p := repotest.ParseBundle(t, old)
	p = bytes.Clone(p)
	p[len(p)/2] ^= 1
	_, err := Bundle(ctx, bytes.NewReader(repotest.BuildBundle(t, m, p)), o)
	expectErr(t, err, CheckPayload, ErrVerification)
}

// staleDevice returns options verifying against a trusted store that has
// seen the repository after a new timestamp and then more (nil: nothing
// more): a bundle made before is stale to it.
func (f *fixture) staleDevice(more func()) (Options, trust.Store) {
	f.t.Helper()
	st := trust.NewMemStore()
	if err := st.Put("root.json", f.rootJSON); err != nil {
		f.t.Fatal(err)
	}
	o := f.opts()
	o.Store = st
	if _, err := f.r.Timestamp(f.timestamp); err != nil {
		f.t.Fatal(err)
	}
	if more != nil {
		more()
	}
	if _, err := Repo(context.Background(), f.dir, o); err != nil {
		f.t.Fatal(err)
	}
	return o, st
}
