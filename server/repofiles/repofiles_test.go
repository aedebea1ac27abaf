package repofiles

import (
	"strings"
	"testing"
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
