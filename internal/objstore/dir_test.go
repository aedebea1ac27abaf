package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/internal/objstore/storetest"
)

func newDir(t *testing.T) objstore.Store {
	d, err := objstore.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDir(t *testing.T) { storetest.Run(t, newDir) }

// TestDirConfined: a symlink leading out of the directory is neither
// opened nor listed as an object.
func TestDirConfined(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "sub")); err != nil {
		t.Fatal(err)
	}
	d, err := objstore.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	for _, name := range []string{"link", "sub/secret"} {
		if o, err := d.Open(ctx, name); err == nil {
			b, _ := io.ReadAll(o)
			t.Errorf("Open(%q) read %q from outside the store", name, b)
		}
	}
	infos, err := d.List(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 0 {
		t.Errorf("List = %+v, want nothing", infos)
	}
}

// TestDirPutLeavesNoTemporaryFile: a refused Put removes its temporary file.
func TestDirPutLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	d, err := objstore.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := storetest.Opts([]byte("abc"))
	if _, err := d.Put(context.Background(), "a/b", bytes.NewReader([]byte("abd")), o); !errors.Is(err, objstore.ErrContent) {
		t.Fatalf("Put = %v", err)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Errorf("files left: %q", files)
	}
}
