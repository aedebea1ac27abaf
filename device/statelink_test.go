package device

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/internal/durable"
)

// snapshotTree returns the content of every file under dir.
func snapshotTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSymlinkPlantedInStateRedirectsNothing plants, for each state file
// (and the trust directory), a symbolic link to a copy of it outside the
// device — the strongest form: the content is valid — and runs what a
// device runs (open, boot, install, status). Every read or write through
// the link must be refused with an error naming it, and the outside copy
// must stay byte-for-byte unchanged.
func TestSymlinkPlantedInStateRedirectsNothing(t *testing.T) {
	for _, name := range []string{
		"last.json", "booted.json", "slot-A.json", "counter",
		"trust/root.json", "trust/timestamp.json", "trust/snapshot.json", "trust/targets.json", "trust",
	} {
		t.Run(name, func(t *testing.T) {
			d, b11, dir := osDevice(t)
			planted := d.statePath(name)
			outside := filepath.Join(dir, "outside", name)
			if err := os.MkdirAll(filepath.Dir(outside), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(planted, outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, planted); err != nil {
				t.Fatal(err)
			}
			before := snapshotTree(t, filepath.Join(dir, "outside"))

			var errs []error
			d2, err := Open(durable.OS, d.cfg, Options{})
			errs = append(errs, err)
			if err == nil {
				_, err = d2.Boot(context.Background())
				errs = append(errs, err)
				_, err = installBundle(d2, b11, InstallOptions{})
				errs = append(errs, err)
				for _, p := range d2.Status().Problems {
					errs = append(errs, errors.New(p))
				}
			}
			refused := false
			for _, err := range errs {
				if errors.Is(err, durable.ErrSymlink) || err != nil && strings.Contains(err.Error(), durable.ErrSymlink.Error()) {
					refused = true
				}
			}
			if !refused {
				t.Errorf("no operation refused the link planted at state/%s: %v", name, errs)
			}
			if diff := cmp.Diff(before, snapshotTree(t, filepath.Join(dir, "outside"))); diff != "" {
				t.Errorf("files outside the device changed through the link (-before +after):\n%s", diff)
			}
			if fi, err := os.Lstat(planted); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("state/%s is no longer the planted link (%v, %v): a write went around the refusal", name, fi, err)
			}
		})
	}
}
