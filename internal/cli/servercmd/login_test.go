package servercmd

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
)

// runEnv runs the airlock command line with exactly the environment env
// and stdin.
func runEnv(t *testing.T, env map[string]string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }}
	code = run(e, args)
	return code, out.String(), errb.String()
}

// readContexts returns the parsed context file under config.
func readContexts(t *testing.T, config string) *contextFile {
	t.Helper()
	f, err := loadContexts(filepath.Join(config, "airlock", ContextFileName))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestLoginThenChangesWithoutTOTP: after airlock login, three changes in a
// row (one TOTP window) run with no flags and no code; logout ends the
// session at the server; the secret is never printed and the file is 0600.
func TestLoginThenChangesWithoutTOTP(t *testing.T) {
	g := newGovServer(t)
	rmTok, rmCode := g.user("rm", server.RoleReleaseManager)
	if code, _, errOut := runCLI(t, "approval", "register", "--server", g.base, "--ca", g.caFile, "--token-file", rmTok,
		"--totp", rmCode, "--release", "acme/router-x1@1.1.0", "--environment", "dev"); code != cli.ExitOK {
		t.Fatalf("approval register: %d %s", code, errOut)
	}
	config := filepath.Join(t.TempDir(), "config")
	env := map[string]string{"XDG_CONFIG_HOME": config}
	opTok, opCode := g.user("op", server.RoleOperator)
	code, out, errOut := runEnv(t, env, "", "login", "--server", g.base, "--ca", g.caFile, "--token-file", opTok, "--totp", opCode)
	if code != cli.ExitOK || !strings.Contains(errOut, "logged in to "+g.base+" as op (operator)") {
		t.Fatalf("login: exit %d\n%s%s", code, out, errOut)
	}
	f := readContexts(t, config)
	c := f.Contexts[DefaultContext]
	if f.Current != DefaultContext || c == nil || c.Server != g.base || c.CA != g.caFile || !strings.HasPrefix(c.Session, adminapi.SessionPrefix) {
		t.Fatalf("context file: %+v %+v", f, c)
	}
	secret := c.Session
	for path, want := range map[string]os.FileMode{filepath.Join(config, "airlock"): 0o700, filepath.Join(config, "airlock", ContextFileName): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %04o", path, fi.Mode().Perm(), err, want)
		}
	}
	var printed strings.Builder
	printed.WriteString(out + errOut)

	// Three changes within the TOTP window of the login, with no flags.
	code, out, errOut = runEnv(t, env, "", "rollout", "create", "--release", "acme/router-x1@1.1.0", "--stages", "1,100%")
	if code != cli.ExitOK || !strings.HasPrefix(out, "ro-") {
		t.Fatalf("rollout create under the session: exit %d\n%s%s", code, out, errOut)
	}
	id := strings.TrimSpace(out)
	printed.WriteString(out + errOut)
	for _, verb := range []string{"start", "pause"} {
		code, out, errOut = runEnv(t, env, "", "rollout", verb, "--reason", "session test", id)
		if code != cli.ExitOK {
			t.Fatalf("rollout %s under the session: exit %d\n%s%s", verb, code, out, errOut)
		}
		printed.WriteString(out + errOut)
	}
	code, out, errOut = runEnv(t, env, "", "context", "list")
	if code != cli.ExitOK || !strings.Contains(out, "*        default  "+g.base) || !strings.Contains(out, "operator") {
		t.Fatalf("context list: exit %d\n%s%s", code, out, errOut)
	}
	printed.WriteString(out + errOut)
	code, out, errOut = runEnv(t, env, "", "context", "list", "--json")
	var listed []struct {
		Name, Server, Role string
		Current            bool
		LoggedIn           bool `json:"logged_in"`
	}
	if err := json.Unmarshal([]byte(out), &listed); code != cli.ExitOK || err != nil || len(listed) != 1 ||
		!listed[0].LoggedIn || listed[0].Server != g.base || listed[0].Role != "operator" {
		t.Fatalf("context list --json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	printed.WriteString(out + errOut)
	if strings.Contains(printed.String(), secret) || strings.Contains(printed.String(), secret[len(adminapi.SessionPrefix):]) {
		t.Fatal("a command printed the session secret")
	}

	// Logout ends the session at the server, not only in the file.
	code, _, errOut = runEnv(t, env, "", "logout")
	if code != cli.ExitOK || !strings.Contains(errOut, "logged out") {
		t.Fatalf("logout: exit %d %s", code, errOut)
	}
	if got := readContexts(t, config).Contexts[DefaultContext]; got.Session != "" || got.Server != g.base {
		t.Fatalf("after logout: %+v", got)
	}
	code, _, errOut = runEnv(t, env, "", "rollout", "status", id)
	if code != cli.ExitFailure || !strings.Contains(errOut, `context "default" has no session`) || !strings.Contains(errOut, "run airlock login") {
		t.Fatalf("status after logout: exit %d %s", code, errOut)
	}
	stolen := adminClient(t, g, secret)
	if _, err := stolen.ListRollouts(t.Context()); !isHTTP(err, 401, "logged out") {
		t.Fatalf("the logged-out session at the server: %v", err)
	}
	// Logging in again needs only the token: server and CA are remembered.
	op2Tok, op2Code := g.user("op2", server.RoleOperator)
	if code, _, errOut = runEnv(t, env, op2Code+"\n", "login", "--token-file", op2Tok); code != cli.ExitOK {
		t.Fatalf("second login (code on stdin): exit %d %s", code, errOut)
	}
	if code, _, errOut = runEnv(t, env, "", "rollout", "resume", id); code != cli.ExitOK {
		t.Fatalf("resume after the second login: exit %d %s", code, errOut)
	}
}

func adminClient(t *testing.T, g *govServer, session string) *adminapi.Client {
	t.Helper()
	pem, err := os.ReadFile(g.caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return adminapi.New(g.base, roots, adminapi.Session{Secret: session})
}

func isHTTP(err error, status int, msg string) bool {
	var he *adminapi.HTTPError
	return errors.As(err, &he) && he.StatusCode == status && strings.Contains(he.Message, msg)
}

// TestSessionExpiresAtTheClientAndTheServer logs in for one second.
func TestSessionExpiresAtTheClientAndTheServer(t *testing.T) {
	g := newGovServer(t)
	config := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": config}
	tok, code := g.user("op", server.RoleOperator)
	if c, _, errOut := runEnv(t, env, "", "login", "--server", g.base, "--ca", g.caFile, "--token-file", tok, "--totp", code, "--ttl", "1s"); c != cli.ExitOK {
		t.Fatalf("login: %d %s", c, errOut)
	}
	secret := readContexts(t, config).Contexts[DefaultContext].Session
	if c, _, errOut := runEnv(t, env, "", "rollout", "list"); c != cli.ExitOK {
		t.Fatalf("list within the second: %d %s", c, errOut)
	}
	time.Sleep(1100 * time.Millisecond)
	c, _, errOut := runEnv(t, env, "", "rollout", "list")
	if c != cli.ExitFailure || !strings.Contains(errOut, `the session of context "default" expired at`) {
		t.Fatalf("list after expiry: exit %d %s", c, errOut)
	}
	// A stolen copy of the expired session is refused by the server too.
	if _, err := adminClient(t, g, secret).ListRollouts(t.Context()); !isHTTP(err, 401, "session expired at") {
		t.Fatalf("expired session at the server: %v", err)
	}
	if c, _, errOut = runEnv(t, env, "", "login", "--token-file", tok, "--totp", code, "--ttl", "1.5s"); c != cli.ExitUsage {
		t.Fatalf("--ttl 1.5s: exit %d %s", c, errOut)
	}
}

// TestAdminSettingsResolveFlagsThenEnvironmentThenContext pins the order
// and the error messages that name each source.
func TestAdminSettingsResolveFlagsThenEnvironmentThenContext(t *testing.T) {
	g := newGovServer(t)
	config := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": config}
	tok, code := g.user("op", server.RoleOperator)
	if c, _, errOut := runEnv(t, env, "", "login", "--server", g.base, "--ca", g.caFile, "--token-file", tok, "--totp", code, "--context", "lab"); c != cli.ExitOK {
		t.Fatalf("login: %d %s", c, errOut)
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"XDG_CONFIG_HOME": config}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	other := "https://127.0.0.1:1"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantErr string
	}{
		{"context alone", env, nil, cli.ExitOK, ""},
		{"AIRLOCK_CONTEXT names the context", with(EnvContext, "lab"), nil, cli.ExitOK, ""},
		{"unknown AIRLOCK_CONTEXT", with(EnvContext, "nope"), nil, cli.ExitUsage, `no context "nope" (from AIRLOCK_CONTEXT)`},
		{"unknown --context", env, []string{"--context", "nope"}, cli.ExitUsage, `no context "nope" (from --context)`},
		{"AIRLOCK_SERVER elsewhere: the session is not sent there", with(EnvServer, other), nil, cli.ExitUsage,
			`no credentials for https://127.0.0.1:1 (from AIRLOCK_SERVER): pass --token-file, set AIRLOCK_TOKEN_FILE or run airlock login (context "lab" is for ` + g.base + `)`},
		{"--server elsewhere", env, []string{"--server", other}, cli.ExitUsage, "(from --server)"},
		{"AIRLOCK_SERVER the same: context credentials", with(EnvServer, g.base), nil, cli.ExitOK, ""},
		{"AIRLOCK_TOKEN_FILE beats the context", with(EnvTokenFile, "/nonexistent/token"), nil, cli.ExitFailure, "failed to read the token file (AIRLOCK_TOKEN_FILE)"},
		{"--token-file beats AIRLOCK_TOKEN_FILE", with(EnvTokenFile, "/nonexistent/token"), []string{"--token-file", "/nonexistent/flag"}, cli.ExitFailure, "(--token-file)"},
		{"AIRLOCK_CA beats the context", with(EnvCA, "/nonexistent/ca.pem"), nil, cli.ExitFailure, "failed to read the CA (AIRLOCK_CA)"},
		{"bad AIRLOCK_SERVER", with(EnvServer, "http://x"), nil, cli.ExitUsage, `server "http://x" must be https://HOST[:PORT] (from AIRLOCK_SERVER)`},
		{"nothing at all", map[string]string{}, nil, cli.ExitUsage, "no server: pass --server, set AIRLOCK_SERVER or run airlock login"},
		{"empty config dir", map[string]string{"XDG_CONFIG_HOME": t.TempDir()}, nil, cli.ExitUsage, "no server: pass --server, set AIRLOCK_SERVER or run airlock login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, errOut := runEnv(t, tc.env, "", append([]string{"rollout", "list"}, tc.args...)...)
			if c != tc.want || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q", c, tc.want, errOut, tc.wantErr)
			}
		})
	}
	// A token (flag) with no code is the token path: the session does not
	// stand in for the code of a token.
	c, _, errOut := runEnv(t, env, "", "rollout", "create", "--token-file", tok, "--release", "acme/router-x1@1.1.0", "--stages", "100%")
	if c != cli.ExitUsage || !strings.Contains(errOut, "needs a TOTP code") {
		t.Fatalf("token without a code: exit %d %s", c, errOut)
	}
	// context use switches; the file refuses a mode others can read.
	tok2, code2 := g.user("op2", server.RoleOperator)
	if c, _, errOut = runEnv(t, env, "", "login", "--server", g.base, "--ca", g.caFile, "--token-file", tok2, "--totp", code2, "--context", "second"); c != cli.ExitOK {
		t.Fatalf("second login: %d %s", c, errOut)
	}
	if f := readContexts(t, config); f.Current != "second" || len(f.Contexts) != 2 {
		t.Fatalf("after the second login: current %q, %d contexts", f.Current, len(f.Contexts))
	}
	if c, _, errOut = runEnv(t, env, "", "context", "use", "lab"); c != cli.ExitOK || readContexts(t, config).Current != "lab" {
		t.Fatalf("context use lab: %d %s", c, errOut)
	}
	if c, _, _ = runEnv(t, env, "", "context", "use", "nope"); c != cli.ExitUsage {
		t.Fatalf("context use nope: exit %d", c)
	}
	path := filepath.Join(config, "airlock", ContextFileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _, errOut = runEnv(t, env, "", "rollout", "list"); c != cli.ExitFailure || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("world-readable context file: exit %d %s", c, errOut)
	}
}

