package servercmd

import (
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/server"
)

// TestApprovalCommands: a production release registered by a release
// manager needs two distinct approvers before an operator can deploy it,
// all from the CLI over the admin API.
func TestApprovalCommands(t *testing.T) {
	g := newGovServer(t)
	admin := func(tok, code string) []string {
		return []string{"--server", g.base, "--token-file", tok, "--totp", code, "--ca", g.caFile}
	}
	rmTok, rmCode := g.user("rm", server.RoleReleaseManager)
	code, out, errOut := runCLI(t, append(append([]string{"approval", "register"}, admin(rmTok, rmCode)...),
		"--release", "acme/router-x1@1.1.0", "--environment", "prod")...)
	if code != cli.ExitOK || strings.TrimSpace(out) == "" {
		t.Fatalf("register: exit %d\n%s\n%s", code, out, errOut)
	}
	id := strings.TrimSpace(out)

	// A release manager may not approve (self-approval by an uploader who
	// also holds the approver role is refused by the server; see
	// server/releases_test.go).
	rm2Tok, rm2Code := g.user("rm2", server.RoleReleaseManager)
	code, _, errOut = runCLI(t, append(append([]string{"approval", "approve"}, admin(rm2Tok, rm2Code)...), id)...)
	if code == cli.ExitOK || !strings.Contains(errOut, "403") {
		t.Fatalf("a release manager approved: exit %d: %s", code, errOut)
	}
	a1Tok, a1Code := g.user("a1", server.RoleApprover)
	if code, out, errOut := runCLI(t, append(append([]string{"approval", "approve"}, admin(a1Tok, a1Code)...), id)...); code != cli.ExitOK || !strings.Contains(out, "1 of 2 approvals") {
		t.Fatalf("approve a1: exit %d\n%s\n%s", code, out, errOut)
	}
	opTok, opCode := g.user("op", server.RoleOperator)
	code, _, errOut = runCLI(t, append(append([]string{"approval", "deploy"}, admin(opTok, opCode)...), id)...)
	if code == cli.ExitOK || !strings.Contains(errOut, "approval") {
		t.Fatalf("deploy with 1 of 2 approvals: exit %d: %s", code, errOut)
	}
	a2Tok, a2Code := g.user("a2", server.RoleApprover)
	if code, out, errOut := runCLI(t, append(append([]string{"approval", "approve"}, admin(a2Tok, a2Code)...), id)...); code != cli.ExitOK || !strings.Contains(out, "2 of 2 approvals") {
		t.Fatalf("approve a2: exit %d\n%s\n%s", code, out, errOut)
	}
	op2Tok, op2Code := g.user("op2", server.RoleOperator)
	if code, out, errOut := runCLI(t, append(append([]string{"approval", "deploy"}, admin(op2Tok, op2Code)...), id)...); code != cli.ExitOK || !strings.Contains(out, "deployed") {
		t.Fatalf("deploy: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, append([]string{"approval", "list"}, admin(op2Tok, "")...)...)
	if code != cli.ExitOK || !strings.Contains(out, id) || !strings.Contains(out, "2/2") {
		t.Fatalf("list: exit %d\n%s\n%s", code, out, errOut)
	}
}
