package rollouts

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// TestTickerLeaseFailsOver: of two servers, only the lease holder ticks
// (times devices out); when it stops renewing (it died), the other takes
// over after the TTL; a holder whose renewal fails stops ticking.
func TestTickerLeaseFailsOver(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{{"sqlite", sqliteDSN}, {"postgres", postgresDSN}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &clock{}
			const ttl = 30 * time.Second
			rs := replicas(t, tc.dsn(t), 2, clk, Config{LeaseTTL: ttl})
			a, b := rs[0].e, rs[1].e
			devs := fleet(t, rs[0].db, 6)
			v := startRollout(t, a, adminapi.CreateRolloutRequest{Stages: "100%", FailureThreshold: "99%", ReportDeadline: "1m"})
			if err := b.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			checkinAll := func() {
				for _, d := range devs {
					if _, err := b.Checkin(t.Context(), d); err != nil {
						t.Fatal(err)
					}
				}
			}
			failed := func() int { return view(t, a, v.ID).Total.Failed }
			checkinAll()
			a.Tick(t.Context())
			b.Tick(t.Context())
			if !a.Leading() || b.Leading() {
				t.Fatalf("leading: a %v, b %v; want a only", a.Leading(), b.Leading())
			}
			// b's ticks do nothing while a holds the lease.
			clk.Advance(2 * time.Minute)
			if err := rs[0].db.UpdateRolloutDevice(t.Context(), store.RolloutDeviceUpdate{RolloutID: v.ID, DeviceID: devs[0].ID,
				State: store.RolloutDeviceInProgress, Now: clk.Now().UTC()}); err != nil {
				t.Fatal(err)
			}
			a.renewLease(t.Context())
			b.Tick(t.Context())
			if n := failed(); n != 0 {
				t.Fatalf("the non-holder timed out %d devices", n)
			}
			a.Tick(t.Context())
			if n := failed(); n != 5 {
				t.Fatalf("the holder timed out %d devices, want 5", n)
			}
			// a dies (stops renewing): b takes over only after the TTL.
			clk.Advance(ttl / 2)
			b.Tick(t.Context())
			if b.Leading() {
				t.Fatal("b took the lease before it expired")
			}
			clk.Advance(ttl/2 + time.Second)
			b.Tick(t.Context())
			if !b.Leading() {
				t.Fatal("b did not take over the expired lease")
			}
			clk.Advance(40 * time.Second) // device 0's deadline passes
			b.Tick(t.Context())
			if n := failed(); n != 6 {
				t.Fatalf("after the failover %d devices timed out, want 6 (b ticks)", n)
			}
			// a comes back: its renewal fails, it stops acting at once.
			if a.renewLease(t.Context()) || a.Leading() {
				t.Fatal("a renewed a lease b holds")
			}
			// A renewal that errors (the database is gone) stops the holder.
			rs[1].db.Close()
			if b.renewLease(t.Context()) || b.Leading() {
				t.Fatal("b still leads after a failed renewal")
			}
		})
	}
}

// TestTickerLeaseFailoverInRealTime runs two engines' Run loops with a
// short TTL: when the holder's loop stops without releasing (it died),
// the other holds the lease within about a TTL.
func TestTickerLeaseFailoverInRealTime(t *testing.T) {
	clk := &clock{}
	const ttl = 300 * time.Millisecond
	rs := replicas(t, sqliteDSN(t), 2, clk, Config{LeaseTTL: ttl, RefreshInterval: 50 * time.Millisecond})
	// a's store refuses renewals once "dead": its loop keeps running but
	// cannot reach the database, like a partitioned server.
	dead := &failingLeases{Store: rs[0].db}
	a, err := New(Config{DB: dead, Now: clk.Now, Holder: "replica-a", LeaseTTL: ttl, RequiredApprovals: func(string) int { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	b := rs[1].e
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx, 20*time.Millisecond) })
	waitFor(t, time.Second, "a to lead", a.Leading)
	wg.Go(func() { b.Run(ctx, 20*time.Millisecond) })
	time.Sleep(ttl)
	if b.Leading() {
		t.Fatal("b leads while a renews")
	}
	dead.fail.Store(true)
	start := time.Now()
	waitFor(t, 3*ttl, "a to stop leading", func() bool { return !a.Leading() })
	waitFor(t, 3*ttl, "b to take over", b.Leading)
	t.Logf("failover after %v (ttl %v)", time.Since(start).Round(time.Millisecond), ttl)
	if a.Leading() {
		t.Fatal("both lead")
	}
	cancel()
	wg.Wait()
}

// failingLeases is a store whose lease calls fail once fail is set.
type failingLeases struct {
	store.Store
	fail atomic.Bool
}

func (f *failingLeases) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	if f.fail.Load() {
		return false, errors.New("connection refused")
	}
	return f.Store.AcquireLease(ctx, name, holder, ttl, now)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRolloutCreatedOnOneReplicaAssignsOnAnother: a rollout created and
// started through replica A is assigned from replica B within one refresh
// interval, and B stops assigning as soon as A pauses it.
func TestRolloutCreatedOnOneReplicaAssignsOnAnother(t *testing.T) {
	clk := &clock{}
	const refresh = 100 * time.Millisecond
	rs := replicas(t, sqliteDSN(t), 2, clk, Config{RefreshInterval: refresh})
	a, b := rs[0].e, rs[1].e
	devs := fleet(t, rs[0].db, 10)
	if _, err := b.Checkin(t.Context(), devs[0]); err != nil { // b's cache is now fresh and empty
		t.Fatal(err)
	}
	v := startRollout(t, a, adminapi.CreateRolloutRequest{Stages: "canary:2,100%"})
	start := time.Now()
	var got *deviceapi.Assignment
	for got == nil {
		if time.Since(start) > 2*refresh+time.Second {
			t.Fatalf("replica B did not assign within %v", time.Since(start))
		}
		var err error
		if got, err = b.Checkin(t.Context(), devs[0]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	t.Logf("replica B assigned %v after the start on A (refresh interval %v)", elapsed.Round(time.Millisecond), refresh)
	if got.RolloutID != v.ID || elapsed > refresh+400*time.Millisecond {
		t.Fatalf("assignment %+v after %v", got, elapsed)
	}
	if _, err := a.ApplyRollout(t.Context(), v.ID, rollout.ActionPause, operator, "hold"); err != nil {
		t.Fatal(err)
	}
	// B's cache still says running; the store refuses, B re-reads.
	if got, err := b.Checkin(t.Context(), devs[1]); err != nil || got != nil {
		t.Fatalf("B assigned from a rollout A paused: %+v, %v", got, err)
	}
	if _, err := a.ApplyRollout(t.Context(), v.ID, rollout.ActionResume, operator, ""); err != nil {
		t.Fatal(err)
	}
	// B learns of the resume within a refresh interval.
	start = time.Now()
	for got = nil; got == nil; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > refresh+400*time.Millisecond {
			t.Fatalf("B did not assign within %v of A's resume", time.Since(start))
		}
		var err error
		if got, err = b.Checkin(t.Context(), devs[1]); err != nil {
			t.Fatal(err)
		}
	}
	checkRows(t, rs[1].db, v.ID, 2)
}
