package repo

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"schema":1,"expires":{"root":"365d","targets":"180d","snapshot":"7d","timestamp":"1d","product":"180d"}}`))
	f.Add([]byte(`{"schema":1,"expires":{"root":"","targets":"","snapshot":"","timestamp":"","product":""},"online_snapshot_key":"/k"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseConfig(data)
		if err != nil {
			return
		}
		if c.Schema != ConfigSchema {
			t.Fatalf("accepted schema %d", c.Schema)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"365d", "1d", "36h", "90m", "0d", "3651d", "-1h", "01d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d <= 0 {
			t.Fatalf("accepted non-positive %q", s)
		}
		d2, err := ParseDuration(d.String())
		if err != nil || d2 != d {
			t.Fatalf("%q -> %v -> %v, %v", s, d, d2, err)
		}
	})
}

// FuzzImportPending feeds carried pending files to a real repository: a
// carried file is untrusted and must never panic or be merged unless it
// matches staged content.
func FuzzImportPending(f *testing.F) {
	fx := newFixture(f)
	fx.addRelease(f, "1.0.0", "", fx.product[0])
	staged, err := os.ReadFile(filepath.Join(fx.dir, "staging", "acme.router-x1.json"))
	if err != nil {
		f.Fatal(err)
	}
	root, _ := os.ReadFile(filepath.Join(fx.dir, "public", "metadata", "1.root.json"))
	f.Add(staged)
	f.Add(root)
	f.Add([]byte(`{"signed":{"_type":"targets"},"signatures":[]}`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "carried.json")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, have, need, err := fx.r.ImportPending(p)
		if err == nil && (have < 0 || need < 1) {
			t.Fatalf("import %d/%d", have, need)
		}
	})
}
