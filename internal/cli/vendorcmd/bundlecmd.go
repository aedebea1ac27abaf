package vendorcmd

import (
	"flag"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, bundleCreateCmd)
}

var bundleCreateCmd = &cli.Command{
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
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		version := fs.String("version", "", "")
		out := fs.String("out", "", "")
		return func(e *cli.Env, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			if err := cli.NeedFlags("--dir", *dir, "--product", *product, "--version", *version, "--out", *out); err != nil {
				return err
			}
			prog := e.Progress("bundle create")
			r, err := repo.OpenWith(*dir, repo.Options{Progress: prog.Start})
			if err != nil {
				return err
			}
			n, err := r.CreateBundleFile(*out, *product, *version)
			prog.Done()
			if err != nil {
				return err
			}
			e.Printf("airlock: wrote %s (%d bytes)\n", *out, n)
			return nil
		}
	},
}
