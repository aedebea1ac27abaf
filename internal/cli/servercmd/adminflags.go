package servercmd

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/durable"
)

const adminFlagsUsage = `  --server URL             update server (https://HOST:PORT); default $AIRLOCK_SERVER,
                           then the context's server
  --token-file F           file holding your admin API token; default
                           $AIRLOCK_TOKEN_FILE, then the context's session (airlock login)
  --totp CODE              your current TOTP code (default $AIRLOCK_TOTP); needed
                           for every change made with a token, and under a session
                           for approvals and user changes
  --ca F                   PEM CA to trust for the server; default $AIRLOCK_CA, then
                           the context's CA, then the system roots
  --context NAME           airlock login context to use (default $AIRLOCK_CONTEXT,
                           then the current context)
`

// adminCreds are the token and TOTP code of the admin flags.
type adminCreds struct{ token, totp string }

// Credentials implements adminapi.Credentials: a change without a TOTP code
// is a usage error.
func (a adminCreds) Credentials(_ context.Context, write bool) (string, string, error) {
	if write && a.totp == "" {
		return "", "", cli.Usagef("this change needs a TOTP code: --totp CODE or AIRLOCK_TOTP (or run airlock login once, then no code is needed for 15 minutes)")
	}
	return a.token, a.totp, nil
}

type adminFlags struct{ server, tokenFile, totp, ca, context *string }

func defineAdminFlags(fs *flag.FlagSet) adminFlags {
	return adminFlags{server: fs.String("server", "", ""), tokenFile: fs.String("token-file", "", ""),
		totp: fs.String("totp", "", ""), ca: fs.String("ca", "", ""), context: fs.String("context", "", "")}
}

// str returns *p, or "" for a nil p (flags a test did not set).
func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// setting is a resolved value and where it came from ("--server",
// "AIRLOCK_SERVER", `context "prod"`), for error messages.
type setting struct{ value, source string }

// pick returns the flag's value, else the environment variable's.
func pick(flagValue, flagName, env string, getenv func(string) string) setting {
	if flagValue != "" {
		return setting{flagValue, flagName}
	}
	if v := getenv(env); v != "" {
		return setting{v, env}
	}
	return setting{}
}

func envOf(e *cli.Env) func(string) string {
	if e.Getenv != nil {
		return e.Getenv
	}
	return os.Getenv
}

// checkServerURL checks an update server URL: https://HOST[:PORT][/PATH]
// and nothing else (no user info, query or fragment).
func checkServerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("server %q must be https://HOST[:PORT]", s)
	}
	return nil
}

// sameServer reports whether two server URLs name the same server.
func sameServer(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// loadRoots reads a PEM CA file (nil pool for "").
func loadRoots(ca setting) (*x509.CertPool, error) {
	if ca.value == "" {
		return nil, nil
	}
	pem, err := durable.ReadFile(durable.OS, ca.value, MaxCAFileSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read the CA (%s): %w", ca.source, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA %s (%s) holds no PEM certificate", ca.value, ca.source)
	}
	return pool, nil
}

// readToken reads an admin token file (at most MaxTokenFileSize bytes),
// without surrounding white space.
func readToken(file setting) (string, error) {
	tok, err := durable.ReadFile(durable.OS, file.value, MaxTokenFileSize)
	if err != nil {
		return "", fmt.Errorf("failed to read the token file (%s): %w", file.source, err)
	}
	return strings.TrimSpace(string(tok)), nil
}

// client resolves the server, CA and credentials of an admin command and
// returns its admin API client. Each comes from its flag, else its
// environment variable, else the login context (--context, else
// AIRLOCK_CONTEXT, else the current one). A context's CA and session are
// used only for the server the context is for.
func (f adminFlags) client(e *cli.Env) (*adminapi.Client, error) {
	getenv := envOf(e)
	server := pick(str(f.server), "--server", EnvServer, getenv)
	tokenFile := pick(str(f.tokenFile), "--token-file", EnvTokenFile, getenv)
	ca := pick(str(f.ca), "--ca", EnvCA, getenv)
	totp := pick(str(f.totp), "--totp", EnvTOTP, getenv).value

	var ctx *adminContext
	var ctxName, otherServer string
	if server.value == "" || tokenFile.value == "" {
		c, name, err := findContext(str(f.context), getenv)
		if err != nil {
			return nil, err
		}
		switch {
		case c == nil:
		case server.value == "":
			server = setting{c.Server, fmt.Sprintf("context %q", name)}
			ctx, ctxName = c, name
		case sameServer(server.value, c.Server):
			ctx, ctxName = c, name
		default:
			otherServer = fmt.Sprintf(" (context %q is for %s)", name, c.Server)
		}
	}
	if server.value == "" {
		return nil, cli.Usagef("no server: pass --server, set %s or run airlock login", EnvServer)
	}
	if err := checkServerURL(server.value); err != nil {
		return nil, cli.Usagef("%v (from %s)", err, server.source)
	}
	if ca.value == "" && ctx != nil && ctx.CA != "" {
		ca = setting{ctx.CA, fmt.Sprintf("context %q", ctxName)}
	}
	roots, err := loadRoots(ca)
	if err != nil {
		return nil, err
	}
	var creds adminapi.Credentials
	switch {
	case tokenFile.value != "":
		tok, err := readToken(tokenFile)
		if err != nil {
			return nil, err
		}
		creds = adminCreds{token: tok, totp: totp}
	case ctx != nil:
		if p := ctx.sessionProblem(ctxName, time.Now()); p != "" {
			return nil, fmt.Errorf("%s: run %s, or pass --token-file", p, loginHint(ctxName))
		}
		creds = adminapi.Session{Secret: ctx.Session, TOTP: totp}
	default:
		return nil, cli.Usagef("no credentials for %s (from %s): pass --token-file, set %s or run airlock login%s",
			server.value, server.source, EnvTokenFile, otherServer)
	}
	return adminapi.New(server.value, roots, creds), nil
}

// findContext loads the context file and returns the context selected by
// flag, AIRLOCK_CONTEXT or the file's current context, and its name. No
// file, or no selection, is (nil, "", nil); a selected context that does not
// exist is an error.
func findContext(flagValue string, getenv func(string) string) (*adminContext, string, error) {
	path, err := contextFilePath(getenv)
	if err != nil {
		if flagValue != "" || getenv(EnvContext) != "" {
			return nil, "", err
		}
		return nil, "", nil
	}
	file, err := loadContexts(path)
	if err != nil {
		return nil, "", err
	}
	name, source := selectContext(flagValue, getenv, file)
	if name == "" {
		return nil, "", nil
	}
	c := file.Contexts[name]
	if c == nil {
		return nil, "", cli.Usagef("no context %q (from %s) in %s: run airlock login --context %s, or see airlock context list", name, source, path, name)
	}
	return c, name, nil
}
