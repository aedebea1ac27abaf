package releases

import (
	"errors"
	"testing"
	"testing/fstest"

	"github.com/airlockfw/airlock/release"
)

func TestApprovalThresholdIsBoundedAndOnlyForProduction(t *testing.T) {
	for _, n := range []int{-1, MaxProdApprovals + 1} {
		if _, err := New(Config{ProdApprovals: n}); !errors.Is(err, ErrConfig) {
			t.Errorf("ProdApprovals %d: %v, want ErrConfig", n, err)
		}
	}
	g, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string]int{release.EnvProd: DefaultProdApprovals, release.EnvStaging: 0, release.EnvDev: 0} {
		if got := g.RequiredApprovals(env); got != want {
			t.Errorf("RequiredApprovals(%q) = %d, want %d", env, got, want)
		}
	}
}

// TestUnpublishedReleasesAreRefused: without served metadata, or with
// metadata that does not parse or is too large, nothing is registrable.
func TestUnpublishedReleasesAreRefused(t *testing.T) {
	p, _ := release.ParseProduct("acme/router-x1")
	v, _ := release.ParseVersion("1.0.0")
	for name, files := range map[string]fstest.MapFS{
		"empty":     {},
		"malformed": {"timestamp.json": {Data: []byte("{")}},
		"too large": {"timestamp.json": {Data: make([]byte, MaxServedMetadataSize+1)}},
	} {
		g, _ := New(Config{Metadata: files})
		if _, err := g.findPublished(p, v); !errors.Is(err, ErrReleaseNotPublished) {
			t.Errorf("%s: %v, want ErrReleaseNotPublished", name, err)
		}
	}
}
