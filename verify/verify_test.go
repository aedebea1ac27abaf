package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/bundle"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
	"github.com/airlockfw/airlock/trust"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

const product = "acme/router-x1"

// fixture is a real repository in a temp dir with one published release.
type fixture struct {
	t                                  *testing.T
	rt                                 *repotest.Vendor
	dir                                string
	r                                  *repo.Repo
	root, targets, snapshot, timestamp crypto.Signer
	product1, product2                 crypto.Signer
	rootJSON                           []byte
	image                              []byte
}

func signer(t *testing.T) crypto.Signer { return repotest.GenKey(t) }

func newFixture(t *testing.T, productThreshold int) *fixture {
	t.Helper()
	rt := repotest.New(t, repotest.Options{Product: product, Model: "x1", ProductKeys: 2, ProductThreshold: productThreshold})
	f := &fixture{t: t, rt: rt, dir: rt.Repo.Dir(), r: rt.Repo, root: rt.Root, targets: rt.Targets, snapshot: rt.Snapshot,
		timestamp: rt.Timestamp, product1: rt.ProductSigners[0], product2: rt.ProductSigners[1], rootJSON: rt.FactoryRoot}
	f.image = make([]byte, 200<<10)
	rand.Read(f.image)
	if productThreshold == 2 {
		f.release("1.0.0", "", f.product1, f.product2)
	} else {
		f.release("1.0.0", "", f.product1)
	}
	return f
}

// release adds and publishes a release signed by signers.
func (f *fixture) release(version, compress string, signers ...crypto.Signer) {
	f.t.Helper()
	img := filepath.Join(f.t.TempDir(), "firmware.img")
	if err := os.WriteFile(img, f.image, 0o644); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.r.AddRelease(repo.ReleaseOptions{
		Product: product, ImagePath: img, Version: version, SecurityVersion: 1,
		Models: []string{"x1"}, HWRev: ">=2 <4", Compress: compress, Signers: signers,
	}); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.r.Publish(f.snapshot, f.timestamp); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) bundle(version string) []byte {
	f.t.Helper()
	var b bytes.Buffer
	if err := f.r.CreateBundle(&b, product, version); err != nil {
		f.t.Fatal(err)
	}
	return b.Bytes()
}

func (f *fixture) opts() Options {
	return Options{Root: f.rootJSON, Facts: Facts{
		Device:   release.Device{Model: "x1", HWRev: 3, Product: product},
		Unstated: []string{release.CheckChannel, release.CheckDependency, release.CheckDowngrade, release.CheckSecurityVersion},
	}}
}

func expectErr(t *testing.T, err error, check string, target error) {
	t.Helper()
	if err == nil {
		t.Fatalf("verification succeeded, want check %q to fail with %v", check, target)
	}
	var ve *Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *verify.Error", err)
	}
	if ve.Check != check {
		t.Errorf("failed check = %q, want %q (err: %v)", ve.Check, check, err)
	}
	if !errors.Is(err, target) {
		t.Errorf("err = %v, want it to wrap %v", err, target)
	}
}

func TestVerifyBundle(t *testing.T) {
	f := newFixture(t, 1)
	for _, comp := range []string{"", "zstd"} {
		t.Run("compress="+comp, func(t *testing.T) {
			v := "1.1.0"
			if comp != "" {
				v = "1.2.0"
			}
			f.release(v, comp, f.product1)
			rep, err := Bundle(context.Background(), bytes.NewReader(f.bundle(v)), f.opts())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Version != v || rep.InstalledLength != int64(len(f.image)) || rep.Product != product {
				t.Fatalf("report = %+v", rep)
			}
			sum := sha256.Sum256(f.image)
			if rep.InstalledSHA256 != string(hexOf(sum[:])) {
				t.Fatalf("installed sha256 = %s", rep.InstalledSHA256)
			}
		})
	}
}

func hexOf(b []byte) string {
	const d = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(d[c>>4])
		s.WriteByte(d[c&15])
	}
	return s.String()
}

