package servercmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
)

// Limits of the admin API client.
const (
	// MaxTokenFileSize bounds --token-file.
	MaxTokenFileSize = 4 << 10
	// MaxAdminResponseSize bounds an admin API response.
	MaxAdminResponseSize = adminapi.MaxResponseSize
	// AdminRequestTimeout bounds one admin API request.
	AdminRequestTimeout = adminapi.RequestTimeout
)

// adminList defines the admin flags and --json on fs and returns a listing
// command: no arguments, one admin-API call (list), then the answer as JSON
// or as the table that print writes.
func adminList[T any](fs *flag.FlagSet, list func(*adminapi.Client, context.Context) (T, error), print func(*cli.Env, T) error) func(*cli.Env, []string) error {
	af := defineAdminFlags(fs)
	asJSON := fs.Bool("json", false, "")
	return func(e *cli.Env, args []string) error {
		if err := cli.NoArgs(args); err != nil {
			return err
		}
		c, err := af.client(e)
		if err != nil {
			return err
		}
		v, err := list(c, e.Ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return cli.WriteJSON(e.Stdout, v)
		}
		return print(e, v)
	}
}

// printRollout writes a rollout's status.
func printRollout(w io.Writer, v server.RolloutView) {
	fmt.Fprintf(w, "rollout %s of %s: %s, stage %d (%s)\n", v.ID, v.Release, v.State, v.Stage+1, v.StageViews[min(v.Stage, len(v.StageViews)-1)].Label)
	fmt.Fprintf(w, "  reason:   %s\n", v.Reason)
	fmt.Fprintf(w, "  filter:   %q  stages: %s  success >= %s  failure > %s  deadline %s\n",
		v.Filter, v.Stages, v.SuccessThreshold, v.FailureThreshold, v.ReportDeadline)
	if v.Window != "" || v.MaxParallel > 0 || v.Forced {
		fmt.Fprintf(w, "  window:   %q  max parallel: %d  forced: %t\n", v.Window, v.MaxParallel, v.Forced)
	}
	if v.AssignBlocked != "" {
		fmt.Fprintf(w, "  assigning: no (%s)\n", v.AssignBlocked)
	}
	fmt.Fprintf(w, "  eligible devices: %d\n", v.Eligible)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STAGE\tSPEC\tTARGET\tASSIGNED\tSUCCEEDED\tFAILED\tIN PROGRESS")
	for _, s := range v.StageViews {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\t%d\n", s.Label, s.Spec, s.Target, s.Assigned, s.Succeeded, s.Failed, s.InProgress)
	}
	tw.Flush()
	for r, n := range v.FailureReasons {
		fmt.Fprintf(w, "  failed: %s %d\n", r, n)
	}
}

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "server director-root",
			Summary: "print the director repository's root metadata (provision devices with it)",
			Usage: `Usage: airlock server director-root --data DIR [--kek-file F]

Prints version 1 of the root metadata of the server's director repository
on stdout. Devices in director mode (agent director_root) are provisioned
with it, like the image repository's factory root: they then install only
what the director assigns them AND the image repository signed with the
same length and hashes. The director's root and online keys are created in
DIR/director/ on first use (by this command or 'airlock serve'), sealed with
the key-encryption key. 'airlock serve' also keeps them and the root versions
in its database, shared by every replica on it (a replica copies them into
its DIR/director/ when it starts): on a replica, run this command after it
has started once. See docs/rollouts.md.

Flags:
  --data DIR               server data directory (required)
  --kek-file F             key-encryption key (default DIR/kek.key)

Example:
  airlock server director-root --data /var/lib/airlock > director-root.json
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				data, kek := fs.String("data", "", ""), fs.String("kek-file", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *data == "" {
						return cli.Usagef("--data is required")
					}
					root, err := server.DirectorRoot(*data, *kek)
					if err != nil {
						return err
					}
					_, err = e.Stdout.Write(append(root, '\n'))
					return err
				}
			},
		},
		&cli.Command{
			Name:    "rollout create",
			Summary: "create a staged rollout of a registered release (admin API)",
			Usage: `Usage: airlock rollout create [ADMIN FLAGS]
                     --release PRODUCT@VERSION --stages STAGES [--filter EXPR]
                     [--environment ENV] [--success-threshold 95%] [--failure-threshold 2%]
                     [--max-parallel N] [--window CRON,DURATION,TZ] [--forced]
                     [--report-deadline 2h]

Creates a draft rollout and prints its ID on stdout; start it with
'airlock rollout start'. The release must be registered (POST
/api/v1/admin/releases); a production release also needs its approvals
before the rollout can start. See docs/rollouts.md.

Flags:
` + adminFlagsUsage + `  --release P@V            the release, e.g. acme/router-x1@1.5.0 (required)
  --environment ENV        which registration, if the release has several
  --stages STAGES          cumulative stages: counts or percentages of the eligible
                           fleet, optionally named, e.g. 'canary:10,5%,25%,100%' (required)
  --filter EXPR            devices: space-separated terms that must all hold, fields
                           model, hw_rev, channel, version, product, tag; operators
                           = != < <= > >= (default: every device of the product)
  --success-threshold P    share of a stage that must commit before the next opens
                           (default 95%)
  --failure-threshold P    share of failed devices that pauses the rollout (default 2%)
  --max-parallel N         at most N devices installing at once (default no limit)
  --window W               assign only in a maintenance window: 5-field cron,
                           duration, time zone, e.g. '0 2 * * *,4h,Europe/Berlin'
  --forced                 install even if the device's own policy would defer
                           (never bypasses signatures or the security version)
  --report-deadline D      a device silent this long counts as failed (default 2h)

