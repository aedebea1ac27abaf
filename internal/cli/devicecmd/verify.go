package devicecmd

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:    "verify",
		Summary: "verify a bundle or repository release exactly as a device would",
		Usage: `Usage: airlock verify (--root ROOT.json | --device DIR | --device-config PATH)
                      (--bundle FILE | --repo DIR_OR_URL [--version V])
                      [--product P] [--model M] [--hw-rev R] [--channel C] [--component NAME=VERSION]...
                      [--running VERSION] [--counter N] [--slot-size SIZE] [--allow-downgrade] [--json]
                      [--show-provenance]

Runs the check pipeline a device runs before installing — the same code,
with the device's limits — and names the failed check exactly as the device
would (format, metadata, target, release, selection, policy, slot,
transparency, payload): signatures and thresholds of every role, expiry,
version rollback, snapshot/targets consistency, the trust environment of the
root, delegation paths (a product key can only sign its own product), the
hash policy (sha256/sha512 only, all must match), the release metadata, the
firmware policy, the release's entry in the witnessed transparency log when
the root requires one (docs/transparency.md), target hashes and lengths, the
installed (decompressed) image digest and length, and a bundle's trailer.
Nothing is written. The payload is streamed, never held in memory.

The device facts come from a device (--device DIR or --device-config PATH:
its config, installed components, running version, anti-rollback counter,
slot size, and its trusted metadata as the rollback reference, read-only),
or from the flags. A fact that is not given is not checked, and the report
lists those checks as skipped: for the device's own verdict, give --device.

On success it prints a summary (or JSON with --json) and exits 0. On failure
it exits 1 and names the failed check, e.g.
  airlock: error: payload check failed: payload hash mismatch: ...

Flags:
  --root FILE          trusted root metadata (e.g. the factory root, public/metadata/1.root.json)
  --device DIR         take the facts, factory root and trusted metadata of the device in DIR
  --device-config PATH the same, from the device config at PATH
  --bundle FILE        offline bundle to verify
  --repo DIR_OR_URL    repository directory (its public/ is read) or https URL of the served public/
  --version V          release version to verify in a repository (default: newest that passes)
  --product P          product ID, e.g. acme/router-x1 (required with --repo unless --device)
  --model M            device model
  --hw-rev R           device hardware revision (non-negative integer)
  --channel C          device channel
  --component N=V      an installed component and its version (repeatable; checks dependencies)
  --running V          the version the device runs (checks that the release is newer)
  --counter N          the device's anti-rollback counter (checks the security version)
  --slot-size SIZE     the device's slot size, e.g. 64MiB (checks that the image fits)
  --allow-downgrade    as 'device install --allow-downgrade'
  --json               print the report as JSON on stdout
  --show-provenance    with --repo, also show who built the release and who approved it: the
                       provenance envelope bound in its signed metadata (builder, build type,
                       source repository and commit, DSSE signers) and the keys whose
                       signatures on the product role counted (full airlock binary only)

Examples:
  airlock verify --root 1.root.json --bundle router-x1-1.1.0.airlock --model x1 --hw-rev 3
  airlock verify --device dev1 --bundle router-x1-1.1.0.airlock
  airlock verify --root 1.root.json --repo ./repo --product acme/router-x1 --model x1
`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			root := fs.String("root", "", "")
			devDir := fs.String("device", "", "")
			devConfig := fs.String("device-config", "", "")
			bundleFile := fs.String("bundle", "", "")
			repoLoc := fs.String("repo", "", "")
			product := fs.String("product", "", "")
			version := fs.String("version", "", "")
			model := fs.String("model", "", "")
			hwRev := fs.String("hw-rev", "", "")
			channel := fs.String("channel", "", "")
			components := componentFlag{}
			fs.Var(components, "component", "")
			running := fs.String("running", "", "")
			counterFlag := fs.String("counter", "", "")
			slotSize := cli.SizeFlag(fs, "slot-size", 0)
			allow := fs.Bool("allow-downgrade", false, "")
			asJSON := fs.Bool("json", false, "")
			showProv := fs.Bool("show-provenance", false, "")
			return func(e *cli.Env, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				fromDevice := *devDir != "" || *devConfig != ""
				switch {
				case *devDir != "" && *devConfig != "":
					return cli.Usagef("--device and --device-config are mutually exclusive")
				case fromDevice && (*root != "" || *product != "" || *model != "" || *hwRev != "" || *channel != "" ||
					len(components) > 0 || *running != "" || *counterFlag != "" || *slotSize != 0):
					return cli.Usagef("--device takes every fact from the device; do not combine it with --root or fact flags")
				case !fromDevice && *root == "":
					return cli.Usagef("--root (or --device) is required")
				case (*bundleFile == "") == (*repoLoc == ""):
					return cli.Usagef("give exactly one of --bundle and --repo")
				case *repoLoc != "" && *product == "" && !fromDevice:
					return cli.Usagef("--repo needs --product")
				case *bundleFile != "" && *version != "":
					return cli.Usagef("--version applies to --repo only")
				case *slotSize < 0:
					return cli.Usagef("--slot-size must not be negative")
				case *showProv && (*repoLoc == "" || Provenance == nil):
					return cli.Usagef("--show-provenance needs --repo (the envelope is served beside the release) and the full airlock binary")
				}
				var opts verify.Options
				if fromDevice {
					dc := deviceConfigFlag{dir: devDir, config: devConfig}
					d, err := dc.open()
					if err != nil {
						return err
					}
					if opts.Facts, err = d.Facts(); err != nil {
						return err
					}
					opts.Root, opts.Store = d.FactoryRoot(), d.PreviewStore()
					opts.RequireTimestamp = d.Config().BundleFreshness == device.FreshnessTimestamp
				} else {
					rootData, err := durable.ReadFile(durable.OS, *root, trust.MaxRootSize)
					if err != nil {
						return fmt.Errorf("failed to read trusted root: %w", err)
					}
					opts.Root = rootData
					if opts.Facts, err = factsFromFlags(*product, *model, *hwRev, *channel, components, *running, *counterFlag); err != nil {
						return err
					}
					opts.Facts.SlotSize = *slotSize
				}
				opts.Facts.AllowDowngrade = *allow
				opts.Version = *version
				prog := e.Progress("verify")
				opts.Progress = prog.Start
				var rep *verify.Report
				var err error
				if *bundleFile != "" {
					f, oerr := os.Open(*bundleFile)
					if oerr != nil {
						return oerr
					}
					defer f.Close()
					rep, err = verify.Bundle(e.Ctx, f, opts)
				} else {
					rep, err = verify.Repo(e.Ctx, *repoLoc, opts)
				}
				prog.Done()
				if err != nil {
					return err
				}
				var provRows [][]string
				var provJSON any
				if *showProv {
					if provRows, provJSON, err = Provenance(e.Ctx, rep, *repoLoc); err != nil {
						return err
					}
				}
				if *asJSON && *showProv {
					return cli.WriteJSON(e.Stdout, struct {
						*verify.Report
						Provenance any `json:"provenance"`
					}{rep, provJSON})
				}
				if *asJSON {
					return cli.WriteJSON(e.Stdout, rep)
				}
				printReport(e, rep, provRows...)
				return nil
			}
		},
	})
}

