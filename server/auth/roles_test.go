package auth

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSecurityDocMatchesAuthorizationTable keeps docs/security.md's role
// table identical to the one the server enforces.
func TestSecurityDocMatchesAuthorizationTable(t *testing.T) {
	data, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	got := map[Action][]string{}
	gotTOTP := map[Action]bool{}
	gotSession := map[Action]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4+len(Roles) {
			t.Fatalf("table row has %d cells, want %d: %s", len(cells), 4+len(Roles), line)
		}
		a := Action(strings.Trim(strings.TrimSpace(cells[0]), "`"))
		for i, r := range Roles {
			if strings.TrimSpace(cells[2+i]) == "yes" {
				got[a] = append(got[a], r)
			}
		}
		gotTOTP[a] = strings.TrimSpace(cells[2+len(Roles)]) == "yes"
		gotSession[a] = strings.TrimSpace(cells[3+len(Roles)])
	}
	want := map[Action][]string{}
	wantTOTP := map[Action]bool{}
	wantSession := map[Action]string{}
	for _, a := range Actions {
		for _, r := range Roles {
			if Authorize(r, a) {
				want[a] = append(want[a], r)
			}
		}
		wantTOTP[a] = ActionNeedsTOTP(a)
		switch {
		case !ActionNeedsTOTP(a):
			wantSession[a] = "—"
		case ActionSessionSuffices(a):
			wantSession[a] = "yes"
		default:
			wantSession[a] = "no"
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/security.md roles differ from the enforced table (-code +doc):\n%s", diff)
	}
	if diff := cmp.Diff(wantTOTP, gotTOTP); diff != "" {
		t.Errorf("docs/security.md TOTP column differs (-code +doc):\n%s", diff)
	}
	if diff := cmp.Diff(wantSession, gotSession); diff != "" {
		t.Errorf("docs/security.md Session column differs (-code +doc):\n%s", diff)
	}
}

func TestAuthorizeDeniesByDefault(t *testing.T) {
	for _, tc := range []struct {
		role   string
		action Action
	}{
		{"", ActionFleetRead},
		{"Admin", ActionUserWrite},
		{"root", ActionFleetRead},
		{RoleAdmin, "user.delete"},
		{RoleAdmin, ""},
	} {
		if Authorize(tc.role, tc.action) {
			t.Errorf("Authorize(%q, %q) = true, want deny", tc.role, tc.action)
		}
	}
}
