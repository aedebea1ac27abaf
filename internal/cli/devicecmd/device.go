package devicecmd

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

const deviceConfigFlags = `  --dir DIR                the device directory (its config is DIR/device.toml)
  --config PATH            the device config (default /etc/airlock/device.toml)
`

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "device install",
			Summary: "verify and install a release bundle into the inactive slot",
			Usage: `Usage: airlock device install (--dir DIR | --config PATH) --bundle FILE [--allow-downgrade]

Verifies the bundle's TUF metadata with the device's trusted state, checks
the release policy (product, model, hardware revision, channel,
dependencies, newer version, security version >= anti-rollback counter)
before reading any payload byte, streams the payload into the INACTIVE slot
(length-limited, hashed, decompressed, constant memory), then stores the
verified metadata and switches the boot control to try the new slot once.
A refused install names the check that failed and changes neither the
active slot, nor the trusted metadata, nor the counter. Next: 'device boot'.

Flags:
` + deviceConfigFlags + `  --bundle FILE            the release bundle
  --allow-downgrade        install a version that is not newer than the running
                           one; only honoured if the release's signed metadata
                           also allows it (allow_downgrade), never below the
                           anti-rollback counter

Example:
  airlock device install --dir dev1 --bundle fw-1.1.0.bundle
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dc := deviceFlags(fs)
				bundlePath := fs.String("bundle", "", "")
				allow := fs.Bool("allow-downgrade", false, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *bundlePath == "" {
						return cli.Usagef("--bundle is required")
					}
					d, err := dc.open()
					if err != nil {
						return err
					}
					f, err := os.Open(*bundlePath)
					if err != nil {
						return err
					}
					defer f.Close()
					var in io.Reader = f
					prog := e.Progress("device install")
					if st, err := f.Stat(); err == nil && prog != nil {
						in = io.TeeReader(f, prog.Start(st.Size()))
					}
					res, err := d.InstallBundle(e.Ctx, bufio.NewReaderSize(in, 256<<10), device.InstallOptions{AllowDowngrade: *allow})
					prog.Done()
					if err != nil {
						return err
					}
					fmt.Fprintf(e.Stdout, "installed %s (version %s, security version %d, %d bytes) into slot %s\n",
						res.TargetPath, res.Version, res.SecurityVersion, res.InstalledBytes, res.Slot)
					if res.Delta != "" {
						fmt.Fprintf(e.Stdout, "%s: %d bytes read from the bundle\n", res.Delta, res.TransportBytes)
					}
					e.Printf("airlock: hint: slot %s is on trial: run 'airlock device boot' then 'airlock device health'\n", res.Slot)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "device boot",
			Summary: "play the verified-boot stage: pick, verify and boot a slot",
			Usage: `Usage: airlock device boot (--dir DIR | --config PATH)

Plays the bootloader's verified-boot stage: reads the boot control, picks the
slot (the trial slot while attempts remain, else the committed one), counts
a trial attempt, re-verifies the slot's image against its stored signed
metadata, the factory root and the anti-rollback counter (metadata expiry is
not checked at boot), and falls back to the other slot, then recovery, when
verification fails or the trial attempts are exhausted. Prints which slot
booted and why. Exits 1 if no slot verifies.

Flags:
` + deviceConfigFlags + `
Example:
  airlock device boot --dir dev1
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dc := deviceFlags(fs)
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					d, err := dc.open()
					if err != nil {
						return err
					}
					r, err := d.Boot(e.Ctx)
					if r != nil {
						for _, f := range r.Fallbacks {
							e.Printf("airlock: fallback: %s\n", f)
						}
					}
					if err != nil {
						return err
					}
					printBoot(e, r)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "device health",
			Summary: "run the health check: commit the trial slot or roll back",
			Usage: `Usage: airlock device health (--dir DIR | --config PATH)

Runs the configured health check within its deadline. After a trial boot,
success commits the slot and only then raises the anti-rollback counter to
the release's security version; failure or timeout marks the slot bad and
reboots into the previous slot (exit 1). Without a pending trial it only runs
the check.

Flags:
` + deviceConfigFlags + `
Example:
  airlock device health --dir dev1
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dc := deviceFlags(fs)
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					d, err := dc.open()
					if err != nil {
						return err
					}
					h, err := d.Health(e.Ctx)
					if h != nil && h.Rollback && h.Reboot != nil {
						fmt.Fprintf(e.Stdout, "rolled back: slot %s marked bad\n", h.Slot)
						printBoot(e, h.Reboot)
					}
					if err != nil {
						return err
					}
					if h.Committed {
						fmt.Fprintf(e.Stdout, "healthy: committed slot %s (version %s)\n", h.Slot, h.Version)
					} else {
						fmt.Fprintf(e.Stdout, "healthy: slot %s (version %s), nothing to commit\n", h.Slot, h.Version)
					}
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "device status",
			Summary: "show slots, versions, counter and the last result",
			Usage: `Usage: airlock device status (--dir DIR | --config PATH) [--json]

