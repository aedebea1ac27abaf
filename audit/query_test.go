package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// releaseHistory writes the life of one release and some noise.
func releaseHistory(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, newKey(t), Options{CheckpointEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	const rel = "acme/router-x1@2.0.0"
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	for _, e := range []Entry{
		{Time: at(0), Actor: "alice", Action: AuthLogin},
		{Time: at(1), Actor: "ci", Action: ReleaseAdded, Release: rel},
		{Time: at(2), Actor: "key:1a2b", Action: ReleaseSigned, Release: rel},
		{Time: at(3), Actor: "alice", Action: ReleaseApproved, Release: rel},
		{Time: at(4), Actor: "bob", Action: ReleaseApproved, Release: rel},
		{Time: at(5), Actor: "bob", Action: ReleasePublished, Release: rel},
		{Time: at(6), Actor: "mallory", Action: AuthLoginFailed, Details: map[string]string{"remote_addr": "203.0.113.9"}},
		{Time: at(7), Actor: "bob", Action: RolloutStarted, Release: rel, Details: map[string]string{"cohort": "canary"}},
		{Time: at(8), Actor: "dev-1", Action: DeviceUpdated, Release: rel, Device: "dev-1"},
		{Time: at(9), Actor: "dev-2", Action: DeviceRolledBack, Release: rel, Device: "dev-2"},
		{Time: at(10), Actor: "ci", Action: ReleaseAdded, Release: "acme/router-x1@2.0.1"},
		{Time: at(11), Actor: "dev-3", Action: DeviceUpdated, Release: rel, Device: "dev-3"},
	} {
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestQueryFilters(t *testing.T) {
	dir := releaseHistory(t)
	tests := []struct {
		name string
		f    Filter
		want []uint64
	}{
		{"all", Filter{}, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"actor", Filter{Actor: "bob"}, []uint64{4, 5, 7}},
		{"release", Filter{Release: "acme/router-x1@2.0.1"}, []uint64{10}},
		{"device", Filter{Device: "dev-2"}, []uint64{9}},
		{"action", Filter{Action: AuthLoginFailed}, []uint64{6}},
		{"since", Filter{Since: t0.Add(9 * time.Minute)}, []uint64{9, 10, 11}},
		{"until", Filter{Until: t0.Add(2 * time.Minute)}, []uint64{0, 1}},
		{"combined", Filter{Release: "acme/router-x1@2.0.0", Action: DeviceUpdated, Since: t0.Add(10 * time.Minute)}, []uint64{11}},
		{"no match", Filter{Actor: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := Query(dir, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range es {
				got = append(got, e.Seq)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSummarizeAnswersWhoDidWhat(t *testing.T) {
	dir := releaseHistory(t)
	const rel = "acme/router-x1@2.0.0"
	es, err := Query(dir, Filter{Release: rel})
	if err != nil {
		t.Fatal(err)
	}
	s := Summarize(rel, es)
	who := func(evs []Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%s %s", e.Action, e.Actor))
		}
		return out
	}
	got := map[string][]string{
		"added": who(s.Added), "signed": who(s.Signed), "approved": who(s.Approved), "published": who(s.Published),
		"rollouts": who(s.Rollouts), "installed": who(s.Installed), "rolled back": who(s.RolledBack),
	}
	want := map[string][]string{
		"added":       {"release.added ci"},
		"signed":      {"release.signed key:1a2b"},
		"approved":    {"release.approved alice", "release.approved bob"},
		"published":   {"release.published bob"},
		"rollouts":    {"rollout.started bob"},
		"installed":   {"device.updated dev-1", "device.updated dev-3"},
		"rolled back": {"device.rolled_back dev-2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
}

// TestSummarizeGroupsServerRolloutEvents: the server's rollout events are
// part of the distribution; assignments are listed per device.
func TestSummarizeGroupsServerRolloutEvents(t *testing.T) {
	const rel = "acme/router-x1@2.0.0"
	s := Summarize(rel, []Entry{
		{Actor: "op", Action: RolloutCreated, Release: rel},
		{Actor: "op", Action: ReleaseDeployed, Release: rel},
		{Actor: "op", Action: RolloutTransition, Release: rel, Details: map[string]string{"from": "draft", "to": "running"}},
		{Actor: "airlock", Action: RolloutAssigned, Release: rel, Device: "dev-1"},
		{Actor: "airlock", Action: RolloutReconciled, Release: rel, Device: "dev-2"},
		{Actor: "dev-1", Action: DeviceUpdated, Release: rel, Device: "dev-1"},
		{Actor: "op", Action: DeviceTags, Device: "dev-1"},
	})
	var rollouts, assigned []string
	for _, e := range s.Rollouts {
		rollouts = append(rollouts, string(e.Action))
	}
	for _, e := range s.Assigned {
		assigned = append(assigned, string(e.Action)+" "+e.Device)
	}
	if diff := cmp.Diff([]string{"rollout.created", "release.deployed", "rollout.transition"}, rollouts); diff != "" {
		t.Errorf("Rollouts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"rollout.assigned dev-1", "rollout.reconciled dev-2"}, assigned); diff != "" {
		t.Errorf("Assigned (-want +got):\n%s", diff)
	}
	if len(s.Installed) != 1 {
		t.Errorf("Installed = %v", s.Installed)
	}
}
