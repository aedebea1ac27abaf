package repo_test

import (
	"crypto"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/provenance"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/repo/repotest"
)

// newProvVendor is a dev repository whose product has a provenance policy
// accepting repotest's builder.
func newProvVendor(t *testing.T, env string) *repotest.Vendor {
	t.Helper()
	v := repotest.New(t, repotest.Options{Environment: env})
	if env != keys.EnvProd {
		pem, err := keys.MarshalPublic(v.Builder.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Repo.SetProvenancePolicy(v.Product, &provenance.Policy{Builders: []string{repotest.BuilderID},
			Sources: []string{repotest.SourceRepo}, Signers: []string{string(pem)}, Threshold: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

func addWith(t *testing.T, v *repotest.Vendor, version string, image []byte, prov string) (*repo.ReleaseInfo, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "firmware.img")
	if err := os.WriteFile(p, image, 0o644); err != nil {
		t.Fatal(err)
	}
	return v.Repo.AddRelease(repo.ReleaseOptions{Product: v.Product, ImagePath: p, Version: version, SecurityVersion: 1,
		Models: []string{v.Model}, Compress: repo.CompressZstd, Signers: v.ProductSigners[:1], Provenance: prov})
}

// stagedFiles lists the files under REPO/staging/targets.
func stagedFiles(t *testing.T, v *repotest.Vendor) []string {
	var out []string
	filepath.WalkDir(filepath.Join(v.Repo.Dir(), repo.StagingDir, repo.TargetsDir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestReleaseProvenance: a release with acceptable provenance is staged
// with its envelope, bound in the signed metadata and published beside
// the release.
func TestReleaseProvenance(t *testing.T) {
	v := newProvVendor(t, keys.EnvDev)
	image := repotest.Image(1, 200_000)
	env := v.Attest(image, repotest.BuilderID, repotest.SourceRepo)
	envData, err := os.ReadFile(env)
	if err != nil {
		t.Fatal(err)
	}
	sha, n := provenance.Digest(envData)
	info, err := addWith(t, v, "1.0.0", image, env)
	if err != nil {
		t.Fatal(err)
	}
	if info.Provenance == nil || info.Provenance.SHA256 != sha || info.Provenance.Source.Commit != repotest.Commit || len(info.Provenance.Signers) != 1 {
		t.Fatalf("release info provenance = %+v", info.Provenance)
	}
	if p := info.Metadata.Provenance; p == nil || hex.EncodeToString(p.SHA256[:]) != sha || p.Length != n {
		t.Fatalf("metadata binds %+v, want %s/%d", p, sha, n)
	}
	v.Publish()
	pub := filepath.Join(v.Repo.PublicDir(), "targets", "acme", "router-x1", "1.0.0", sha+".provenance.json")
	got, err := os.ReadFile(pub)
	if err != nil || string(got) != string(envData) {
		t.Fatalf("published envelope: %v", err)
	}
	if s := stagedFiles(t, v); len(s) != 0 {
		t.Fatalf("staging still holds %v", s)
	}
	// The published role metadata binds it.
	rels, err := v.Repo.Releases(v.Product)
	if err != nil || len(rels) != 1 || !rels[0].Published || rels[0].Metadata.Provenance == nil || hex.EncodeToString(rels[0].Metadata.Provenance.SHA256[:]) != sha {
		t.Fatalf("published release: %v %+v", err, rels)
	}
}

// TestReleaseProvenanceRefused: each way a provenance can be unacceptable
// is refused at release add with the check named, and nothing is staged.
func TestReleaseProvenanceRefused(t *testing.T) {
	v := newProvVendor(t, keys.EnvDev)
	image := repotest.Image(2, 100_000)
	other := repotest.Image(3, 100_000)
	good := v.Attest(image, repotest.BuilderID, repotest.SourceRepo)
	stranger := repotest.GenKey(t)
	forged := func() string {
		// A valid envelope whose signature is replaced by another key's over
		// the same payload.
		data, _ := os.ReadFile(good)
		e, err := provenance.ParseEnvelope(data)
		if err != nil {
			t.Fatal(err)
		}
		s, err := provenance.Sign(e.Payload, stranger)
		if err != nil {
			t.Fatal(err)
		}
		s.Signatures[0].KeyID = e.Signatures[0].KeyID // claim to be the builder
		out, _ := s.Marshal()
		p := filepath.Join(t.TempDir(), "forged.json")
		os.WriteFile(p, out, 0o644)
		return p
	}()
	for _, tc := range []struct {
		name, prov string
		want       error
		msg        string
	}{
		{"disallowed builder", v.Attest(image, "https://evil.example/builder", repotest.SourceRepo), provenance.ErrPolicy,
			`provenance: builder "https://evil.example/builder" is not allowed for acme/router-x1`},
		{"disallowed source", v.Attest(image, repotest.BuilderID, "https://git.evil.example/fw"), provenance.ErrPolicy,
			`provenance: source repository "https://git.evil.example/fw" is not allowed for acme/router-x1`},
		{"bad signature", forged, provenance.ErrSignature, "provenance: envelope signatures: 0 of the 1 policy keys signed validly, need 1"},
		{"subject digest mismatch", v.Attest(other, repotest.BuilderID, repotest.SourceRepo), provenance.ErrSubject,
			"provenance: subject digest: no subject has the release image's sha256"},
		{"missing", "", repo.ErrNoProvenance, "acme/router-x1 has a provenance policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := addWith(t, v, "1.0.0", image, tc.prov)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.want, tc.msg)
			}
			if s := stagedFiles(t, v); len(s) != 0 {
				t.Fatalf("a refused release left %v in staging", s)
			}
		})
	}
}

// TestPublishProvenance: publish checks again, against the policy in
// force then, the envelope as stored; a prod repository publishes no
// release without provenance.
func TestPublishProvenance(t *testing.T) {
	t.Run("prod without provenance", func(t *testing.T) {
		v := repotest.New(t, repotest.Options{Environment: keys.EnvProd})
		if err := v.Repo.SetProvenancePolicy(v.Product, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := addWith(t, v, "1.0.0", repotest.Image(4, 50_000), ""); err != nil {
			t.Fatal(err) // staged: nothing to check it against yet
		}
		_, err := v.Repo.Publish(v.Snapshot, v.Timestamp)
		if !errors.Is(err, repo.ErrNoProvenance) || !strings.Contains(err.Error(), "release acme/router-x1 1.0.0 has no provenance: a prod repository publishes only releases with acceptable provenance") {
			t.Fatalf("publish = %v", err)
		}
		assertUnpublished(t, v)
	})
	t.Run("prod with provenance", func(t *testing.T) {
		v := repotest.New(t, repotest.Options{Environment: keys.EnvProd})
		v.Release("1.0.0", 1, repotest.Image(5, 50_000), nil) // repotest attests in prod
		rels, err := v.Repo.Releases(v.Product)
		if err != nil || len(rels) != 1 || !rels[0].Published || rels[0].Metadata.Provenance == nil {
			t.Fatalf("%v %+v", err, rels)
		}
	})
	t.Run("policy changed after staging", func(t *testing.T) {
		v := newProvVendor(t, keys.EnvDev)
		image := repotest.Image(6, 50_000)
		if _, err := addWith(t, v, "1.0.0", image, v.Attest(image, repotest.BuilderID, repotest.SourceRepo)); err != nil {
			t.Fatal(err)
		}
		pol := v.Repo.ProvenancePolicy(v.Product)
		pol.Builders = []string{"https://ci.acme.example/builders/other"}
		if err := v.Repo.SetProvenancePolicy(v.Product, pol); err != nil {
			t.Fatal(err)
		}
		_, err := v.Repo.Publish(v.Snapshot, v.Timestamp)
		if !errors.Is(err, provenance.ErrPolicy) || !strings.Contains(err.Error(), `builder "`+repotest.BuilderID+`" is not allowed`) {
			t.Fatalf("publish = %v", err)
		}
		assertUnpublished(t, v)
	})
	t.Run("staged envelope changed", func(t *testing.T) {
		v := newProvVendor(t, keys.EnvDev)
		image := repotest.Image(7, 50_000)
		info, err := addWith(t, v, "1.0.0", image, v.Attest(image, repotest.BuilderID, repotest.SourceRepo))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(v.Repo.Dir(), repo.StagingDir, repo.TargetsDir, "acme", "router-x1", "1.0.0", info.Provenance.SHA256+".provenance.json")
		if err := os.WriteFile(p, append(mustRead(t, p), ' '), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Repo.Publish(v.Snapshot, v.Timestamp); !errors.Is(err, repo.ErrMismatch) {
			t.Fatalf("publish = %v, want ErrMismatch", err)
		}
		assertUnpublished(t, v)
	})
	t.Run("dev without policy", func(t *testing.T) {
		v := repotest.New(t, repotest.Options{})
		v.Release("1.0.0", 1, repotest.Image(8, 50_000), nil) // no provenance needed
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertUnpublished(t *testing.T, v *repotest.Vendor) {
	t.Helper()
	rels, err := v.Repo.Releases(v.Product)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if r.Published {
			t.Fatalf("%s %s was published", r.Product, r.Version)
		}
	}
}

// TestRoleApprovers: the key IDs RoleApprovers returns are exactly the
// product keys that signed the role version.
func TestRoleApprovers(t *testing.T) {
	v := repotest.New(t, repotest.Options{ProductKeys: 3, ProductThreshold: 2})
	v.Release("1.0.0", 1, repotest.Image(9, 10_000), func(o *repo.ReleaseOptions) { o.Signers = []crypto.Signer{v.ProductSigners[0], v.ProductSigners[2]} })
	meta := filepath.Join(v.Repo.PublicDir(), "metadata")
	targets, role := mustRead(t, filepath.Join(meta, "2.targets.json")), mustRead(t, filepath.Join(meta, "1.acme.router-x1.json"))
	got, err := repo.RoleApprovers(targets, role, "acme.router-x1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{keyIDOf(t, v.ProductSigners[0]), keyIDOf(t, v.ProductSigners[2])}
	if want[0] > want[1] {
		want[0], want[1] = want[1], want[0]
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("approvers %v, want %v", got, want)
	}
}

func keyIDOf(t *testing.T, s crypto.Signer) string {
	id, err := keys.KeyID(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestProvenanceLimits: the release metadata's bound on the envelope is
// the provenance package's.
func TestProvenanceLimits(t *testing.T) {
	if release.MaxProvenanceLength != provenance.MaxEnvelopeSize {
		t.Fatalf("release.MaxProvenanceLength %d != provenance.MaxEnvelopeSize %d", release.MaxProvenanceLength, provenance.MaxEnvelopeSize)
	}
}
