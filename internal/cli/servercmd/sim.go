package servercmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/sim"
	"github.com/airlockfw/airlock/trust"
)

// Limits of the files `airlock sim` reads.
const (
	// MaxSimBundleSize bounds --initial-bundle: every simulated device
	// holds its image in memory, so the simulator is for small images.
	MaxSimBundleSize = 16 << 20
	// DefaultSimReportInterval is the summary interval.
	DefaultSimReportInterval = 5 * time.Second
)

func init() {
	commands = append(commands, &cli.Command{
		Name:    "sim",
		Summary: "simulate a fleet of devices against an update server",
		Usage: `Usage: airlock sim --server URL --ca FILE --token-file FILE --root FILE
                  --initial-bundle FILE --devices N [--fail-rate R] [--seed S]
                  [--duration D] [--model M] [--hw-rev R] [--product P]
                  [--channel C] [--director-root FILE] [--concurrency N]
                  [--poll-interval D] [--slot-size SIZE] [--report-every D]
                  [--light] [--verbose] [--log-level L]

Runs N simulated devices in one process against the update server. Each has
its own key and certificate, state, A/B slots and boot control in memory,
and runs the real device agent: it is provisioned with the factory root
(--root) and the initial release (--initial-bundle, an offline bundle of a
small image), enrolls with the token, polls with jitter, installs what the
server's director assigns (--director-root) or the newest release, boots it
and runs a health check that fails with probability --fail-rate per install
(seeded: the same --seed fails the same installs), then commits or rolls back
and reports, like a real device.

A summary line (devices by version, polls, installs, commits, rollbacks) is
printed to stdout every --report-every and at the end; logs go to stderr as
JSON objects, one a line (time, level, msg), like serve's and the agent's.
The simulator exits after --duration (default: until interrupted).

--light runs light devices instead, for fleets of 100,000: each holds only
its key, the certificate the server's enrollment API issued, its version and
its schedule (about 1 KiB), and speaks the real device API over mutual TLS;
on an assignment it fetches the director metadata and the payload, checks
the payload's length and SHA-256 against the director's targets (no
signature checks, nothing installed) and reports downloading, installed and
committed (or rolled_back with --fail-rate). They exercise the server, not
the device's verification; the summary adds check-in latency p50/p90/p99.
--slot-size and --verbose do not apply; --director-root is not read (light
devices fetch the director's metadata without verifying it).

Flags:
  --server URL           update server (https://HOST:PORT)
  --ca FILE              server CA certificate (PEM; airlock serve prints it)
  --token-file FILE      enrollment token with at least N uses
  --root FILE            image repository root the devices trust (factory root)
  --initial-bundle FILE  offline bundle of the release devices start with
  --devices N            number of simulated devices
  --fail-rate R          probability in [0,1] that an install fails its health check (default 0)
  --seed S               seed of the failure draws and jitter (default 1)
  --duration D           stop after D (e.g. 10m; default: run until interrupted)
  --model M              device model (default sim)
  --hw-rev R             hardware revision (default 1)
  --product P            product ID (default: the initial bundle's)
  --channel C            release channel (default: the release default)
  --director-root FILE   director root: director mode (install only assignments)
  --concurrency N        poll cycles in flight (default 200)
  --poll-interval D      poll interval until the server sends its own (default 10s)
  --slot-size SIZE       size of each in-memory slot, e.g. 256KiB (default 64KiB)
  --report-every D       summary interval (default 5s)
  --light                light devices (see above) instead of real agents
  --verbose              log every device's agent to stderr
  --log-level L          debug, info, warn or error (default $AIRLOCK_LOG_LEVEL, else info)

Examples:
  airlock sim --server https://127.0.0.1:8443 --ca ca.pem --token-file token \
      --root 1.root.json --initial-bundle fw-1.0.0.bundle --devices 1000 \
      --fail-rate 0.2 --seed 7 --director-root director-root.json --duration 10m
`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			server, ca, tokenFile := fs.String("server", "", ""), fs.String("ca", "", ""), fs.String("token-file", "", "")
			root, bundleFile := fs.String("root", "", ""), fs.String("initial-bundle", "", "")
			devices := fs.Int("devices", 0, "")
			failRate := fs.Float64("fail-rate", 0, "")
			seed := fs.Uint64("seed", 1, "")
			duration := fs.Duration("duration", 0, "")
			model, hwRev := fs.String("model", "sim", ""), fs.Uint("hw-rev", sim.DefaultHWRev, "")
			product, channel := fs.String("product", "", ""), fs.String("channel", "", "")
			directorRoot := fs.String("director-root", "", "")
			concurrency := fs.Int("concurrency", sim.DefaultConcurrency, "")
			pollInterval := fs.Duration("poll-interval", sim.DefaultPollInterval, "")
			slotSize := cli.SizeFlag(fs, "slot-size", sim.DefaultSlotSize)
			reportEvery := fs.Duration("report-every", DefaultSimReportInterval, "")
			verbose := fs.Bool("verbose", false, "")
			light := fs.Bool("light", false, "")
			logLevel := cli.AddLogLevel(fs)
			return func(e *cli.Env, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				for _, f := range []struct{ name, v string }{{"--server", *server}, {"--ca", *ca}, {"--token-file", *tokenFile},
					{"--root", *root}, {"--initial-bundle", *bundleFile}} {
					if f.v == "" {
						return cli.Usagef("%s is required", f.name)
					}
				}
				if *devices < 1 || *devices > sim.MaxDevices {
					return cli.Usagef("--devices must be in 1..%d", sim.MaxDevices)
				}
				if !(*failRate >= 0 && *failRate <= 1) {
					return cli.Usagef("--fail-rate must be in [0, 1]")
				}
				if *duration < 0 || *reportEvery <= 0 || *hwRev > 1<<32-1 {
					return cli.Usagef("--duration must not be negative, --report-every must be positive, --hw-rev must fit 32 bits")
				}
				read := func(name string, max int64) ([]byte, error) {
					data, err := durable.ReadFile(durable.OS, name, max)
					if err != nil {
						return nil, fmt.Errorf("failed to read %s: %w", name, err)
					}
					return data, nil
				}
				lv, err := logLevel.Level(e)
				if err != nil {
					return err
				}
				opts := sim.Options{
					Server: strings.TrimSuffix(*server, "/"), Devices: *devices, FailRate: *failRate, Seed: *seed,
					Model: *model, HWRev: uint32(*hwRev), Product: *product, Channel: *channel,
					Concurrency: *concurrency, PollInterval: *pollInterval, SlotSize: *slotSize,
					Logger: slog.New(slog.NewJSONHandler(e.Stderr, &slog.HandlerOptions{Level: slog.Level(lv)})),
				}
				if *verbose {
					opts.AgentLogger = opts.Logger
				}
				if opts.ServerCA, err = read(*ca, agent.MaxCAFileSize); err != nil {
					return err
				}
				tok, err := read(*tokenFile, agent.MaxTokenSize)
				if err != nil {
					return err
				}
				opts.Token = strings.TrimSpace(string(tok))
				if opts.FactoryRoot, err = read(*root, trust.MaxRootSize); err != nil {
					return err
				}
				if opts.InitialBundle, err = read(*bundleFile, MaxSimBundleSize); err != nil {
					return err
				}
				if *directorRoot != "" && !*light {
					if opts.DirectorRoot, err = read(*directorRoot, trust.MaxRootSize); err != nil {
						return err
					}
				}
				ctx := e.Ctx
				if *duration > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, *duration)
					defer cancel()
				}
				if *light {
					return runLight(ctx, e, opts, *reportEvery)
				}
				if opts.Product == "" {
					if opts.Product, err = sim.BundleProduct(opts.InitialBundle); err != nil {
						return err
					}
				}
				fleet, err := sim.New(opts)
				if err != nil {
					return err
				}
				return runFleet(ctx, e, fleet, *reportEvery)
			}
		},
	})
}

