package servercmd

import (
	"encoding/json"
	"github.com/airlockfw/airlock/internal/cli"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestServerUserCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	code, out, errOut := runCLI(t, "server", "user", "add", "--data", data, "--name", "alice", "--role", "approver")
	if code != cli.ExitOK || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`).MatchString(out) || !strings.Contains(errOut, "shown only once") {
		t.Fatalf("user add: exit %d\nstdout %q\nstderr %s", code, out, errOut)
	}

	t.Run("list --json", func(t *testing.T) {
		code, out, errOut := runCLI(t, "server", "user", "list", "--data", data, "--json")
		var users []struct {
			Name, Role, State, ID string
			TOTP                  bool
		}
		if err := json.Unmarshal([]byte(out), &users); code != cli.ExitOK || err != nil {
			t.Fatalf("exit %d, %v: %s\n%s", code, err, out, errOut)
		}
		if len(users) != 1 || users[0].Name != "alice" || users[0].Role != "approver" || users[0].State != "enabled" || users[0].TOTP || users[0].ID == "" {
			t.Fatalf("users = %+v", users)
		}
	})

	t.Run("totp prints a QR code and the otpauth URI", func(t *testing.T) {
		code, out, errOut := runCLI(t, "server", "user", "totp", "--data", data, "--name", "alice")
		if code != cli.ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		uri := regexp.MustCompile(`(?m)^otpauth://totp/Airlock:alice\?secret=[A-Z2-7]{32}&issuer=Airlock&algorithm=SHA1&digits=6&period=30$`)
		if !uri.MatchString(out) {
			t.Fatalf("no otpauth URI in:\n%s", out)
		}
		lines := strings.Split(out, "\n")
		// A QR block: at least 10 lines of equal width made of half blocks.
		qr := 0
		for _, l := range lines {
			if l != "" && strings.Trim(l, "█▀▄ ") == "" {
				qr++
			}
		}
		if qr < 10 {
			t.Fatalf("no QR block (%d block lines) in:\n%s", qr, out)
		}
		if fi, err := os.Stat(filepath.Join(data, "kek.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("kek.key: %v %v", fi, err)
		}
	})
	t.Run("totp with the wrong KEK fails closed", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.key")
		if err := os.WriteFile(other, []byte(strings.Repeat("0f", 32)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runCLI(t, "server", "user", "totp", "--data", data, "--kek-file", other, "--name", "alice")
		if code != cli.ExitFailure || !strings.Contains(errOut, "does not match the database") {
			t.Fatalf("exit %d, stderr %s", code, errOut)
		}
	})
	t.Run("token for an existing user", func(t *testing.T) {
		code, out, errOut := runCLI(t, "server", "token", "create", "--data", data, "--user", "alice", "--name", "laptop")
		if code != cli.ExitOK || !regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`).MatchString(out) {
			t.Fatalf("exit %d\nstdout %q\nstderr %s", code, out, errOut)
		}
	})
	t.Run("list and disable", func(t *testing.T) {
		_, out, _ := runCLI(t, "server", "user", "list", "--data", data)
		if !regexp.MustCompile(`alice\s+approver\s+enabled\s+yes\s+u-`).MatchString(out) {
			t.Fatalf("list:\n%s", out)
		}
		if code, _, errOut := runCLI(t, "server", "user", "disable", "--data", data, "--name", "alice"); code != cli.ExitOK {
			t.Fatalf("disable: %s", errOut)
		}
		_, out, _ = runCLI(t, "server", "user", "list", "--data", data)
		if !regexp.MustCompile(`alice\s+approver\s+disabled`).MatchString(out) {
			t.Fatalf("list after disable:\n%s", out)
		}
	})
	for _, tt := range []struct {
		args []string
		in   string
	}{
		{[]string{"server", "user", "add", "--data", data, "--name", "bob", "--role", "root"}, "--role must be one of"},
		{[]string{"server", "user", "add", "--data", data, "--role", "viewer"}, "--name is required"},
		{[]string{"server", "token", "create", "--data", data, "--user", "alice", "--role", "admin"}, "--role applies"},
	} {
		if code, _, errOut := runCLI(t, tt.args...); code != cli.ExitUsage || !strings.Contains(errOut, tt.in) {
			t.Errorf("%v: exit %d, stderr %s", tt.args, code, errOut)
		}
	}
	if code, _, errOut := runCLI(t, "server", "user", "totp", "--data", data, "--name", "nobody"); code != cli.ExitFailure || !strings.Contains(errOut, "no user named") {
		t.Errorf("totp for unknown user: exit %d, %s", code, errOut)
	}
}
