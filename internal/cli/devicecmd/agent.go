package devicecmd

import (
	"flag"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/internal/cli"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:    "agent",
		Summary: "run the device agent: poll, download, install, reboot, commit",
		Usage: `Usage: airlock agent [--config PATH] [--once]

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

Logs go to stderr; download progress is a bar on a terminal and log lines
otherwise (the progress key of the config).

Flags:
  --config PATH   agent config (default /etc/airlock/agent.toml; docs/agent.md)
  --once          run one poll cycle and exit (cron, tests)

Examples:
  airlock agent --config /etc/airlock/agent.toml
  airlock agent --config ./agent.toml --once
`,
		Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
			config := fs.String("config", agent.DefaultConfigPath, "")
			once := fs.Bool("once", false, "")
			return func(e *cli.Env, args []string) error {
				if len(args) != 0 {
					return cli.Usagef("unexpected arguments %q", args)
				}
				if *config == "" {
					return cli.Usagef("--config must not be empty")
				}
				cfg, err := agent.LoadConfig(*config)
				if err != nil {
					return err
				}
				terminal := isTerminal(e.Stderr)
				a, err := agent.New(cfg, agent.Options{
					Logger:       slog.New(slog.NewTextHandler(e.Stderr, nil)),
					Progress:     agent.NewProgress(cfg.Progress, e.Stderr, terminal),
					HealthOutput: e.Stderr,
				})
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
				e.Printf("airlock: agent: %s\n", agentSummary(res))
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

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