// runLight runs opts' fleet as light devices (sim.LightFleet).
func runLight(ctx context.Context, e *cli.Env, opts sim.Options, reportEvery time.Duration) error {
	product, version, consistent, err := sim.LightRelease(opts.FactoryRoot, opts.InitialBundle)
	if err != nil {
		return err
	}
	if opts.Product != "" {
		product = opts.Product
	}
	fleet, err := sim.NewLight(sim.LightOptions{
		Server: opts.Server, ServerCA: opts.ServerCA, Token: opts.Token, Devices: opts.Devices,
		FailRate: opts.FailRate, Seed: opts.Seed, Model: opts.Model, HWRev: opts.HWRev, Product: product,
		Channel: opts.Channel, Version: version, ConsistentSnapshot: consistent,
		Concurrency: opts.Concurrency, PollInterval: opts.PollInterval, Logger: opts.Logger,
	})
	if err != nil {
		return err
	}
	return runFleet(ctx, e, fleet, reportEvery)
}

// runFleet runs fleet until ctx ends, reporting its stats to stdout every
// reportEvery and at the end; the end of ctx is not an error.
func runFleet(ctx context.Context, e *cli.Env, fleet interface {
	Run(context.Context) error
	Report(context.Context, io.Writer, time.Duration)
}, reportEvery time.Duration) error {
	rctx, stopReport := context.WithCancel(ctx)
	reported := make(chan struct{})
	go func() { fleet.Report(rctx, e.Stdout, reportEvery); close(reported) }()
	err := fleet.Run(ctx)
	stopReport()
	<-reported
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}
