package devicecmd

import (
	"flag"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/sdnotify"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:    "agent",
		Summary: "run the device agent: poll, download, install, reboot, commit",
		Usage: `Usage: airlock agent [--config PATH] [--once] [--log-level info]

Runs the device agent. It polls the update server (or, without a server in
the config, a plain static TUF repository), refreshes the TUF metadata over
HTTPS, installs the newest release that fits the device into the inactive
slot through the verified install pipeline, reboots into it (or simulates
the reboot when reboot_command is empty), runs the health check, commits or
rolls back, and reports every step to the server. Interrupted downloads
resume with HTTP Range requests; every byte is still verified.

Without --once the agent runs until SIGINT/SIGTERM, polling at the server's
interval (else poll_interval) with ±10% jitter and exponential backoff after
failures. With --once it runs one poll cycle and exits: 0 when up to date,
committed or waiting for a reboot, 1 when the cycle failed or rolled back.

Logs are JSON objects on stderr, one a line, with time, level and msg;
the health command's output is logged line by line. Download progress is
a bar on a terminal and log records otherwise (the progress key of the
config).

Under systemd with Type=notify ($NOTIFY_SOCKET) the agent sends READY=1
when it starts polling, STOPPING=1 when it stops and, with WatchdogSec=
($WATCHDOG_USEC), WATCHDOG=1 at half that interval while its loop makes
progress (docs/agent.md, docs/examples/airlock-agent.service).

Flags:
  --config PATH   agent config (default /etc/airlock/agent.toml; docs/agent.md)
  --once          run one poll cycle and exit (cron, tests)
  --log-level L   debug, info, warn or error (default $AIRLOCK_LOG_LEVEL, else info)

Examples:
  airlock agent --config /etc/airlock/agent.toml
  airlock agent --config ./agent.toml --once
`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			config := fs.String("config", agent.DefaultConfigPath, "")
			once := fs.Bool("once", false, "")
			logLevel := cli.AddLogLevel(fs)
			return func(e *cli.Env, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				if *config == "" {
					return cli.Usagef("--config must not be empty")
				}
				log, err := logLevel.Logger(e)
				if err != nil {
					return err
				}
				cfg, err := agent.LoadConfig(*config)
				if err != nil {
					return err
				}
				opts := agent.Options{
					Logger:       log,
					Progress:     downloadProgress(e, cfg.Progress, log),
					HealthOutput: &logLines{log},
				}
				if !*once {
					if err := notifyOptions(e, &opts); err != nil {
						return err
					}
				}
				a, err := agent.New(cfg, opts)
				if err != nil {
					return err
				}
				if !*once {
					return a.Run(e.Ctx)
				}
				res, err := a.RunOnce(e.Ctx)
				if err != nil {
					return err
				}
				log.Info("poll done", "action", res.Action, "version", res.Version, "result", agentSummary(res))
				return nil
			}
		},
	})
}

// agentSummary says in words what a successful poll cycle did.
func agentSummary(r *agent.Result) string {
	switch r.Action {
	case agent.ActionCommitted:
		return "updated to version " + r.Version + ": " + r.Message
	case agent.ActionReboot:
		return "installed version " + r.Version + "; the reboot command was run to boot it"
	}
	return r.Message
}

// notifyOptions sets opts's systemd notification from the environment
// ($NOTIFY_SOCKET, $WATCHDOG_USEC; internal/sdnotify).
func notifyOptions(e *cli.Env, opts *agent.Options) error {
	n, err := sdnotify.New(e.Getenv)
	if err != nil || n == nil {
		return err
	}
	if opts.WatchdogInterval, err = sdnotify.WatchdogInterval(e.Getenv); err != nil {
		return err
	}
	log := opts.Logger
	opts.Notify = func(state string) {
		if err := n.Notify(state); err != nil {
			log.Warn("systemd notification failed", "state", state, "error", err)
		}
	}
	return nil
}

// logLines logs what is written to it, a record per line.
type logLines struct{ log agent.Logger }

func (l *logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSuffix(string(p), "\n"), "\n") {
		l.log.Info("health check output", "line", line)
	}
	return len(p), nil
}

// downloadProgress returns the agent's download progress for the config's
// mode: a progress line on a terminal (cli.Progress) for "bar", and for
// "auto" when stderr is a terminal; log records for "log" and otherwise;
// none for "none".
func downloadProgress(e *cli.Env, mode string, log agent.Logger) agent.Progress {
	switch {
	case mode == agent.ProgressNone:
		return nil
	case mode == agent.ProgressBar || mode == agent.ProgressAuto && isTerminal(e.Stderr):
		return &progressBar{w: e.Stderr}
	}
	return agent.NewProgressLog(log)
}

// progressBar shows a download on a progress line (cli.Progress).
type progressBar struct {
	w    io.Writer
	p    *cli.Progress
	seen int64
}

func (b *progressBar) Start(name string, total int64) {
	b.p, b.seen = cli.NewProgress(b.w, "download "+name), 0
	b.p.Start(total)
}

func (b *progressBar) Update(received int64) {
	if b.p != nil && received > b.seen {
		b.p.Add(received - b.seen)
		b.seen = received
	}
}

func (b *progressBar) Done() { b.p.Done() }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
