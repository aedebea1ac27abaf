//go:build !airlock_device

package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/airlockfw/airlock/repo"
)

func init() {
	register(bundleCreateCmd)
}

var bundleCreateCmd = &command{
	Name:    "bundle create",
	Summary: "write an offline bundle of a published release",
	Usage: `Usage: airlock bundle create --dir REPO --product PRODUCT --version V --out FILE

Writes one file that carries everything a device needs to install a
published release without network access: root metadata versions 2..N (so a
device with an older root can follow the rotations), the current timestamp,
snapshot, targets and product role metadata, and the payload. The device
verifies it exactly like an online update (docs/bundle-format.md).

FILE must not exist; it appears only when complete (temp file, fsync,
then an atomic link into place).

Flags:
  --dir REPO          repository directory
  --product PRODUCT   product ID
  --version V         release version (must be published)
  --out FILE          bundle file to create

Example:
  airlock bundle create --dir /srv/fw-repo --product acme/router-x1 \
    --version 1.1.0 --out router-x1-1.1.0.airlock
`,
	Flags: func(fs *flag.FlagSet) func(*Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		version := fs.String("version", "", "")
		out := fs.String("out", "", "")
		return func(e *Env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			if err := needFlags("--dir", *dir, "--product", *product, "--version", *version, "--out", *out); err != nil {
				return err
			}
			if _, err := os.Lstat(*out); err == nil {
				return fmt.Errorf("%s already exists; refusing to overwrite it", *out)
			}
			r, err := repo.Open(*dir)
			if err != nil {
				return err
			}
			f, err := os.CreateTemp(filepath.Dir(*out), ".bundle-*")
			if err != nil {
				return fmt.Errorf("failed to create temp file: %w", err)
			}
			tmp := f.Name()
			defer os.Remove(tmp)
			if err := r.CreateBundle(f, *product, *version); err != nil {
				f.Close()
				return err
			}
			if err := f.Chmod(0o644); err != nil {
				f.Close()
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return fmt.Errorf("failed to sync bundle: %w", err)
			}
			if err := f.Close(); err != nil {
				return err
			}
			// Link fails if out appeared meanwhile: never overwrite.
			if err := os.Link(tmp, *out); err != nil {
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%s already exists; refusing to overwrite it", *out)
				}
				return fmt.Errorf("failed to create %s: %w", *out, err)
			}
			if d, err := os.Open(filepath.Dir(*out)); err == nil {
				d.Sync()
				d.Close()
			}
			fi, _ := os.Stat(*out)
			e.Printf("airlock: wrote %s (%d bytes)\n", *out, fi.Size())
			return nil
		}
	},
}
