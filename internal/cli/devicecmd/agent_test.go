package devicecmd

import (
	"github.com/airlockfw/airlock/agent"
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

// TestAgentSummaryIsWords: what 'agent --once' prints is a sentence, not
// an action code or a struct.
func TestAgentSummaryIsWords(t *testing.T) {
	for _, tc := range []struct {
		res  agent.Result
		want string
	}{
		{agent.Result{Action: agent.ActionNone, Version: "1.1.0", Message: "up to date: version 1.1.0 runs, the newest release available for this device"},
			"up to date: version 1.1.0 runs, the newest release available for this device"},
		{agent.Result{Action: agent.ActionCommitted, Version: "1.2.0", Message: "health check passed; slot B committed"},
			"updated to version 1.2.0: health check passed; slot B committed"},
		{agent.Result{Action: agent.ActionReboot, Version: "1.2.0", Message: "reboot command run"},
			"installed version 1.2.0; the reboot command was run to boot it"},
	} {
		if got := agentSummary(&tc.res); got != tc.want {
			t.Errorf("agentSummary(%+v) = %q, want %q", tc.res, got, tc.want)
		}
	}
}
