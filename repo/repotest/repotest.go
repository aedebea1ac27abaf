// Package repotest builds real signed firmware repositories (package repo)
// with throwaway Ed25519 keys for tests in other packages: one product,
// delegated to its own keys, published, with releases and offline bundles
// one call away. Nothing here is mocked; everything is signed and
// published exactly as `airlock repo` and `airlock release` do.
package repotest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/repo"
)

// Options configure New. The zero value is a dev repository for product
// "acme/router-x1" (model "x1") with one product key, threshold 1.
type Options struct {
	Dir              string // repository directory; "" = a new temp dir
	Product, Model   string
	ProductKeys      int // default 1
	ProductThreshold int // default 1
	Environment      string
}

// Vendor is a published repository and its keys.
type Vendor struct {
	T                                  testing.TB
	Repo                               *repo.Repo
	Product, Model                     string
	Root, Targets, Snapshot, Timestamp crypto.Signer
	ProductSigners                     []crypto.Signer
	FactoryRoot                        []byte // public/metadata/1.root.json
	// Builder signs build provenance (Attest). In a prod repository, which
	// publishes only releases with provenance, New sets the product's
	// provenance policy to accept Builder, BuilderID, SourceRepo and
	// BuildType, and Release attests every image.
	Builder crypto.Signer
}

// The build New's provenance policy accepts.
const (
	BuilderID  = "https://ci.acme.example/builders/fw"
	BuildType  = "https://ci.acme.example/buildtypes/make/v1"
	SourceRepo = "https://git.acme.example/fw"
	Commit     = "0123456789abcdef0123456789abcdef01234567"
)

// GenKey returns a new Ed25519 signer.
func GenKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(keys.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Image returns n deterministic pseudo-random bytes.
func Image(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// New creates, delegates and publishes the repository.
func New(t testing.TB, o Options) *Vendor {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "repo")
	}
	if o.Product == "" {
		o.Product = "acme/router-x1"
	}
	if o.Model == "" {
		o.Model = "x1"
	}
	if o.ProductKeys == 0 {
		o.ProductKeys = 1
	}
	if o.ProductThreshold == 0 {
		o.ProductThreshold = 1
	}
	v := &Vendor{T: t, Product: o.Product, Model: o.Model,
		Root: GenKey(t), Targets: GenKey(t), Snapshot: GenKey(t), Timestamp: GenKey(t)}
	r, err := repo.Init(o.Dir, repo.InitOptions{
		RootKeys: []crypto.PublicKey{v.Root.Public()}, RootThreshold: 1, RootSigners: []crypto.Signer{v.Root},
		Targets: v.Targets, Snapshot: v.Snapshot, Timestamp: v.Timestamp, Environment: o.Environment,
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Repo = r
	var pubs []crypto.PublicKey
	for range o.ProductKeys {
		k := GenKey(t)
		v.ProductSigners = append(v.ProductSigners, k)
		pubs = append(pubs, k.Public())
	}
	if err := r.Delegate(o.Product, pubs, o.ProductThreshold, v.Targets); err != nil {
		t.Fatal(err)
	}
	v.Builder = GenKey(t)
	if o.Environment == keys.EnvProd {
		pem, err := keys.MarshalPublic(v.Builder.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.SetProvenancePolicy(o.Product, &provenance.Policy{Builders: []string{BuilderID}, Sources: []string{SourceRepo},
			BuildTypes: []string{BuildType}, Signers: []string{string(pem)}, Threshold: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v.Publish()
	if v.FactoryRoot, err = os.ReadFile(filepath.Join(r.PublicDir(), "metadata", "1.root.json")); err != nil {
		t.Fatal(err)
	}
	return v
}

// Publish publishes what is staged with new snapshot and timestamp.
func (v *Vendor) Publish() {
	v.T.Helper()
	if _, err := v.Repo.Publish(v.Snapshot, v.Timestamp); err != nil {
		v.T.Fatal(err)
	}
}

// Release adds image as version (security version sv, the vendor's model,
// uncompressed, signed by the first product key), lets mod adjust the
// options, and publishes it.
func (v *Vendor) Release(version string, sv uint32, image []byte, mod func(*repo.ReleaseOptions)) {
	v.T.Helper()
	p := filepath.Join(v.T.TempDir(), "firmware.img")
	if err := os.WriteFile(p, image, 0o644); err != nil {
		v.T.Fatal(err)
	}
	o := repo.ReleaseOptions{
		Product: v.Product, ImagePath: p, Version: version, SecurityVersion: sv,
		Models: []string{v.Model}, Compress: repo.CompressNone, Signers: v.ProductSigners[:1],
	}
	if v.Repo.ProvenancePolicy(v.Product) != nil {
		o.Provenance = v.Attest(image, BuilderID, SourceRepo)
	}
	if mod != nil {
		mod(&o)
	}
	if _, err := v.Repo.AddRelease(o); err != nil {
		v.T.Fatal(err)
	}
	v.Publish()
}

// Bundle returns the offline bundle of a published version.
func (v *Vendor) Bundle(version string) []byte {
	v.T.Helper()
	var b bytes.Buffer
	if err := v.Repo.CreateBundle(&b, v.Product, version); err != nil {
		v.T.Fatal(err)
	}
	return b.Bytes()
}

// DeltaBundle returns the delta bundle of a published version for devices
// running from (the release must sign a delta from it:
// ReleaseOptions.DeltaFrom).
func (v *Vendor) DeltaBundle(version, from string) []byte {
	v.T.Helper()
	var b bytes.Buffer
	if _, err := v.Repo.CreateBundleWith(&b, repo.BundleOptions{Product: v.Product, Version: version, DeltaFrom: from}); err != nil {
		v.T.Fatal(err)
	}
	return b.Bytes()
}

// Attest writes a SLSA provenance v1 envelope of image, built by builder
// from source (commit Commit, build type BuildType) and signed by
// v.Builder, to a temp file and returns its path.
func (v *Vendor) Attest(image []byte, builder, source string) string {
	v.T.Helper()
	sum := sha256.Sum256(image)
	src := provenance.ResourceDescriptor{URI: "git+" + source + "@refs/heads/main", Digest: map[string]string{"gitCommit": Commit}}
	st := &provenance.Statement{
		Subjects: []provenance.ResourceDescriptor{{Name: "firmware.img", Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		Predicate: &provenance.SLSA{
			BuildDefinition: provenance.BuildDefinition{BuildType: BuildType, ExternalParameters: json.RawMessage(`{"target":"firmware"}`),
				ResolvedDependencies: []provenance.ResourceDescriptor{src}},
			RunDetails: provenance.RunDetails{Builder: provenance.Builder{ID: builder}},
		},
	}
	payload, err := provenance.MarshalStatement(st)
	if err != nil {
		v.T.Fatal(err)
	}
	env, err := provenance.Sign(payload, v.Builder)
	if err != nil {
		v.T.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		v.T.Fatal(err)
	}
	p := filepath.Join(v.T.TempDir(), "firmware.provenance.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		v.T.Fatal(err)
	}
	return p
}
