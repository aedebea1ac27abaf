package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

// checkCounters fails unless the rollout's counters (Assigned, InFlight and
// RolloutCounts) equal what its rollout_devices rows say.
func checkCounters(t *testing.T, s store.Store, id string, rows map[string]store.RolloutDevice) {
	t.Helper()
	ctx := context.Background()
	r, err := s.GetRollout(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	inflight := 0
	want := map[store.RolloutCount]int{}
	for _, d := range rows {
		st := d.State
		if st == store.RolloutDeviceInProgress {
			st = store.RolloutDeviceAssigned
		}
		if st == store.RolloutDeviceAssigned {
			inflight++
		}
		want[store.RolloutCount{Stage: d.Stage, State: st, Reason: d.Reason}]++
	}
	if r.Assigned != len(rows) || r.InFlight != inflight {
		t.Errorf("rollout counters assigned=%d in_flight=%d, rows say %d and %d", r.Assigned, r.InFlight, len(rows), inflight)
	}
	cs, err := s.RolloutCounts(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[store.RolloutCount]int{}
	for _, c := range cs {
		n := c.N
		c.N = 0
		got[c] = n
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RolloutCounts differ from the rows (-rows +counts):\n%s", diff)
	}
}

// testRolloutAdmission proves the store admits devices only within the
// stage target and max_parallel, whoever asks, and keeps the counters equal
// to the rows through every change.
func testRolloutAdmission(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	dsn := newDSN(t)
	s := open(t, dsn)
	const devices = 40
	r := rolloutFixture(t, s, devices)
	r.MaxParallel = 4
	if err := s.CreateRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	assign := func(s store.Store, i, stage int) error {
		return s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: r.ID, DeviceID: device(i).ID, Stage: stage,
			State: store.RolloutDeviceAssigned, AssignedAt: at(10 * time.Minute)})
	}
	wantErr(t, "assign to a draft rollout", assign(s, 0, 0), store.ErrConflict)
	if err := s.UpdateRollout(ctx, r.ID, store.RolloutDraft, 0, store.Rollout{State: store.RolloutRunning,
		Eligible: devices, Target: 6}, at(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Three stores (three servers) on one database, every device at once:
	// max_parallel admits exactly four.
	stores := []store.Store{s, open(t, dsn), open(t, dsn)}
	var admitted atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, devices)
	for i := range devices {
		wg.Go(func() {
			switch err := assign(stores[i%3], i, 0); {
			case err == nil:
				admitted.Add(1)
			case !errors.Is(err, store.ErrRolloutFull):
				errs <- fmt.Errorf("device %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := admitted.Load(); n != 4 {
		t.Fatalf("%d devices admitted concurrently with max_parallel 4, want 4", n)
	}
	rows := readRows(t, s, r.ID, devices)
	checkCounters(t, s, r.ID, rows)

	// Outcomes free max_parallel room; the target (6) still bounds.
	var done []int
	for i := range devices {
		if d, ok := rows[device(i).ID]; ok && len(done) < 3 {
			u := store.RolloutDeviceUpdate{RolloutID: r.ID, DeviceID: device(i).ID, FromState: d.State, FromReason: d.Reason,
				State: store.RolloutDeviceFailed, Reason: "timed_out", Now: at(time.Hour)}
			if len(done) == 0 {
				u.State, u.Reason = store.RolloutDeviceSucceeded, ""
			}
			if err := s.UpdateRolloutDevice(ctx, u); err != nil {
				t.Fatal(err)
			}
			done = append(done, i)
		}
	}
	n := 0
	for i := range devices {
		if _, ok := rows[device(i).ID]; ok {
			continue
		}
		if err := assign(stores[i%3], i, 0); err == nil {
			n++
		} else {
			wantErr(t, "assignment beyond the target", err, store.ErrRolloutFull)
		}
	}
	if n != 2 {
		t.Fatalf("%d more devices admitted up to the target 6, want 2", n)
	}
	wantErr(t, "assignment for a stale stage", assign(s, devices-1, 1), store.ErrRolloutMoved)
	rows = readRows(t, s, r.ID, devices)
	checkCounters(t, s, r.ID, rows)

	// Compare-and-swap: a stale FromState or a report newer than
	// UpdatedBefore leaves the device alone.
	d0 := rows[device(done[1]).ID] // failed, timed_out
	err := s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID, DeviceID: d0.DeviceID,
		FromState: store.RolloutDeviceAssigned, State: store.RolloutDeviceFailed, Reason: "timed_out", Now: at(2 * time.Hour)})
	wantErr(t, "stale from state", err, store.ErrConflict)
	// A timed-out device that later proves it runs the release succeeds.
	if err := s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID, DeviceID: d0.DeviceID,
		FromState: d0.State, FromReason: d0.Reason, State: store.RolloutDeviceSucceeded, Now: at(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var fresh store.RolloutDevice
	for _, d := range readRows(t, s, r.ID, devices) {
		if d.State == store.RolloutDeviceAssigned {
			fresh = d
			break
		}
	}
	err = s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID, DeviceID: fresh.DeviceID,
		FromState: fresh.State, UpdatedBefore: fresh.UpdatedAt.Add(-time.Second), State: store.RolloutDeviceFailed,
		Reason: "timed_out", Now: at(2 * time.Hour)})
	wantErr(t, "time-out of a device that reported since", err, store.ErrConflict)
	checkCounters(t, s, r.ID, readRows(t, s, r.ID, devices))

	// The eligible count and target follow the stage.
	if err := s.SetRolloutEligible(ctx, r.ID, 1, 50, 10); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("SetRolloutEligible for another stage: %v, want ErrConflict", err)
	}
	if err := s.SetRolloutEligible(ctx, r.ID, 0, 50, 7); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRollout(ctx, r.ID)
	if err != nil || got.Eligible != 50 || got.Target != 7 || !got.UpdatedAt.Equal(at(3*time.Minute)) {
		t.Fatalf("after SetRolloutEligible: %+v, %v", got, err)
	}
}

// readRows returns the rollout's device rows of the first n fixture
// devices, by device ID.
func readRows(t *testing.T, s store.Store, id string, n int) map[string]store.RolloutDevice {
	t.Helper()
	out := map[string]store.RolloutDevice{}
	for i := range n {
		d, ro, err := s.DeviceAssignment(context.Background(), device(i).ID)
		if err == nil && ro.ID == id {
			out[d.DeviceID] = d
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	return out
}

// testLeases proves a named lease has one holder at a time, is renewed by
// its holder and taken over by another once it expired.
func testLeases(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	dsn := newDSN(t)
	a, b := open(t, dsn), open(t, dsn)
	const ttl = 10 * time.Second
	acquire := func(s store.Store, holder string, now time.Time) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, "rollout-ticker", holder, ttl, now)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	t0 := at(0)
	if !acquire(a, "srv-a", t0) {
		t.Fatal("first claim of a free lease refused")
	}
	if acquire(b, "srv-b", t0.Add(time.Second)) {
		t.Fatal("second holder took a held lease")
	}
	if !acquire(a, "srv-a", t0.Add(5*time.Second)) {
		t.Fatal("holder's renewal refused")
	}
	if acquire(b, "srv-b", t0.Add(14*time.Second)) {
		t.Fatal("lease taken before the renewed expiry")
	}
	// srv-a stops renewing (it died): srv-b takes over at expiry, and
	// srv-a's late renewal fails.
	if !acquire(b, "srv-b", t0.Add(15*time.Second)) {
		t.Fatal("expired lease not taken over")
	}
	if acquire(a, "srv-a", t0.Add(16*time.Second)) {
		t.Fatal("former holder renewed a lease another took over")
	}
	// Another name is independent.
	if ok, err := a.AcquireLease(ctx, "audit-drain", "srv-a", ttl, t0.Add(16*time.Second)); err != nil || !ok {
		t.Fatalf("independent lease: %v, %v", ok, err)
	}
	// Concurrent claims of a free lease: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := []store.Store{a, b}[i%2]
			if ok, err := s.AcquireLease(ctx, "race", fmt.Sprintf("srv-%d", i), ttl, t0); err != nil {
				t.Error(err)
			} else if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent claims won a free lease, want 1", wins.Load())
	}
	if err := b.ReleaseLease(ctx, "rollout-ticker", "srv-b"); err != nil {
		t.Fatal(err)
	}
	if !acquire(a, "srv-a", t0.Add(17*time.Second)) {
		t.Fatal("released lease not free")
	}
	if _, err := a.AcquireLease(ctx, "bad name!", "srv-a", ttl, t0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("bad lease name: %v, want ErrInvalid", err)
	}
	if _, err := a.AcquireLease(ctx, "x", "srv-a", 0, t0); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("zero ttl: %v, want ErrInvalid", err)
	}
}
