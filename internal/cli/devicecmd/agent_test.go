package devicecmd

import (
	"github.com/airlockfw/airlock/internal/cli"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentCommandRefusesBadInvocations(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("device_config = \"d.toml\"\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noCA := filepath.Join(dir, "noca.toml")
	if err := os.WriteFile(noCA, []byte("device_config = \"d.toml\"\nserver_ca = \"missing.pem\"\nmetadata_url = \"https://h/m\"\ntargets_url = \"https://h/t\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"agent", "--help"}, cli.ExitOK, "Usage: airlock agent"},
		{"extra argument", []string{"agent", "--once", "x"}, cli.ExitUsage, "unexpected arguments"},
		{"empty config flag", []string{"agent", "--config", ""}, cli.ExitUsage, "--config must not be empty"},
		{"missing config", []string{"agent", "--config", filepath.Join(dir, "nope.toml"), "--once"}, cli.ExitFailure, "failed to read agent config"},
		{"unknown key", []string{"agent", "--config", bad, "--once"}, cli.ExitFailure, "unknown keys"},
		{"missing server CA", []string{"agent", "--config", noCA, "--once"}, cli.ExitFailure, "server_ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d (want %d), output does not contain %q:\n%s%s", code, tt.code, tt.want, out, errOut)
			}
		})
	}
}
