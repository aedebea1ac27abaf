package servercmd

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
)

// Release governance over the admin API: register a published release for
// deployment, approve it (k-of-n distinct approvers for production, never
// the uploader), deploy it, list. The server enforces roles and TOTP.

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "approval register",
			Summary: "register a published release for deployment in an environment (admin API)",
			Usage: `Usage: airlock approval register [ADMIN FLAGS]
                         --release PRODUCT@VERSION --environment dev|staging|prod

Registers a release that is published in the server's repository for
deployment in an environment (role: release_manager). You become its
uploader, so you cannot approve it yourself. A production release needs
approvals from distinct approvers (serve --prod-approvals, default 2) before
it can be deployed or rolled out. Prints the release's registration ID.

Flags:
` + adminFlagsUsage + `  --release P@V            the release, e.g. acme/router-x1@1.5.0
  --environment ENV        dev, staging or prod

Example:
  airlock approval register --server https://updates.example.com:8443 --token-file ~/.airlock-token \
    --release acme/router-x1@1.5.0 --environment prod --totp 123456
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				rel := fs.String("release", "", "")
				env := fs.String("environment", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					product, version, ok := strings.Cut(*rel, "@")
					if !ok || product == "" || version == "" {
						return cli.Usagef("--release must be PRODUCT@VERSION")
					}
					if *env == "" {
						return cli.Usagef("--environment is required")
					}
					c, err := af.client(e)
					if err != nil {
						return err
					}
					r, err := c.CreateRelease(e.Ctx, adminapi.CreateReleaseRequest{Product: product, Version: version, Environment: *env})
					if err != nil {
						return err
					}
					fmt.Fprintln(e.Stdout, r.ID)
					printApproval(e.Stderr, r)
					return nil
				}
			},
		},
		&cli.Command{
			Name:    "approval approve",
			Summary: "approve a registered release (approver; never your own)",
			Usage: `Usage: airlock approval approve [ADMIN FLAGS] ID

Adds your approval to a registered release (role: approver). The uploader
cannot approve their own release, and the same approver counts once.

Flags:
` + adminFlagsUsage + `
Example:
  airlock approval approve --server https://updates.example.com:8443 --token-file ~/.airlock-token \
    --totp 123456 rel-0123abcd
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				return func(e *cli.Env, args []string) error {
					return approvalAction(e, af, args, "approve")
				}
			},
		},
		&cli.Command{
			Name:    "approval deploy",
			Summary: "clear a registered release for distribution (needs its approvals in prod)",
			Usage: `Usage: airlock approval deploy [ADMIN FLAGS] ID

Marks a registered release deployed (role: operator). A production release
is refused until it has its approvals; dev and staging need none. Starting a
rollout of the release deploys it too.

Flags:
` + adminFlagsUsage + `
Example:
  airlock approval deploy --server https://updates.example.com:8443 --token-file ~/.airlock-token \
    --totp 123456 rel-0123abcd
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				return func(e *cli.Env, args []string) error {
					return approvalAction(e, af, args, "deploy")
				}
			},
		},
		&cli.Command{
			Name:    "approval list",
			Summary: "list registered releases with their approvals",
			Usage: `Usage: airlock approval list [ADMIN FLAGS] [--json]

Lists registered releases, newest first: environment, approvals (active of
required), uploader and whether it is deployed.

Flags:
` + adminFlagsUsage + `  --json                   print the admin API's JSON instead

Example:
  airlock approval list --server https://updates.example.com:8443 --token-file ~/.airlock-token
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				return adminList(fs, (*adminapi.Client).ListReleases, func(e *cli.Env, l adminapi.ReleaseList) error {
					tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ID\tRELEASE\tENV\tAPPROVALS\tUPLOADER\tDEPLOYED")
					for _, r := range l.Releases {
						dep := "-"
						if r.DeployedAt != nil {
							dep = r.DeployedAt.UTC().Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s@%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Product, r.Version, r.Environment,
							r.ActiveApprovals, r.RequiredApprovals, r.Uploader, dep)
					}
					return tw.Flush()
				})
			},
		},
	)
}

func approvalAction(e *cli.Env, af adminFlags, args []string, verb string) error {
	if len(args) != 1 {
		return cli.Usagef("want one release registration ID")
	}
	c, err := af.client(e)
	if err != nil {
		return err
	}
	release := c.ApproveRelease
	if verb == "deploy" {
		release = c.DeployRelease
	}
	r, err := release(e.Ctx, args[0])
	if err != nil {
		return err
	}
	printApproval(e.Stdout, r)
	return nil
}

func printApproval(w io.Writer, r server.Release) {
	dep := "not deployed"
	if r.DeployedAt != nil {
		dep = "deployed " + r.DeployedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "%s %s@%s (%s): %d of %d approvals, %s\n", r.ID, r.Product, r.Version, r.Environment,
		r.ActiveApprovals, r.RequiredApprovals, dep)
}