// factsFromFlags states the facts given on the command line; the checks of
// the others are left out.
func factsFromFlags(product, model, hwRev, channel string, components componentFlag, running, counter string) (verify.Facts, error) {
	var f verify.Facts
	unstated := func(check string, given bool) {
		if !given {
			f.Unstated = append(f.Unstated, check)
		}
	}
	f.Device.Product, f.Device.Model, f.Device.Channel = product, model, channel
	unstated(release.CheckProduct, product != "")
	unstated(release.CheckModel, model != "")
	unstated(release.CheckHWRev, hwRev != "")
	unstated(release.CheckChannel, channel != "")
	unstated(release.CheckDependency, len(components) > 0)
	unstated(release.CheckDowngrade, running != "")
	unstated(release.CheckSecurityVersion, counter != "")
	if hwRev != "" {
		r, err := strconv.ParseUint(hwRev, 10, 32)
		if err != nil {
			return f, cli.Usagef("--hw-rev %q is not a non-negative integer", hwRev)
		}
		f.Device.HWRev = uint32(r)
	}
	f.Device.Components = components
	if running != "" {
		v, err := release.ParseVersion(running)
		if err != nil {
			return f, cli.Usagef("--running: %v", err)
		}
		f.Device.Current = &v
	}
	if counter != "" {
		n, err := strconv.ParseUint(counter, 10, 64)
		if err != nil {
			return f, cli.Usagef("--counter %q is not a non-negative integer", counter)
		}
		f.Device.SecurityCounter = n
	}
	return f, nil
}

// printReport prints r, then the extra rows (the provenance).
func printReport(e *cli.Env, r *verify.Report, extra ...[]string) {
	comp := r.Compression
	if comp == "" {
		comp = "none"
	}
	hw := r.HWRev
	if hw == "" {
		hw = "any"
	}
	rows := [][]string{
		{"OK", fmt.Sprintf("%s %s verified (%s)", r.Product, r.Version, r.Source)},
		{"target", r.TargetPath},
		{"payload", fmt.Sprintf("%d bytes, sha256 %s", r.Length, r.SHA256)},
		{"installed image", fmt.Sprintf("%d bytes, sha256 %s (compression %s)", r.InstalledLength, r.InstalledSHA256, comp)},
		{"security version", fmt.Sprint(r.SecurityVersion)},
	}
	if r.IndexRoot != "" {
		rows = append(rows, []string{"block index", "dm-verity root " + r.IndexRoot + " (every block verified against it)"})
	}
	if r.DeltaFrom != "" {
		rows = append(rows, []string{"delta", "from " + r.DeltaFrom + ": headers and windows verified; the blocks are verified by a device running " + r.DeltaFrom})
	}
	rows = append(rows, [][]string{
		{"models / hw rev / channel", fmt.Sprintf("%s / %s / %s", strings.Join(r.Models, ","), hw, r.Channel)},
	}...)
	for _, ri := range r.Roles {
		rows = append(rows, []string{"role " + ri.Role, fmt.Sprintf("v%d, expires %s, threshold %d of %d keys", ri.Version, ri.Expires.UTC().Format(time.RFC3339), ri.Threshold, ri.Keys)})
	}
	if r.Logged {
		rows = append(rows, []string{"transparency log", fmt.Sprintf("entry %d, under a checkpoint signed by the log and cosigned as the root's policy requires", r.LogIndex)})
	}
	if r.ExpiringRole != "" {
		rows = append(rows, []string{"installs until", r.InstallsUntil.UTC().Format(time.RFC3339) + " (the " + r.ExpiringRole + " role expires)"})
	}
	rows = append(rows, []string{"checks passed", strings.Join(r.Checks, ", ")})
	if len(r.Skipped) > 0 {
		rows = append(rows, []string{"policy checks skipped", strings.Join(r.Skipped, ", ") + " (not stated; give --device for the device's verdict)"})
	}
	cli.Columns(e.Stdout, append(rows, extra...))
}
