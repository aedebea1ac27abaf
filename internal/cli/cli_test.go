//go:build !airlock_device

package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs the command line in-process and returns the exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	code = run(e, args)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		in   string // substring of stdout+stderr
	}{
		{nil, ExitUsage, "Usage: airlock"},
		{[]string{"help"}, ExitOK, "key gen"},
		{[]string{"nosuch"}, ExitUsage, `airlock: error: unknown command "nosuch"`},
		{[]string{"key", "gen", "--help"}, ExitOK, "Usage: airlock key gen"},
		{[]string{"help", "key", "gen"}, ExitOK, "Usage: airlock key gen"},
		{[]string{"key"}, ExitUsage, "airlock key gen"},
		{[]string{"key", "gen"}, ExitUsage, "--out is required"},
		{[]string{"key", "gen", "--bogus"}, ExitUsage, "flag provided but not defined"},
		{[]string{"key", "gen", "--type", "dsa", "--out", "x"}, ExitUsage, "unsupported key type"},
		{[]string{"key", "pub", "--key", "/nonexistent/key"}, ExitFailure, "airlock: error:"},
		{[]string{"version"}, ExitOK, "airlock"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			if !strings.Contains(out+errOut, tt.in) {
				t.Errorf("output does not contain %q:\nstdout: %s\nstderr: %s", tt.in, out, errOut)
			}
		})
	}
}

func TestKeyGenAndPub(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072"} {
		path := dir + "/" + typ + ".pem"
		code, id, errOut := runCLI(t, "key", "gen", "--type", typ, "--out", path)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", typ, code, errOut)
		}
		code, pemOut, errOut := runCLI(t, "key", "pub", "--key", path+".pub")
		if code != 0 || !strings.Contains(pemOut, "PUBLIC KEY") || !strings.Contains(errOut, strings.TrimSpace(id)) {
			t.Fatalf("%s: key pub: exit %d\n%s\n%s", typ, code, pemOut, errOut)
		}
		// Refuses to overwrite.
		if code, _, errOut := runCLI(t, "key", "gen", "--type", typ, "--out", path); code != ExitFailure || !strings.Contains(errOut, "refusing to overwrite") {
			t.Fatalf("%s: overwrite: exit %d: %s", typ, code, errOut)
		}
	}
}
