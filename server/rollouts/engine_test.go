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
		if err := e.Load(t.Context()); err != nil {
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
