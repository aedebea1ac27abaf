package trust

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "metadata"), 0o755)
	os.MkdirAll(filepath.Join(dir, "targets", "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "metadata", "2.acme.router-x1.json"), []byte("role"), 0o644)
	os.WriteFile(filepath.Join(dir, "metadata", "timestamp.json"), []byte("0123456789"), 0o644)
	os.WriteFile(filepath.Join(dir, "targets", "a", "ab12.fw.img"), []byte("payload"), 0o644)
	src := NewDirSource(dir)
	ctx := context.Background()
	if b, err := src.FetchMetadata(ctx, "acme.router-x1", 2, 100); err != nil || string(b) != "role" {
		t.Fatalf("versioned role: %q %v", b, err)
	}
	if _, err := src.FetchMetadata(ctx, "timestamp", 0, 5); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v, want ErrTooLarge", err)
	}
	if _, err := src.FetchMetadata(ctx, "snapshot", 3, 100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v, want ErrNotFound", err)
	}
	if _, err := src.FetchMetadata(ctx, "../../etc/passwd", 0, 100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a role name with separators is quoted, never a path: %v", err)
	}
	rc, err := src.OpenTarget(ctx, "a/fw.img", "ab12")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "payload" {
		t.Fatalf("target = %q", b)
	}
	for _, p := range []string{"../x", "a/../x", "a//x", `a\x`} {
		if _, err := src.OpenTarget(ctx, p, ""); !errors.Is(err, ErrInvalidName) {
			t.Errorf("target %q: %v, want ErrInvalidName", p, err)
		}
	}
}