func TestVerifyRepoDirAndHTTPS(t *testing.T) {
	f := newFixture(t, 1)
	f.release("1.1.0", "zstd", f.product1)
	rep, err := Repo(context.Background(), f.dir, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Version != "1.1.0" {
		t.Fatalf("newest release = %s, want 1.1.0", rep.Version)
	}
	o := f.opts()
	o.Version = "1.0.0"
	if rep, err := Repo(context.Background(), f.dir, o); err != nil || rep.Version != "1.0.0" {
		t.Fatalf("--version 1.0.0: %v %+v", err, rep)
	}

	srv := httptest.NewTLSServer(http.FileServer(http.Dir(filepath.Join(f.dir, "public"))))
	defer srv.Close()
	o = f.opts()
	o.HTTPClient = srv.Client()
	rep, err = Repo(context.Background(), srv.URL, o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Version != "1.1.0" {
		t.Fatalf("over HTTPS: newest = %s", rep.Version)
	}
	// A hardware revision outside every release's range selects nothing.
	o.Facts.Device.HWRev = 9
	_, err = Repo(context.Background(), srv.URL, o)
	expectErr(t, err, CheckSelection, ErrNoRelease)
	if !errors.Is(err, release.ErrHWRev) {
		t.Fatalf("err = %v, want it to say why (hw_rev)", err)
	}
}

func TestTamperedPayload(t *testing.T) {
	f := newFixture(t, 1)
	m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
	p[len(p)/2] ^= 1
	_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckPayload, payload.ErrHash)
}

func TestTamperedMetadata(t *testing.T) {
	f := newFixture(t, 1)
	m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
	// Extend the timestamp's expiry without its key: the signature breaks.
	md, err := (&metadata.Metadata[metadata.TimestampType]{}).FromBytes(m.Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	md.Signed.Expires = md.Signed.Expires.Add(365 * 24 * time.Hour)
	if m.Timestamp, err = md.ToBytes(false); err != nil {
		t.Fatal(err)
	}
	_, err = Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckMetadata, trust.ErrSignature)
}

func TestSignatureByUnknownKey(t *testing.T) {
	f := newFixture(t, 1)
	m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
	attacker := signer(t)
	m.Timestamp = repotest.Resign(t, m.Timestamp, func(md *metadata.Metadata[metadata.TimestampType]) { md.Signed.Version++ }, attacker)
	_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckMetadata, trust.ErrThreshold)
}

// TestBelowThresholdSignatures: the product role needs 2 of 2 signatures; an
// attacker with the online snapshot/timestamp keys and one product key cannot
// publish a release.
func TestBelowThresholdSignatures(t *testing.T) {
	f := newFixture(t, 2)
	f.release("1.1.0", "", f.product1, f.product2)
	m, p := repotest.ParseBundle(t, f.bundle("1.1.0"))
	m.Delegated[0].Data = repotest.Resign[metadata.TargetsType](t, m.Delegated[0].Data, nil, f.product1)
	f.rt.Repin(t, m)
	_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckMetadata, trust.ErrThreshold)
}

func TestExpiredMetadata(t *testing.T) {
	f := newFixture(t, 1)
	o := f.opts()
	o.Now = time.Now().Add(2 * 24 * time.Hour) // past the 1-day timestamp
	// Online, the timestamp bounds freshness.
	_, err := Repo(context.Background(), f.dir, o)
	expectErr(t, err, CheckMetadata, trust.ErrExpired)
	// A device that requires it of bundles too refuses the bundle as too old.
	o.RequireTimestamp = true
	_, err = Bundle(context.Background(), bytes.NewReader(f.bundle("1.0.0")), o)
	expectErr(t, err, CheckMetadata, ErrBundleExpired)
	if !errors.Is(err, trust.ErrExpired) || !strings.Contains(err.Error(), "timestamp") {
		t.Errorf("err = %v, want the expired timestamp named", err)
	}
}

func TestMixAndMatch(t *testing.T) {
	f := newFixture(t, 1)
	old, _ := repotest.ParseBundle(t, f.bundle("1.0.0"))
	f.release("1.1.0", "", f.product1)
	m, p := repotest.ParseBundle(t, f.bundle("1.1.0"))
	// New targets and product role, old snapshot and timestamp.
	m.Timestamp, m.Snapshot = old.Timestamp, old.Snapshot
	_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	if err == nil {
		t.Fatal("mix-and-match accepted")
	}
	// The product role is newer than the version the old snapshot pins.
	expectErr(t, err, CheckMetadata, trust.ErrMixAndMatch)
}

