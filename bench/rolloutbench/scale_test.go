package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store/pgtest"
)

// TestMain runs a worker process of -procs when the test binary is
// re-executed as one (startWorkers re-executes os.Executable()).
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		if err := runWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "rolloutbench worker: error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLightRolloutOnReplicas is the short CI version of bench/scale.sh:
// 2,000 light devices in two worker processes enroll through the real
// enrollment API of two replicas on PostgreSQL behind nginx, a staged
// rollout completes, and every device then states 1.1.0 on its check-in;
// the stats of the two processes add up.
func TestLightRolloutOnReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("a 2,000-device rollout on PostgreSQL")
	}
	if _, err := pgtest.FindBinDir(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	const n = 2000
	airlock := buildAirlock(t)
	work := t.TempDir()
	c := config{
		airlock: airlock, work: work, devices: n, concurrency: 100, light: true, procs: 2, waitAll: true,
		stages: "canary:20,50%,100%", successThreshold: "95%", failureThreshold: "2%",
		pollInterval: time.Second, reportDeadline: time.Minute, rolloutTick: 300 * time.Millisecond,
		maxBackoff: 2 * time.Second, expectState: "completed", db: "postgres", replicas: 2, seed: 16,
		quiet: !testing.Verbose(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := bench(ctx, c)
	if res != nil {
		var b strings.Builder
		res.print(&b, c)
		t.Logf("\n%s", b.String())
	}
	if err != nil {
		for i := range c.replicas {
			if log, _ := os.ReadFile(filepath.Join(work, "airlock-"+itoa(i)+".log")); len(log) > 0 {
				t.Logf("replica %d log (tail):\n%s", i, tail(string(log), 20))
			}
		}
		t.Fatal(err)
	}
	ls := res.lightStats
	if ls == nil {
		t.Fatal("no light-device stats")
	}
	if ls.Devices != n || ls.Enrolled != n || ls.Versions["1.1.0"] != n || ls.Commits != n || ls.RollBacks != 0 {
		t.Errorf("fleet %v: want %d devices enrolled, each committed 1.1.0 once", ls, n)
	}
	if res.state != "completed" || res.succeeded < n*95/100 {
		t.Errorf("rollout %s with %d successes, want completed with at least 95%% of %d", res.state, res.succeeded, n)
	}
	// A check-in cut short by the end of the run is in the histogram but
	// not counted as a poll: at most one per cycle in flight.
	if cnt := ls.Checkin.Count(); cnt < uint64(ls.Polls) || cnt > uint64(ls.Polls)+uint64(c.procs*c.concurrency) || ls.Checkin.Quantile(0.99) <= 0 {
		t.Errorf("check-in histogram holds %d of %d check-ins", ls.Checkin.Count(), ls.Polls)
	}
	if len(res.replicaCPU) != 2 || res.replicaCPU[0] <= 0 || res.replicaCPU[1] <= 0 || res.dbSize <= 0 {
		t.Errorf("replica CPU %v, database size %d: want both measured", res.replicaCPU, res.dbSize)
	}
}
