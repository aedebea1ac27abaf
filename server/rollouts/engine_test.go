package rollouts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/server/store/pgtest"
)

// The throwaway PostgreSQL cluster of this package's tests, started on
// first use and stopped after all tests ran.
var (
	clusterOnce sync.Once
	cluster     *pgtest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "rollouts: failed to stop postgresql: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func postgresDSN(t *testing.T) string {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = pgtest.Start(context.Background()) })
	if errors.Is(clusterErr, pgtest.ErrNotInstalled) && os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "" {
		t.Skip("postgresql not installed")
	}
	if clusterErr != nil {
		t.Fatalf("failed to start postgresql: %v", clusterErr)
	}
	dsn, err := cluster.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// clock is an injectable clock shared by the engines of a test.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// replica is one server's engine with its own connection pool.
type replica struct {
	e  *Engine
	db store.Store
}

// replicas opens n stores on dsn (each its own pool, as separate servers
// have) with an engine each.
func replicas(t *testing.T, dsn string, n int, clk *clock, cfg Config) []replica {
	t.Helper()
	var out []replica
	for i := range n {
		db, err := store.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		c := cfg
		c.DB, c.Now, c.Holder = db, clk.Now, fmt.Sprintf("replica-%d", i)
		c.RequiredApprovals = func(string) int { return 0 }
		e, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		out = append(out, replica{e: e, db: db})
	}
	return out
}

var operator = store.User{ID: "u-op", Name: "op", Role: "operator"}

const product = "acme/x1"

// fleet creates the operator, release 2.0.0 and n devices at 1.0.0.
func fleet(t *testing.T, db store.Store, n int) []store.Device {
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC()
	for _, u := range []store.User{{ID: "u-rm", Name: "rm", Role: "release_manager"}, operator} {
		u.CreatedAt = now
		if err := db.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreateRelease(ctx, store.Release{ID: "rel-2", Product: product, Version: "2.0.0", Environment: "dev",
		TargetPath: "acme/x1/fw-2.0.0.bin", Uploader: "u-rm", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	devs := make([]store.Device, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range devs {
		fp := fmt.Sprintf("%064x", i+1)
		devs[i] = store.Device{ID: fmt.Sprintf("dev-%05d", i), Model: "x1", Product: product, HWRev: 1,
			CurrentVersion: "1.0.0", State: store.StateIdle, CertSerial: fmt.Sprintf("%x", i+1), CertFingerprint: fp, EnrolledAt: now}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := db.CreateDevice(ctx, devs[i]); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return devs
}

// startRollout creates and starts a rollout of 2.0.0 through e.
func startRollout(t *testing.T, e *Engine, req adminapi.CreateRolloutRequest) adminapi.RolloutView {
	t.Helper()
	req.Release = product + "@2.0.0"
	v, err := e.CreateRollout(t.Context(), operator, req)
	if err != nil {
		t.Fatal(err)
	}
	if v, err = e.ApplyRollout(t.Context(), v.ID, rollout.ActionStart, operator, ""); err != nil {
		t.Fatal(err)
	}
	return v
}

// checkRows fails unless the rollout's stored counters equal its rows.
func checkRows(t *testing.T, db store.Store, id string, wantAssigned int) {
	t.Helper()
	ctx := t.Context()
	held, err := db.HeldDevices(ctx, product)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, ro := range held {
		if ro == id {
			rows++
		}
	}
	rec, err := db.GetRollout(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := db.RolloutCounts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, c := range cs {
		counted += c.N
	}
	if rows != wantAssigned || rec.Assigned != wantAssigned || counted != wantAssigned {
		t.Fatalf("assigned: %d rows, counter %d, counts %d; want %d", rows, rec.Assigned, counted, wantAssigned)
	}
}

// concurrentCheckins checks every device in at once, spread over the
// replicas, and returns how many got an assignment.
func concurrentCheckins(t *testing.T, rs []replica, devs []store.Device) int {
	t.Helper()
	var got atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, len(devs))
	for i, d := range devs {
		wg.Go(func() {
			<-start
			a, err := rs[i%len(rs)].e.Checkin(t.Context(), d)
			if err != nil {
				errs <- err
			} else if a != nil {
				got.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return int(got.Load())
}

// TestReplicasNeverOvershootAStage is the acceptance test of issue 16:
// three servers (engines with their own connection pools) on one
// PostgreSQL, 2,000 concurrent check-ins, a stage of 100: exactly 100
// devices are assigned, and the counters equal the rows.
func TestReplicasNeverOvershootAStage(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"postgres", postgresDSN},
		{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := tc.dsn(t)
			clk := &clock{}
			rs := replicas(t, dsn, 3, clk, Config{})
			devs := fleet(t, rs[0].db, 2000)
			v := startRollout(t, rs[0].e, adminapi.CreateRolloutRequest{Stages: "canary:100,100%"})
			if v.StageViews[0].Target != 100 || v.Eligible != 2000 {
				t.Fatalf("started rollout: target %d of %d eligible", v.StageViews[0].Target, v.Eligible)
			}
			for _, r := range rs[1:] {
				if err := r.e.Refresh(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			n := concurrentCheckins(t, rs, devs)
			t.Logf("%d concurrent check-ins over 3 replicas in %v", len(devs), time.Since(start).Round(time.Millisecond))
			if n != 100 {
				t.Fatalf("%d check-ins got an assignment, want 100", n)
			}
			checkRows(t, rs[2].db, v.ID, 100)
			// A second round assigns nothing more.
			if n := concurrentCheckins(t, rs, devs); n != 100 {
				t.Fatalf("second round: %d check-ins name an assignment, want the same 100", n)
			}
			checkRows(t, rs[1].db, v.ID, 100)
		})
	}
}

func sqliteDSN(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "airlock.db") }

// running returns d as it checks in running version (idle: committed).
func running(d store.Device, version string) store.Device {
	d.CurrentVersion, d.State = version, store.StateIdle
	return d
}

func view(t *testing.T, e *Engine, id string) adminapi.RolloutView {
	t.Helper()
	v, err := e.RolloutView(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTimedOutDeviceRunningTheReleaseSucceeds: a device whose reports were
// lost times out, then checks in running the release: its row becomes a
// success, the counters follow, and the stage that was wedged below its
// success threshold advances.
func TestTimedOutDeviceRunningTheReleaseSucceeds(t *testing.T) {
	clk := &clock{}
	var audits []string
	var mu sync.Mutex
	rs := replicas(t, sqliteDSN(t), 1, clk, Config{Audit: func(_ context.Context, _, action string, d map[string]string) {
		mu.Lock()
		defer mu.Unlock()
		audits = append(audits, action+" "+d["device"])
	}})
	e := rs[0].e
	devs := fleet(t, rs[0].db, 8)
	v := startRollout(t, e, adminapi.CreateRolloutRequest{Stages: "canary:4,100%", FailureThreshold: "50%", ReportDeadline: "10m"})
	var canary []store.Device
	for _, d := range devs {
		if a, err := e.Checkin(t.Context(), d); err != nil {
			t.Fatal(err)
		} else if a != nil {
			canary = append(canary, d)
		}
	}
	if len(canary) != 4 {
		t.Fatalf("%d canary devices, want 4", len(canary))
	}
	// Three report their commit; the fourth installs too, but its reports
	// are lost (the server was down).
	for _, d := range canary[:3] {
		if err := e.Report(t.Context(), d, deviceapi.StateCommitted, "2.0.0", ""); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(11 * time.Minute)
	e.Tick(t.Context())
	v = view(t, e, v.ID)
	if v.State != "running" || v.Stage != 0 || v.Total.Failed != 1 || v.FailureReasons["timed_out"] != 1 {
		t.Fatalf("after the time-out: %s stage %d, %+v %v", v.State, v.Stage, v.Total, v.FailureReasons)
	}
	// 3 of 4 succeeded is below 95%: without reconciliation the stage is
	// wedged for good. The silent device checks in running 2.0.0.
	if _, err := e.Checkin(t.Context(), running(canary[3], "2.0.0")); err != nil {
		t.Fatal(err)
	}
	v = view(t, e, v.ID)
	if v.Stage != 1 || v.State != "running" || v.StageViews[0].Succeeded != 4 || v.Total.Failed != 0 || len(v.FailureReasons) != 0 {
		t.Fatalf("after the reconciling check-in: %s stage %d, %+v %v (%s)", v.State, v.Stage, v.StageViews[0], v.FailureReasons, v.Reason)
	}
	checkRows(t, rs[0].db, v.ID, 4)
	rd, _, err := rs[0].db.DeviceAssignment(t.Context(), canary[3].ID)
	if err != nil || rd.State != store.RolloutDeviceSucceeded || rd.Reason != "" {
		t.Fatalf("reconciled row %+v, %v", rd, err)
	}
	mu.Lock()
	defer mu.Unlock()
	var assigned, reconciled int
	for _, a := range audits {
		switch a {
		case AuditRolloutAssigned + " " + canary[3].ID:
			assigned++
		case AuditRolloutReconciled + " " + canary[3].ID:
			reconciled++
		}
	}
	if assigned != 1 || reconciled != 1 {
		t.Errorf("audit of the device: %d assigned, %d reconciled; want 1 and 1 (%v)", assigned, reconciled, audits)
	}
	// A late committed report for a failed row does the same; a failure
	// report after success changes nothing.
	if err := e.Report(t.Context(), canary[3], deviceapi.StateFailed, "2.0.0", "install: late"); err != nil {
		t.Fatal(err)
	}
	if v := view(t, e, v.ID); v.Total.Failed != 0 {
		t.Fatalf("a late failure report overrode a success: %+v", v.Total)
	}
}

// TestLateCommittedReportTurnsATimeOutIntoASuccess: the report that was
// only late (not lost) counts too.
func TestLateCommittedReportTurnsATimeOutIntoASuccess(t *testing.T) {
	clk := &clock{}
	rs := replicas(t, sqliteDSN(t), 1, clk, Config{})
	e := rs[0].e
	devs := fleet(t, rs[0].db, 2)
	v := startRollout(t, e, adminapi.CreateRolloutRequest{Stages: "100%", FailureThreshold: "60%", ReportDeadline: "10m"})
	for _, d := range devs {
		if a, err := e.Checkin(t.Context(), d); err != nil || a == nil {
			t.Fatalf("check-in: %v, %v", a, err)
		}
	}
	if err := e.Report(t.Context(), devs[0], deviceapi.StateCommitted, "2.0.0", ""); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Minute)
	e.Tick(t.Context())
	if v := view(t, e, v.ID); v.Total.Failed != 1 || v.State != "running" {
		t.Fatalf("after the time-out: %s %+v", v.State, v.Total)
	}
	if err := e.Report(t.Context(), devs[1], deviceapi.StateCommitted, "2.0.0", ""); err != nil {
		t.Fatal(err)
	}
	if v := view(t, e, v.ID); v.State != "completed" || v.Total.Succeeded != 2 || v.Total.Failed != 0 {
		t.Fatalf("after the late report: %s %+v (%s)", v.State, v.Total, v.Reason)
	}
}

// TestRolloutWithEveryReportLostCompletesLikeTheControl runs the same
// rollout twice: once with every report delivered, once with every report
// lost and the devices only checking in. Both complete with every device
// succeeded.
func TestRolloutWithEveryReportLostCompletesLikeTheControl(t *testing.T) {
	result := func(t *testing.T, reports bool) adminapi.RolloutView {
		clk := &clock{}
		rs := replicas(t, sqliteDSN(t), 1, clk, Config{})
		e := rs[0].e
		devs := fleet(t, rs[0].db, 30)
		v := startRollout(t, e, adminapi.CreateRolloutRequest{Stages: "canary:3,50%,100%", MaxParallel: 6, ReportDeadline: "1h"})
		version := map[string]string{}
		for round := 0; round < 20; round++ {
			for _, d := range devs {
				cur := version[d.ID]
				if cur == "" {
					cur = "1.0.0"
				}
				a, err := e.Checkin(t.Context(), running(d, cur))
				if err != nil {
					t.Fatal(err)
				}
				if a != nil && cur != "2.0.0" {
					// The device installs and commits before its next check-in.
					version[d.ID] = "2.0.0"
					if reports {
						if err := e.Report(t.Context(), d, deviceapi.StateCommitted, "2.0.0", ""); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			clk.Advance(time.Minute)
			e.Tick(t.Context())
			if v = view(t, e, v.ID); v.State != "running" {
				break
			}
		}
		return v
	}
	control, lost := result(t, true), result(t, false)
	if control.State != "completed" || lost.State != "completed" || control.Total != lost.Total || lost.Total.Succeeded != 30 {
		t.Fatalf("control %s %+v, with lost reports %s %+v (%s)", control.State, control.Total, lost.State, lost.Total, lost.Reason)
	}
}

// racingStore runs hook (once) before its first ListDevices call: another
// server's work landing while the engine counts the eligible devices.
type racingStore struct {
	store.Store
	hook func()
}

func (r *racingStore) ListDevices(ctx context.Context, f store.DeviceFilter) ([]store.Device, error) {
	if h := r.hook; h != nil {
		r.hook = nil
		h()
	}
	return r.Store.ListDevices(ctx, f)
}

// TestEligibleCountSeesDevicesAssignedDuringTheCount: a device assigned
// and updated by another replica while the ticker counts is counted once
// (it was missed when the held devices were read before the device list,
// and the last stage then completed with devices never assigned).
func TestEligibleCountSeesDevicesAssignedDuringTheCount(t *testing.T) {
	clk := &clock{}
	dsn := sqliteDSN(t)
	rs := replicas(t, dsn, 2, clk, Config{})
	devs := fleet(t, rs[0].db, 10)
	rc := &racingStore{Store: rs[0].db}
	e, err := New(Config{DB: rc, Now: clk.Now, Holder: "racing", RequiredApprovals: func(string) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	v := startRollout(t, e, adminapi.CreateRolloutRequest{Stages: "canary:2,100%"})
	if v.Eligible != 10 {
		t.Fatalf("eligible at the start: %d, want 10", v.Eligible)
	}
	other := rs[1]
	if err := other.e.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	rc.hook = func() {
		// Another replica assigns devs[0], which installs and states the
		// release, between the engine's reads.
		a, err := other.e.Checkin(t.Context(), devs[0])
		if err != nil || a == nil {
			t.Errorf("assignment on the other replica: %v, %v", a, err)
			return
		}
		if err := other.db.Checkin(t.Context(), devs[0].ID, store.DeviceReport{CurrentVersion: "2.0.0", SecurityCounter: 0,
			State: store.StateIdle}, clk.Now()); err != nil {
			t.Error(err)
		}
	}
	e.Tick(t.Context())
	if rc.hook != nil {
		t.Fatal("the count did not list devices")
	}
	if got := view(t, e, v.ID); got.Eligible != 10 {
		t.Fatalf("eligible after a count that raced an assignment: %d, want 10", got.Eligible)
	}
}
