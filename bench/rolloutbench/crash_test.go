package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store/pgtest"
)

// minKills is the least number of SIGKILLs a crash run must deliver
// (issue 16's acceptance: at least 10 per run).
const minKills = 10

// buildAirlock builds cmd/airlock once per test binary.
func buildAirlock(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "airlock")
	cmd := exec.Command("go", "build", "-o", out, "../../cmd/airlock")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build ./cmd/airlock: %v", err)
	}
	return out
}

// crashConfig is the short CI version of bench/rollout.sh's crash runs:
// 150 devices, five stages, one-second polls, a report deadline longer
// than any outage, and a 100% success threshold so that the success count
// of a completed rollout is exact.
func crashConfig(airlock, work, db string, replicas, kills int) config {
	return config{
		airlock: airlock, work: work, devices: 150, concurrency: 150,
		stages: "canary:15,20%,40%,60%,80%,100%", successThreshold: "100%", failureThreshold: "2%",
		pollInterval: time.Second, reportDeadline: 20 * time.Second, rolloutTick: 500 * time.Millisecond,
		maxBackoff: 2 * time.Second, expectState: "completed", db: db, replicas: replicas,
		kills: kills, seed: 16, killGap: time.Second, audit: true, quiet: !testing.Verbose(),
	}
}

// TestRolloutSurvivesKills SIGKILLs `airlock serve` (the single server on
// SQLite; one of three replicas behind nginx on PostgreSQL) at seeded
// moments, at least ten times during a staged rollout, and checks that the
// rollout completes with the success count of a run without kills, that
// the audit log holds exactly one device.updated entry per committed
// update, and that it verifies.
func TestRolloutSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("a crash run takes about a minute")
	}
	airlock := buildAirlock(t)
	for _, tc := range []struct {
		name     string
		db       string
		replicas int
	}{
		{"sqlite", "sqlite", 1},
		{"postgres-3-replicas", "postgres", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.db == "postgres" {
				if _, err := pgtest.FindBinDir(); err != nil {
					if os.Getenv("AIRLOCK_REQUIRE_TOOLS") != "" {
						t.Fatal(err)
					}
					t.Skip(err)
				}
			}
			var control *result
			for _, kills := range []int{0, minKills} {
				work := t.TempDir()
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
				res, err := bench(ctx, crashConfig(airlock, work, tc.db, tc.replicas, kills))
				cancel()
				if res != nil {
					var b strings.Builder
					res.print(&b, crashConfig(airlock, work, tc.db, tc.replicas, kills))
					t.Logf("kills=%d:\n%s", kills, b.String())
				}
				if err != nil {
					for i := range tc.replicas {
						if log, _ := os.ReadFile(filepath.Join(work, "airlock-"+itoa(i)+".log")); len(log) > 0 {
							t.Logf("replica %d log (tail):\n%s", i, tail(string(log), 30))
						}
					}
					t.Fatalf("kills=%d: %v", kills, err)
				}
				if kills == 0 {
					control = res
					continue
				}
				if res.kills < minKills {
					t.Errorf("only %d kills happened before the rollout completed, want at least %d", res.kills, minKills)
				}
				if res.succeeded != control.succeeded || res.failed != control.failed {
					t.Errorf("with %d kills: %d succeeded, %d failed; without: %d succeeded, %d failed",
						res.kills, res.succeeded, res.failed, control.succeeded, control.failed)
				}
				if res.updated != res.committed {
					t.Errorf("audit log: %d device.updated entries for %d committed updates", res.updated, res.committed)
				}
			}
		})
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
