package servercmd

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
)

// MaxTOTPInput bounds a TOTP code typed on standard input.
const MaxTOTPInput = 64

// airlock login, logout and context: a short-lived admin session kept in
// the context file (contexts.go), so that changes need no TOTP code each.

func init() {
	commands = append(commands,
		&cli.Command{
			Name:    "login",
			Summary: "log in to an update server: a short-lived admin session for the admin commands",
			Usage: `Usage: airlock login [--server URL] [--ca F] [--token-file F] [--totp CODE] [--context NAME] [--ttl D]

Exchanges your admin token and a current TOTP code for a session of the
update server (15 minutes unless the server says otherwise) and keeps it,
with the server's URL and CA, in a named context of the context file
($XDG_CONFIG_HOME/airlock/contexts.json, else ~/.config/airlock/…; mode
0600). The context becomes the current one. Until the session expires,
admin commands (rollout, approval) need no flags and no TOTP code, except
approvals and user changes, which still take a fresh --totp.

The session is a secret: it is never printed. Log in again to renew it;
airlock logout ends it early.

Flags:
  --server URL             update server (https://HOST:PORT); default $AIRLOCK_SERVER,
                           then the context's server
  --ca F                   PEM CA to trust for the server; default $AIRLOCK_CA, then
                           the context's CA, then the system roots
  --token-file F           file holding your admin API token (default $AIRLOCK_TOKEN_FILE)
  --totp CODE              your current TOTP code (default $AIRLOCK_TOTP; else it
                           is read from standard input)
  --context NAME           context to store the session in (default $AIRLOCK_CONTEXT,
                           then the current context, then "default")
  --ttl D                  ask for a shorter session, e.g. 5m (default: the server's)

Example:
  airlock login --server https://updates.example.com:8443 --ca server-ca.pem \
    --token-file ~/.airlock-token --totp 123456
  airlock rollout start ro-0123abcd        # no flags, no TOTP code
  airlock rollout pause ro-0123abcd        # right after, same 30 s window
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				af := defineAdminFlags(fs)
				ttl := fs.Duration("ttl", 0, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					if *ttl < 0 || *ttl%time.Second != 0 {
						return cli.Usagef("--ttl %v must be whole seconds, or 0 for the server's lifetime", *ttl)
					}
					return login(e, af, *ttl)
				}
			},
		},
		&cli.Command{
			Name:    "logout",
			Summary: "end the admin session of a login context",
			Usage: `Usage: airlock logout [--context NAME]

Ends the session of a context at the server (it is refused from then on)
and removes it from the context file. The context keeps its server and CA,
so the next airlock login needs only --token-file.

Flags:
  --context NAME           context to log out of (default $AIRLOCK_CONTEXT, then
                           the current context)

Example:
  airlock logout
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				name := fs.String("context", "", "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					return logout(e, *name)
				}
			},
		},
		&cli.Command{
			Name:    "context list",
			Summary: "list the login contexts: server, user and session expiry",
			Usage: `Usage: airlock context list [--json]

Lists the contexts of the context file: name (* marks the current one),
server, user, role and when the session expires. Sessions are not printed.

Flags:
  --json   print the contexts as JSON (never the session credential)

Example:
  airlock context list
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				asJSON := fs.Bool("json", false, "")
				return func(e *cli.Env, args []string) error {
					if err := cli.NoArgs(args); err != nil {
						return err
					}
					_, f, err := openContexts(envOf(e))
					if err != nil {
						return err
					}
					now := time.Now()
					if *asJSON {
						type listed struct {
							Name      string    `json:"name"`
							Current   bool      `json:"current"`
							Server    string    `json:"server"`
							CA        string    `json:"ca,omitempty"`
							User      string    `json:"user,omitempty"`
							Role      string    `json:"role,omitempty"`
							SessionID string    `json:"session_id,omitempty"`
							ExpiresAt time.Time `json:"expires_at,omitzero"`
							LoggedIn  bool      `json:"logged_in"`
						}
						out := []listed{}
						for _, n := range f.names() {
							c := f.Contexts[n]
							out = append(out, listed{Name: n, Current: n == f.Current, Server: c.Server, CA: c.CA, User: c.User, Role: c.Role,
								SessionID: c.SessionID, ExpiresAt: c.ExpiresAt, LoggedIn: c.Session != "" && now.Before(c.ExpiresAt)})
						}
						return cli.WriteJSON(e.Stdout, out)
					}
					tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER\tUSER\tROLE\tSESSION")
					for _, n := range f.names() {
						c := f.Contexts[n]
						cur, sess := "", "logged out"
						if n == f.Current {
							cur = "*"
						}
						switch {
						case c.Session != "" && now.Before(c.ExpiresAt):
							sess = "until " + c.ExpiresAt.Local().Format(time.RFC3339)
						case c.Session != "":
							sess = "expired " + c.ExpiresAt.Local().Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", cur, n, c.Server, dash(c.User), dash(c.Role), sess)
					}
					return tw.Flush()
				}
			},
		},
		&cli.Command{
			Name:    "context use",
			Summary: "make a login context the current one",
			Usage: `Usage: airlock context use NAME

Makes NAME the current context: admin commands use its server, CA and
session unless flags or environment variables say otherwise.

Example:
  airlock context use staging
`,
			Flags: func(fs *flag.FlagSet) func(*cli.Env, []string) error {
				return func(e *cli.Env, args []string) error {
					if len(args) != 1 {
						return cli.Usagef("want one context name")
					}
					path, f, err := openContexts(envOf(e))
					if err != nil {
						return err
					}
					if f.Contexts[args[0]] == nil {
						return cli.Usagef("no context %q in %s (airlock context list)", args[0], path)
					}
					f.Current = args[0]
					if err := saveContexts(path, f); err != nil {
						return err
					}
					e.Printf("current context: %s\n", args[0])
					return nil
				}
			},
		},
	)
}

// openContexts returns the context file's path and its contents.
func openContexts(getenv func(string) string) (string, *contextFile, error) {
	path, err := contextFilePath(getenv)
	if err != nil {
		return "", nil, err
	}
	f, err := loadContexts(path)
	return path, f, err
}

// login implements airlock login.
func login(e *cli.Env, af adminFlags, ttl time.Duration) error {
	getenv := envOf(e)
	path, f, err := openContexts(getenv)
	if err != nil {
		return err
	}
	name, _ := selectContext(str(af.context), getenv, f)
	if name == "" {
		name = DefaultContext
	}
	if err := checkContextName(name); err != nil {
		return cli.Usagef("%v", err)
	}
	old := f.Contexts[name]
	server := pick(str(af.server), "--server", EnvServer, getenv)
	if server.value == "" && old != nil {
		server = setting{old.Server, fmt.Sprintf("context %q", name)}
	}
	if server.value == "" {
		return cli.Usagef("no server: pass --server or set %s", EnvServer)
	}
	if err := checkServerURL(server.value); err != nil {
		return cli.Usagef("%v (from %s)", err, server.source)
	}
	ca := pick(str(af.ca), "--ca", EnvCA, getenv)
	if ca.value == "" && old != nil && sameServer(old.Server, server.value) {
		ca = setting{old.CA, fmt.Sprintf("context %q", name)}
	}
	if ca.value != "" {
		abs, err := filepath.Abs(ca.value)
		if err != nil {
			return err
		}
		ca.value = abs
	}
	roots, err := loadRoots(ca)
	if err != nil {
		return err
	}
	tokenFile := pick(str(af.tokenFile), "--token-file", EnvTokenFile, getenv)
	if tokenFile.value == "" {
		return cli.Usagef("login needs your admin token: pass --token-file or set %s", EnvTokenFile)
	}
	tok, err := readToken(tokenFile)
	if err != nil {
		return err
	}
	code := pick(str(af.totp), "--totp", EnvTOTP, getenv).value
	if code == "" {
		if code, err = readCode(e); err != nil {
			return err
		}
	}
	c := adminapi.New(server.value, roots, adminapi.Static{Token: tok, TOTP: code})
	resp, err := c.Login(e.Ctx, ttl)
	if err != nil {
		return fmt.Errorf("failed to log in to %s (from %s): %w", server.value, server.source, err)
	}
	if !wellFormedSession(resp.Session) || resp.ExpiresAt.IsZero() {
		return fmt.Errorf("the server at %s answered the login with a malformed session", server.value)
	}
	if len(f.Contexts) >= MaxContexts && old == nil {
		return fmt.Errorf("the context file already holds %d contexts (the limit); remove some from %s", MaxContexts, path)
	}
	f.Contexts[name] = &adminContext{Server: server.value, CA: ca.value, Session: resp.Session, SessionID: resp.ID,
		User: resp.User, Role: resp.Role, ExpiresAt: resp.ExpiresAt.UTC()}
	f.Current = name
	if err := saveContexts(path, f); err != nil {
		return err
	}
	e.Printf("logged in to %s as %s (%s) until %s; context %q (%s)\n", server.value, resp.User, resp.Role,
		resp.ExpiresAt.Local().Format(time.RFC3339), name, path)
	return nil
}

// readCode reads a TOTP code typed on standard input.
func readCode(e *cli.Env) (string, error) {
	e.Printf("TOTP code: ")
	line, err := bufio.NewReader(io.LimitReader(e.Stdin, MaxTOTPInput)).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return "", cli.Usagef("login needs a TOTP code: pass --totp, set %s or type it", EnvTOTP)
	}
	return line, nil
}

// logout implements airlock logout.
func logout(e *cli.Env, flagName string) error {
	getenv := envOf(e)
	path, f, err := openContexts(getenv)
	if err != nil {
		return err
	}
	name, source := selectContext(flagName, getenv, f)
	if name == "" {
		return cli.Usagef("no context to log out of: pass --context or set %s", EnvContext)
	}
	c := f.Contexts[name]
	if c == nil {
		return cli.Usagef("no context %q (from %s) in %s", name, source, path)
	}
	if c.Session == "" {
		e.Printf("context %q is not logged in\n", name)
		return nil
	}
	roots, err := loadRoots(setting{c.CA, fmt.Sprintf("context %q", name)})
	if err != nil {
		return err
	}
	_, err = adminapi.New(c.Server, roots, adminapi.Session{Secret: c.Session}).Logout(e.Ctx)
	var he *adminapi.HTTPError
	switch {
	case errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized:
		e.Printf("the server no longer knows the session (%s); removing it\n", he.Message)
	case err != nil:
		return fmt.Errorf("failed to log out at %s: %w (the session stays in %s until it expires)", c.Server, err, path)
	}
	c.Session, c.SessionID, c.ExpiresAt = "", "", time.Time{}
	if err := saveContexts(path, f); err != nil {
		return err
	}
	e.Printf("logged out of %s (context %q)\n", c.Server, name)
	return nil
}