func TestContextFileParsing(t *testing.T) {
	good := `{"current": "a", "contexts": {"a": {"server": "https://x:1", "ca": "/ca.pem",
		"session": "` + adminapi.SessionPrefix + strings.Repeat("A", 43) + `", "expires_at": "2030-01-01T00:00:00Z"}}}`
	if _, err := parseContextFile([]byte(good)); err != nil {
		t.Fatalf("good file: %v", err)
	}
	for name, bad := range map[string]string{
		"duplicate key":      `{"contexts": {"a": {"server": "https://x"}, "a": {"server": "https://y"}}}`,
		"unknown field":      `{"contexts": {}, "token": "x"}`,
		"missing current":    `{"current": "b", "contexts": {"a": {"server": "https://x"}}}`,
		"plain http":         `{"contexts": {"a": {"server": "http://x"}}}`,
		"relative CA":        `{"contexts": {"a": {"server": "https://x", "ca": "ca.pem"}}}`,
		"bad name":           `{"contexts": {"a b": {"server": "https://x"}}}`,
		"null context":       `{"contexts": {"a": null}}`,
		"short session":      `{"contexts": {"a": {"server": "https://x", "session": "airlock_session_x", "expires_at": "2030-01-01T00:00:00Z"}}}`,
		"session, no expiry": `{"contexts": {"a": {"server": "https://x", "session": "` + adminapi.SessionPrefix + strings.Repeat("A", 43) + `"}}}`,
		"trailing data":      `{"contexts": {}} {}`,
		"prefix":             good[:len(good)-1],
	} {
		if _, err := parseContextFile([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %s", name, bad)
		}
	}
}

// FuzzContextFile: whatever parses re-encodes to a file that parses to the
// same contexts.
func FuzzContextFile(f *testing.F) {
	f.Add([]byte(`{"current": "a", "contexts": {"a": {"server": "https://x:1", "ca": "/ca.pem", "user": "u", "role": "operator",
		"session": "` + adminapi.SessionPrefix + strings.Repeat("A", 43) + `", "session_id": "as-1", "expires_at": "2030-01-01T00:00:00Z"}}}`))
	f.Add([]byte(`{"contexts": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cf, err := parseContextFile(data)
		if err != nil {
			return
		}
		out, err := cf.marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseContextFile(out)
		if err != nil {
			t.Fatalf("re-encoded file does not parse: %v\n%s", err, out)
		}
		out2, _ := again.marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