func TestEndlessData(t *testing.T) {
	f := newFixture(t, 1)
	t.Run("PayloadLongerThanDeclared", func(t *testing.T) {
		m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
		p = append(p, make([]byte, 4096)...)
		m.PayloadLength = int64(len(p))
		_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
		expectErr(t, err, CheckPayload, payload.ErrLength)
	})
	t.Run("OversizedMetadata", func(t *testing.T) {
		m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
		huge := append([]byte(`{"signatures":[],"signed":{"_type":"timestamp","version":2,"pad":"`), bytes.Repeat([]byte("A"), trust.MaxTimestampSize)...)
		m.Timestamp = append(huge, []byte(`"}}`)...)
		_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
		expectErr(t, err, CheckMetadata, trust.ErrTooLarge)
	})
}

// TestProductKeyCannotSignOtherProduct: a product key (with the online keys)
// lists a target under another product's path; the delegation's path pattern
// refuses it.
func TestProductKeyCannotSignOtherProduct(t *testing.T) {
	f := newFixture(t, 1)
	m, p := repotest.ParseBundle(t, f.bundle("1.0.0"))
	other := "acme/other-y2/1.0.0/firmware.img"
	m.Delegated[0].Data = repotest.Resign(t, m.Delegated[0].Data, func(md *metadata.Metadata[metadata.TargetsType]) {
		tf := md.Signed.Targets[m.TargetPath]
		tf.Path = other
		md.Signed.Targets[other] = tf
		md.Signed.Version++
	}, f.product1)
	m.TargetPath = other
	f.rt.Repin(t, m)
	_, err := Bundle(context.Background(), bytes.NewReader(repotest.BuildBundle(t, m, p)), f.opts())
	expectErr(t, err, CheckTarget, trust.ErrOutsideDelegation)
	if !strings.Contains(err.Error(), "outside") || strings.Contains(err.Error(), "target not found") {
		t.Fatalf("err = %v, want it to say the path is outside the signer's delegation", err)
	}
}

// TestRevokedKey: a release signed only by a key that was later revoked no
// longer verifies.
func TestRevokedKey(t *testing.T) {
	f := newFixture(t, 1)
	id, _ := keys.KeyID(f.product1.Public())
	if err := f.r.Revoke(product, id, f.targets); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Publish(f.snapshot, f.timestamp); err != nil {
		t.Fatal(err)
	}
	_, err := Bundle(context.Background(), bytes.NewReader(f.bundle("1.0.0")), f.opts())
	expectErr(t, err, CheckMetadata, trust.ErrThreshold)
}

func TestWrongModel(t *testing.T) {
	f := newFixture(t, 1)
	o := f.opts()
	o.Facts.Device.Model = "x2"
	_, err := Bundle(context.Background(), bytes.NewReader(f.bundle("1.0.0")), o)
	expectErr(t, err, CheckPolicy, release.ErrModel)
}

func TestHardwareRevisionOutOfRange(t *testing.T) {
	f := newFixture(t, 1)
	o := f.opts()
	o.Facts.Device.HWRev = 4 // range is '>=2 <4'
	_, err := Bundle(context.Background(), bytes.NewReader(f.bundle("1.0.0")), o)
	expectErr(t, err, CheckPolicy, release.ErrHWRev)
}

func TestTruncatedBundle(t *testing.T) {
	f := newFixture(t, 1)
	b := f.bundle("1.0.0")
	_, err := Bundle(context.Background(), bytes.NewReader(b[:len(b)-100]), f.opts())
	if err == nil {
		t.Fatal("truncated bundle accepted")
	}
	if !errors.Is(err, bundle.ErrTruncated) && !errors.Is(err, payload.ErrLength) {
		t.Fatalf("err = %v, want truncation", err)
	}
}

func TestWrongRoot(t *testing.T) {
	f := newFixture(t, 1)
	g := newFixture(t, 1) // another vendor's root
	o := f.opts()
	o.Root = g.rootJSON
	_, err := Bundle(context.Background(), bytes.NewReader(f.bundle("1.0.0")), o)
	expectErr(t, err, CheckMetadata, trust.ErrSignature)
}
