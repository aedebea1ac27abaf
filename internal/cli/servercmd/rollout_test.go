package servercmd

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/trust"
)

// TestRolloutCommandsAgainstARealServer drives 'airlock rollout' and
// 'airlock server director-root' against a running server.
func TestRolloutCommandsAgainstARealServer(t *testing.T) {
	g := newGovServer(t)
	ctx, base, caFile, data, user := g.ctx, g.base, g.caFile, g.data, g.user
	rmTok, rmCode := user("rm", server.RoleReleaseManager)
	c, err := adminFlags{server: &base, tokenFile: &rmTok, totp: &rmCode, ca: &caFile}.client(&cli.Env{Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateRelease(ctx, server.CreateReleaseRequest{Product: "acme/router-x1", Version: "1.1.0", Environment: "dev"}); err != nil {
		t.Fatal(err)
	}

	tok1, code1 := user("op1", server.RoleOperator)
	admin := func(tok, code string) []string {
		return []string{"--server", base, "--token-file", tok, "--totp", code, "--ca", caFile}
	}
	// A window that opens twelve hours from now (Europe/Berlin is UTC+1
	// or +2), for 4 hours: closed while the test runs, whatever the hour.
	window := fmt.Sprintf("0 %d * * *,4h,Europe/Berlin", (time.Now().In(berlin(t)).Hour()+12)%24)
	code, out, errOut := runCLI(t, append(append([]string{"rollout", "create"}, admin(tok1, code1)...),
		"--release", "acme/router-x1@1.1.0", "--filter", "model=x1 hw_rev>=2", "--stages", "canary:10,5%,25%,100%",
		"--success-threshold", "95%", "--failure-threshold", "2%", "--window", window)...)
	if code != cli.ExitOK || !strings.HasPrefix(out, "ro-") {
		t.Fatalf("rollout create: exit %d\n%s\n%s", code, out, errOut)
	}
	id := strings.TrimSpace(out)

	tok2, code2 := user("op2", server.RoleOperator)
	code, out, errOut = runCLI(t, append(append([]string{"rollout", "start"}, admin(tok2, code2)...), "--reason", "canary first", id)...)
	if code != cli.ExitOK || !strings.Contains(out, "running") || !strings.Contains(out, "canary") {
		t.Fatalf("rollout start: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, append(append([]string{"rollout", "status"}, admin(tok2, "")...), id)...)
	if code != cli.ExitOK || !strings.Contains(out, "operator start: canary first") || !strings.Contains(out, "maintenance window") {
		t.Fatalf("rollout status: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, append([]string{"rollout", "list"}, admin(tok2, "")...)...)
	if code != cli.ExitOK || !strings.Contains(out, id) {
		t.Fatalf("rollout list: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, append([]string{"rollout", "list", "--json"}, admin(tok2, "")...)...)
	var listed adminapi.RolloutList
	if err := json.Unmarshal([]byte(out), &listed); code != cli.ExitOK || err != nil || len(listed.Rollouts) == 0 || listed.Rollouts[0].ID != id {
		t.Fatalf("rollout list --json: exit %d, %v\n%s", code, err, out)
	}
	// A replayed TOTP code is refused; a missing one is a usage error.
	code, _, errOut = runCLI(t, append(append([]string{"rollout", "pause"}, admin(tok2, code2)...), id)...)
	if code != cli.ExitFailure || !strings.Contains(errOut, "401") {
		t.Fatalf("replayed TOTP: exit %d %s", code, errOut)
	}
	if code, _, _ = runCLI(t, append(append([]string{"rollout", "pause"}, admin(tok2, "")...), id)...); code != cli.ExitUsage {
		t.Fatalf("missing TOTP: exit %d, want %d", code, cli.ExitUsage)
	}
	if code, _, _ = runCLI(t, "rollout", "status", id); code != cli.ExitUsage {
		t.Fatalf("status without --server: exit %d", code)
	}

	// director-root prints a root that verifies against itself.
	code, out, errOut = runCLI(t, "server", "director-root", "--data", data)
	if code != cli.ExitOK {
		t.Fatalf("director-root: %d %s", code, errOut)
	}
	st := trust.NewMemStore()
	st.Put("root.json", []byte(strings.TrimSpace(out)))
	if _, err := trust.New(st, &trust.MapSource{}, trust.Config{}); err != nil {
		t.Fatalf("director root does not verify: %v", err)
	}
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