Example:
  airlock rollout create --server https://updates.example.com:8443 --token-file ~/.airlock-token \
      --release acme/router-x1@1.5.0 --filter 'model=x1 hw_rev>=2 channel=stable' \
      --stages 'canary:10,5%,25%,100%' --success-threshold 95% --failure-threshold 2%
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				var req server.CreateRolloutRequest
				fs.StringVar(&req.Release, "release", "", "")
				fs.StringVar(&req.Environment, "environment", "", "")
				fs.StringVar(&req.Stages, "stages", "", "")
				fs.StringVar(&req.Filter, "filter", "", "")
				fs.StringVar(&req.SuccessThreshold, "success-threshold", "", "")
				fs.StringVar(&req.FailureThreshold, "failure-threshold", "", "")
				fs.IntVar(&req.MaxParallel, "max-parallel", 0, "")
				fs.StringVar(&req.Window, "window", "", "")
				fs.BoolVar(&req.Forced, "forced", false, "")
				fs.StringVar(&req.ReportDeadline, "report-deadline", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if req.Release == "" || req.Stages == "" {
						return cli.Usagef("--release and --stages are required")
					}
					c, err := af.client(e)
					if err != nil {
						return err
					}
					v, err := c.CreateRollout(e.Ctx, req)
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, v.ID)
					e.Printf("airlock: created draft rollout %s of %s; start it with 'airlock rollout start %s'\n", v.ID, v.Release, v.ID)
					return nil
				}
			},
		},
	)
	for _, a := range []struct{ verb, summary, what string }{
		{"start", "start a draft rollout (deploys its release; production needs approvals)", "Starts a draft rollout: devices that match its filter are assigned the\nrelease at check-in, stage by stage. Starting deploys the release, so a\nproduction release must have its approvals."},
		{"pause", "pause a running rollout (no new assignments)", "Pauses a running rollout: no device is newly assigned. Devices already\nassigned keep their assignment."},
		{"resume", "resume a paused rollout (acknowledges its failures)", "Resumes a paused rollout. The failures seen so far are acknowledged: only\nnew failures count against the failure threshold."},
		{"cancel", "cancel a rollout (withdraws its assignments)", "Cancels a draft, running or paused rollout. The director withdraws its\nassignments: devices that did not install yet will not."},
	} {
		commands = append(commands, &cli.Command{
			Name:    "rollout " + a.verb,
			Summary: a.summary,
			Usage: `Usage: airlock rollout ` + a.verb + ` [ADMIN FLAGS] [--reason TEXT] ID

` + a.what + ` The transition and its reason go to the audit log.

Flags:
` + adminFlagsUsage + `  --reason TEXT            why (recorded in the audit log)

Example:
  airlock rollout ` + a.verb + ` --server https://updates.example.com:8443 --token-file ~/.airlock-token ro-0123abcd
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				reason := fs.String("reason", "", "")
				verb := a.verb
				return func(e *cli.Env, args []string) error {
					if len(args) != 1 {
						return cli.Usagef("want one rollout ID")
					}
					c, err := af.client(e)
					if err != nil {
						return err
					}
					v, err := c.RolloutAction(e.Ctx, args[0], verb, adminapi.RolloutActionRequest{Reason: *reason})
					if err != nil {
						return err
					}
					printRollout(e.Stdout, v)
					return nil
				}
			},
		})
	}
	commands = append(commands,
		&cli.Command{
			Name:    "rollout status",
			Summary: "show a rollout's stages, progress and failure reasons",
			Usage: `Usage: airlock rollout status [ADMIN FLAGS] [--json] ID

Shows a rollout: state and the reason of its last transition, each stage's
target and devices assigned, succeeded, failed and in progress, and the
failure reasons.

Flags:
` + adminFlagsUsage + `  --json                   print the admin API's JSON instead

Example:
  airlock rollout status --server https://updates.example.com:8443 --token-file ~/.airlock-token ro-0123abcd
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if len(args) != 1 {
						return cli.Usagef("want one rollout ID")
					}
					c, err := af.client(e)
					if err != nil {
						return err
					}
					v, err := c.GetRollout(e.Ctx, args[0])
					if err != nil {
						return err
					}
					if *asJSON {
						return cli.WriteJSON(e.Stdout, v)
					}
					printRollout(e.Stdout, v)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "rollout list",
			Summary: "list rollouts, newest first",
			Usage: `Usage: airlock rollout list [ADMIN FLAGS] [--json]

Lists rollouts, newest first: ID, release, state, stage and totals.

Flags:
` + adminFlagsUsage + `  --json                   print the admin API's answer as JSON

Example:
  airlock rollout list --server https://updates.example.com:8443 --token-file ~/.airlock-token
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				return adminList(fs, (*adminapi.Client).ListRollouts, func(e *cli.Env, l adminapi.RolloutList) error {
					tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tRELEASE\tSTATE\tSTAGE\tASSIGNED\tSUCCEEDED\tFAILED")
					for _, v := range l.Rollouts {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\n", v.ID, v.Release, v.State, v.Stage+1, len(v.StageViews),
							v.Total.Assigned, v.Total.Succeeded, v.Total.Failed)
					}
					return tw.Flush()
				})
			},
		},
	)
}
