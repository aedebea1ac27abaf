package repo

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCreateBundleFileNeverOverwritesAndLeavesNoTemp(t *testing.T) {
	f := newFixture(t)
	f.addRelease(t, "2.0.0", "", f.product[0], f.product[1])
	f.publish(t)
	out := filepath.Join(t.TempDir(), "fw.airlock")
	info, err := f.r.CreateBundleFile(out, "acme/router-x1", "2.0.0", false)
	if err != nil {
		t.Fatal(err)
	}
	n := info.Size
	var want bytes.Buffer
	if err := f.r.CreateBundle(&want, "acme/router-x1", "2.0.0"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want.Bytes()) || n != int64(len(got)) {
		t.Fatalf("bundle file: %d bytes (reported %d), want %d", len(got), n, want.Len())
	}
	if _, err := f.r.CreateBundleFile(out, "acme/router-x1", "2.0.0", false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second CreateBundleFile = %v, want fs.ErrExist", err)
	}
	bad := filepath.Join(filepath.Dir(out), "missing.airlock")
	if _, err := f.r.CreateBundleFile(bad, "acme/router-x1", "9.9.9", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bundle of an unknown version = %v, want ErrNotFound", err)
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("output directory holds %q, want only the bundle (no temp file)", names)
	}
}
