package repofiles

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/objstore"
)

func TestCleanRepoPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"a.json": true, "acme/x1/1.0.0/ab.bin": true,
		"": false, "../a": false, "a/../b": false, "a//b": false, "/a": false, "a/": false,
		"./a": false, ".a": false, "a\\b": false, "a\x00": false, strings.Repeat("a", MaxRepoPathLen+1): false,
	} {
		if err := CleanRepoPath(p); (err == nil) != ok {
			t.Errorf("CleanRepoPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestMetadataOrder(t *testing.T) {
	var in []objstore.Info
	for _, n := range []string{"metadata/timestamp.json", "metadata/root.json", "metadata/3.snapshot.json", "metadata/2.root.json",
		"metadata/10.root.json", "metadata/1.root.json", "metadata/2.snapshot.json", "metadata/4.targets.json", "metadata/2.acme-router-x1.json"} {
		in = append(in, objstore.Info{Name: n})
	}
	want := []string{"metadata/2.acme-router-x1.json", "metadata/4.targets.json", "metadata/2.snapshot.json", "metadata/3.snapshot.json",
		"metadata/1.root.json", "metadata/2.root.json", "metadata/10.root.json"}
	if diff := cmp.Diff(want, metadataOrder(in)); diff != "" {
		t.Errorf("metadataOrder (-want +got):\n%s", diff)
	}
}

func TestCacheControl(t *testing.T) {
	for name, want := range map[string]string{
		"metadata/timestamp.json": CacheRevalidate, "metadata/root.json": CacheRevalidate,
		"metadata/12.snapshot.json": CacheImmutable, "metadata/3.root.json": CacheImmutable,
		"targets/acme/x1/1.0.0/" + strings.Repeat("ab", 32) + ".fw.bin": CacheImmutable,
		"targets/acme/x1/1.0.0/fw.bin":                                  CacheRevalidate,
	} {
		if got := CacheControl(name); got != want {
			t.Errorf("CacheControl(%q) = %q, want %q", name, got, want)
		}
	}
}