Shows the boot control state, each slot's record (status, version, security
version), the anti-rollback counter, the last boot and the last operation's
result. Slot records are shown as stored; 'device boot' re-verifies them.

Flags:
` + deviceConfigFlags + `  --json                   print JSON

Example:
  airlock device status --dir dev1 --json
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				dc := deviceFlags(fs)
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					d, err := dc.open()
					if err != nil {
						return err
					}
					s := d.Status()
					if *asJSON {
						return cli.WriteJSON(e.Stdout, s)
					}
					printStatus(e, s)
					return nil
				}
			},
		},
	)
}

// componentFlag collects repeated --component NAME=VERSION flags.
type componentFlag map[string]release.Version

func (c componentFlag) String() string { return "" }

func (c componentFlag) Set(s string) error {
	name, v, err := device.ParseComponent(s)
	if err != nil {
		return err
	}
	if _, dup := c[name]; dup {
		return fmt.Errorf("component %q given twice", name)
	}
	if len(c) >= device.MaxComponents {
		return fmt.Errorf("more than %d components", device.MaxComponents)
	}
	c[name] = v
	return nil
}

type deviceConfigFlag struct{ dir, config *string }

func deviceFlags(fs *flag.FlagSet) deviceConfigFlag {
	return deviceConfigFlag{dir: fs.String("dir", "", ""), config: fs.String("config", "", "")}
}

func (c deviceConfigFlag) path() (string, error) {
	switch {
	case *c.dir != "" && *c.config != "":
		return "", cli.Usagef("--dir and --config are mutually exclusive")
	case *c.dir != "":
		return device.Layout{Dir: *c.dir}.ConfigPath(), nil
	case *c.config != "":
		return *c.config, nil
	}
	return device.DefaultConfigPath, nil
}

func (c deviceConfigFlag) open() (*device.Device, error) {
	p, err := c.path()
	if err != nil {
		return nil, err
	}
	return device.OpenConfig(durable.OS, p, device.Options{HealthOutput: os.Stderr})
}

func printBoot(e *cli.Env, r *device.BootResult) {
	kind := "committed"
	if r.Trial {
		kind = "trial"
	}
	fmt.Fprintf(e.Stdout, "booted slot %s (version %s, %s): %s\n", r.Slot, r.Version, kind, r.Reason)
}

func printStatus(e *cli.Env, s *device.Status) {
	b := s.Boot
	trial := "none"
	if b.Trial != "" {
		trial = fmt.Sprintf("%s (attempt %d of %d)", b.Trial, b.BootCount, b.BootLimit)
	}
	cli.Columns(e.Stdout, [][]string{
		{"device:", fmt.Sprintf("%s (hw rev %d), product %s, channel %s", s.Model, s.HWRev, s.Product, s.Channel)},
		{"anti-rollback counter:", strconv.FormatUint(s.Counter, 10)},
		{"boot control:", fmt.Sprintf("%s: good %s, trial %s, next boot %s", b.Backend, b.Good, trial, b.Next)},
	})
	fmt.Fprintln(e.Stdout)
	rows := [][]string{{"SLOT", "ROLE", "STATUS", "VERSION", "SECURITY", "NOTE"}}
	for _, sl := range s.Slots {
		sv := ""
		if sl.Version != "" {
			sv = strconv.FormatUint(uint64(sl.SecurityVersion), 10)
		}
		rows = append(rows, []string{string(sl.Slot), sl.Role, sl.Status, sl.Version, sv, sl.Reason})
	}
	cli.Columns(e.Stdout, rows)
	if b := s.Booted; b != nil {
		at := b.Time.Format(time.RFC3339)
		if b.Failed {
			fmt.Fprintf(e.Stdout, "\nlast boot: FAILED at %s: %s\n", at, b.Reason)
		} else {
			kind := "committed"
			if b.Trial {
				kind = "trial"
			}
			fmt.Fprintf(e.Stdout, "\nlast boot: slot %s (version %s, %s) at %s: %s\n", b.Slot, b.Version, kind, at, b.Reason)
		}
	}
	if s.Last != nil {
		res := "ok"
		if !s.Last.OK {
			res = "FAILED"
		}
		fmt.Fprintf(e.Stdout, "last operation: %s %s at %s: %s\n", s.Last.Operation, res, s.Last.Time.Format(time.RFC3339), s.Last.Message)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(e.Stdout, "problem: %s\n", p)
	}
}

