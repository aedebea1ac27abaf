package vendorcmd

import (
	"flag"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/internal/bytesize"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/repo"
)

func init() {
	commands = append(commands, bundleCreateCmd)
}

var bundleCreateCmd = &cli.Command{
	Name:    "bundle create",
	Summary: "write an offline bundle (whole, or a delta) of a published release",
	Usage: `Usage: airlock bundle create --dir REPO --product PRODUCT --version V --out FILE
         [--delta-from BASE] [--force] [--json]

Writes one file that carries everything a device needs to install a
published release without network access: root metadata versions 2..N (so a
device with an older root can follow the rotations), the current timestamp,
snapshot, targets and product role metadata, and the payload. The device
verifies it exactly like an online update (docs/bundle-format.md).

With --delta-from BASE it writes a delta bundle (format 2) for devices
running release BASE: the same metadata, and as payload the delta the
published release V signs from BASE (made by 'airlock release add
--delta-from' or 'airlock delta create', then published), which carries
only what changed. The device rebuilds V from its running slot and the
delta, verifying every block against V's signed hash tree before it is
written; a device running anything else refuses the bundle. The delta file
in the repository is checked against its signed lengths and header digests
first.

FILE must not exist (unless --force); it appears only when complete (temp
file, fsync, then an atomic link, or with --force a rename, into place).

It prints until when devices install the bundle: a bundle is a copy of the
repository's metadata, and a device checks the expiry of its root, targets
and product role (not of its timestamp, which lives one day: see
docs/bundle-format.md, "Freshness"). Renew an expiring role with
'airlock repo renew', publish, and re-create the bundle with --force. A
device that already trusts newer metadata installs an older bundle only if
its newer metadata still lists the release; otherwise re-create the bundle.

Flags:
  --dir REPO          repository directory
  --product PRODUCT   product ID
  --version V         release version (must be published)
  --out FILE          bundle file to create
  --delta-from BASE   write a delta bundle for devices running release BASE
  --force             replace FILE if it exists (atomically)
  --json              print what was written as JSON

Examples:
  airlock bundle create --dir /srv/fw-repo --product acme/router-x1 \
    --version 1.1.0 --out router-x1-1.1.0.airlock
  airlock bundle create --dir /srv/fw-repo --product acme/router-x1 \
    --version 1.1.0 --delta-from 1.0.0 --out router-x1-1.0.0-to-1.1.0.airlock
`,
	Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
		dir := fs.String("dir", "", "")
		product := fs.String("product", "", "")
		version := fs.String("version", "", "")
		out := fs.String("out", "", "")
		deltaFrom := fs.String("delta-from", "", "")
		force := fs.Bool("force", false, "")
		asJSON := fs.Bool("json", false, "")
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
			info, err := r.CreateBundleFileWith(*out, repo.BundleOptions{Product: *product, Version: *version, DeltaFrom: *deltaFrom}, *force)
			prog.Done()
			if err != nil {
				return err
			}
			if *asJSON {
				return cli.WriteJSON(e.Stdout, info)
			}
			now := time.Now()
			size, _ := bytesize.Pair(info.Size, 0)
			e.Printf("airlock: wrote %s (%s, %s)\n", *out, size, info.TargetPath)
			if info.DeltaFrom != "" {
				e.Printf("delta bundle for devices running %s: payload %d bytes, %s of the whole %d-byte payload\n",
					info.DeltaFrom, info.PayloadLength, percent(info.PayloadLength, info.FullPayloadLength), info.FullPayloadLength)
			}
			e.Printf("installs until %s, %s (when the %s role expires; renew it with airlock repo renew, publish, and re-create the bundle to go on)\n",
				info.InstallsUntil.UTC().Format(time.RFC3339), until(now, info.InstallsUntil), info.ExpiringRole)
			e.Printf("devices with bundle_freshness = \"timestamp\" install it until %s, %s (the timestamp expires)\n",
				info.TimestampExpires.UTC().Format(time.RFC3339), until(now, info.TimestampExpires))
			return nil
		}
	},
}

// until says how far t is from now in words: "in 179 days", "in 23 hours",
// "already expired".
func until(now, t time.Time) string {
	d := t.Sub(now)
	switch {
	case d <= 0:
		return "already expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("in %d hours", int(d/time.Hour))
	default:
		return fmt.Sprintf("in %d minutes", int(d/time.Minute))
	}
}