func deviceInitFlags(fs *flag.FlagSet) func(*cli.Env, []string) error {
	dir := fs.String("dir", "", "")
	rootPath := fs.String("root", "", "")
	model := fs.String("model", "", "")
	hwRev := fs.String("hw-rev", "", "")
	slotSize := cli.SizeFlag(fs, "slot-size", 0)
	product := fs.String("product", "", "")
	image := fs.String("image", "", "")
	backend := fs.String("boot", boot.BackendSim, "")
	bootLimit := fs.Int("boot-limit", boot.DefaultBootLimit, "")
	channel := fs.String("channel", "", "")
	healthCmd := fs.String("health-cmd", "", "")
	healthTimeout := fs.Duration("health-timeout", 0, "")
	writeChunk := cli.SizeFlag(fs, "write-chunk", 0)
	comps := componentFlag{}
	fs.Var(comps, "component", "")
	return func(e *cli.Env, args []string) error {
		if err := cli.NoArgs(args); err != nil {
			return err
		}
		for _, req := range []struct{ name, v string }{{"--dir", *dir}, {"--root", *rootPath}, {"--model", *model}, {"--hw-rev", *hwRev}} {
			if req.v == "" {
				return cli.Usagef("%s is required", req.name)
			}
		}
		if *slotSize <= 0 {
			return cli.Usagef("--slot-size is required (> 0, e.g. 64MiB)")
		}
		rev, err := strconv.ParseUint(*hwRev, 10, 32)
		if err != nil {
			return cli.Usagef("--hw-rev %q is not a uint32", *hwRev)
		}
		root, err := durable.ReadFile(durable.OS, *rootPath, trust.MaxRootSize)
		if err != nil {
			return err
		}
		var src *verify.BundleSource
		var bundleFile *os.File
		if *image != "" {
			if bundleFile, err = os.Open(*image); err != nil {
				return err
			}
			defer bundleFile.Close()
			if src, err = verify.OpenBundle(bufio.NewReaderSize(bundleFile, 1<<20)); err != nil {
				return err
			}
			if *product == "" {
				p, _, _, err := release.ParseTargetPath(src.TargetPath())
				if err != nil {
					return fmt.Errorf("cannot infer --product from the bundle: %w", err)
				}
				*product = p.String()
			}
		}
		if *product == "" {
			return cli.Usagef("--product is required without --image")
		}
		layout := device.Layout{Dir: *dir}
		cfg, err := layout.Config(*backend, *slotSize)
		if err != nil {
			return &cli.UsageError{Msg: err.Error()}
		}
		if maxLimit := device.MaxBootLimit; *bootLimit < 1 || *bootLimit > maxLimit ||
			*backend == boot.BackendGrubEnv && *bootLimit > device.MaxGrubBootLimit {
			if *backend == boot.BackendGrubEnv {
				maxLimit = device.MaxGrubBootLimit
			}
			return cli.Usagef("--boot-limit %d out of range [1, %d] for --boot %s", *bootLimit, maxLimit, *backend)
		}
		cfg.Model, cfg.HWRev, cfg.Product, cfg.Channel, cfg.WriteChunk = *model, uint32(rev), *product, *channel, *writeChunk
		cfg.Boot.BootLimit = *bootLimit
		if len(comps) > 0 {
			cfg.Components = comps
		}
		if *healthCmd != "" {
			cfg.Health.Command = strings.Fields(*healthCmd)
		}
		cfg.Health.Timeout = *healthTimeout
		if err := cfg.Validate(); err != nil {
			return &cli.UsageError{Msg: err.Error()}
		}
		po := device.ProvisionOptions{FactoryRoot: root}
		if src != nil {
			po.Initial, po.InitialTarget = src, src.TargetPath()
		}
		d, err := layout.Create(e.Ctx, durable.OS, cfg, po, device.Options{})
		if err != nil {
			return err
		}
		msg := "without an image (install one with 'airlock device install')"
		if rec, err := d.SlotRecord(boot.SlotA); err == nil && rec != nil {
			msg = fmt.Sprintf("with %s (version %s) committed in slot A", rec.TargetPath, rec.Version)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		fmt.Fprintf(e.Stdout, "created device %s in %s %s\n", *model, *dir, msg)
		return nil
	}
}
