package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/server/store"
)

// rolloutFixture creates an operator, a release of acme/router and n
// devices of that product, and returns a draft rollout to create.
func rolloutFixture(t *testing.T, s store.Store, n int) store.Rollout {
	t.Helper()
	mustUser(t, s, user("u-rm", "rm", "release_manager"), user("u-op", "op", "operator"))
	rel := store.Release{ID: "rel-1", Product: "acme/router", Version: "1.2.0", Environment: "dev",
		TargetPath: "acme/router/1.2.0/fw.img", Uploader: "u-rm", CreatedAt: at(time.Minute)}
	if err := s.CreateRelease(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		mustCreate(t, s, device(i))
	}
	return rolloutRecord("ro-1")
}

func rolloutRecord(id string) store.Rollout {
	return store.Rollout{ID: id, ReleaseID: "rel-1", Product: "acme/router", Version: "1.2.0",
		TargetPath: "acme/router/1.2.0/fw.img", Filter: "model=x1 tag=lab", Stages: "canary:2,50%,100%",
		SuccessThreshold: 9500, FailureThreshold: 200, MaxParallel: 10, Window: "0 2 * * *,4h,UTC", Forced: true,
		ReportDeadline: 90 * time.Minute, State: store.RolloutDraft, Reason: "created", CreatedBy: "u-op",
		CreatedAt: at(2 * time.Minute), UpdatedAt: at(2 * time.Minute)}
}

func running(t *testing.T, s store.Store, id string) {
	t.Helper()
	err := s.UpdateRollout(context.Background(), id, store.RolloutDraft, 0,
		store.Rollout{State: store.RolloutRunning, Reason: "operator start", Eligible: 100, Target: 100}, at(3*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
}

func testRolloutRoundTrip(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	want := rolloutFixture(t, s, 0)
	if err := s.CreateRollout(ctx, want); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate id", s.CreateRollout(ctx, want), store.ErrExists)
	other := rolloutRecord("ro-2")
	other.ReleaseID = "rel-missing"
	wantErr(t, "unknown release", s.CreateRollout(ctx, other), store.ErrNotFound)
	bad := rolloutRecord("ro-3")
	bad.State = "exploded"
	wantErr(t, "bad state", s.CreateRollout(ctx, bad), store.ErrInvalid)
	bad = rolloutRecord("ro-3")
	bad.SuccessThreshold = 0
	wantErr(t, "zero success threshold", s.CreateRollout(ctx, bad), store.ErrInvalid)

	got, err := s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("GetRollout (-want +got):\n%s", diff)
	}
	_, err = s.GetRollout(ctx, "ro-none")
	wantErr(t, "missing rollout", err, store.ErrNotFound)

	// State changes are compare-and-swap on (state, stage).
	running(t, s, "ro-1")
	err = s.UpdateRollout(ctx, "ro-1", store.RolloutDraft, 0, store.Rollout{State: store.RolloutCancelled}, at(4*time.Minute))
	wantErr(t, "stale update", err, store.ErrConflict)
	err = s.UpdateRollout(ctx, "ro-none", store.RolloutDraft, 0, store.Rollout{State: store.RolloutCancelled}, at(4*time.Minute))
	wantErr(t, "update of a missing rollout", err, store.ErrNotFound)
	if err := s.UpdateRollout(ctx, "ro-1", store.RolloutRunning, 0,
		store.Rollout{State: store.RolloutPaused, Stage: 1, AckFailed: 3, Reason: "failure threshold crossed"}, at(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	want.State, want.Stage, want.AckFailed, want.Reason, want.UpdatedAt = store.RolloutPaused, 1, 3, "failure threshold crossed", at(5*time.Minute)
	want.Eligible, want.Target = 0, 0
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("after UpdateRollout (-want +got):\n%s", diff)
	}

	second := rolloutRecord("ro-2")
	second.CreatedAt = at(time.Hour)
	second.State = store.RolloutCompleted
	if err := s.CreateRollout(ctx, second); err != nil {
		t.Fatal(err)
	}
	list, err := s.ListRollouts(ctx, "", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "ro-2" || list[1].ID != "ro-1" {
		t.Errorf("ListRollouts = %v, want ro-2, ro-1 (newest first)", list)
	}
	list, err = s.ListRollouts(ctx, "acme/router", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "ro-1" {
		t.Errorf("ListRollouts(active) = %v, want ro-1", list)
	}
	list, err = s.ListRollouts(ctx, "acme/other", false, 0)
	if err != nil || len(list) != 0 {
		t.Errorf("ListRollouts(other product) = %v, %v", list, err)
	}
}

// testOneActiveRollout proves the store enforces that a device is in at
// most one active rollout per product, even under concurrent assignment.
func testOneActiveRollout(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	r1 := rolloutFixture(t, s, 2)
	r2 := rolloutRecord("ro-2")
	r2.CreatedAt = at(time.Hour)
	for _, r := range []store.Rollout{r1, r2} {
		if err := s.CreateRollout(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dev := device(0).ID
	assign := func(ro string, stage int) error {
		return s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: ro, DeviceID: dev, Stage: stage,
			State: store.RolloutDeviceAssigned, AssignedAt: at(10 * time.Minute)})
	}
	wantErr(t, "assign to a draft rollout", assign("ro-1", 0), store.ErrConflict)
	running(t, s, "ro-1")
	running(t, s, "ro-2")

	// Concurrent assignments to both rollouts: exactly one wins.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = assign([]string{"ro-1", "ro-2"}[i%2], 0)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else {
			wantErr(t, "second active assignment", err, store.ErrExists)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent assignments succeeded, want exactly 1", won)
	}
	held, err := s.HeldDevices(ctx, "acme/router")
	if err != nil || len(held) != 1 || held[dev] == "" {
		t.Fatalf("HeldDevices = %v, %v", held, err)
	}
	holder := held[dev]
	free := map[string]string{"ro-1": "ro-2", "ro-2": "ro-1"}[holder]

	rd, ro, err := s.DeviceAssignment(ctx, dev)
	if err != nil || ro.ID != holder || rd.State != store.RolloutDeviceAssigned || rd.Stage != 0 {
		t.Fatalf("DeviceAssignment = %+v, %s, %v", rd, ro.ID, err)
	}
	_, _, err = s.DeviceAssignment(ctx, device(1).ID)
	wantErr(t, "unassigned device", err, store.ErrNotFound)

	// Completing the holder frees the device for the other rollout, whose
	// assignment is then the device's current one.
	if err := s.UpdateRollout(ctx, holder, store.RolloutRunning, 0, store.Rollout{State: store.RolloutCompleted, Reason: "done"}, at(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: free, DeviceID: dev, State: store.RolloutDeviceAssigned, AssignedAt: at(30 * time.Minute)}); err != nil {
		t.Fatalf("assign after the first rollout completed: %v", err)
	}
	_, ro, err = s.DeviceAssignment(ctx, dev)
	if err != nil || ro.ID != free {
		t.Fatalf("DeviceAssignment after reassignment = %s, %v; want %s", ro.ID, err, free)
	}
	// A cancelled rollout assigns nothing: the completed one shows again.
	if err := s.UpdateRollout(ctx, free, store.RolloutRunning, 0, store.Rollout{State: store.RolloutCancelled, Reason: "cancel"}, at(40*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, ro, err = s.DeviceAssignment(ctx, dev)
	if err != nil || ro.ID != holder {
		t.Fatalf("DeviceAssignment after cancel = %s, %v; want %s", ro.ID, err, holder)
	}
	held, err = s.HeldDevices(ctx, "acme/router")
	if err != nil || len(held) != 0 {
		t.Fatalf("HeldDevices after completion and cancel = %v, %v", held, err)
	}

	// A device of another product is refused.
	d := device(9)
	d.Product = "acme/other"
	mustCreate(t, s, d)
	r3 := rolloutRecord("ro-3")
	if err := s.CreateRollout(ctx, r3); err != nil {
		t.Fatal(err)
	}
	running(t, s, "ro-3")
	err = s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: "ro-3", DeviceID: d.ID, State: store.RolloutDeviceAssigned, AssignedAt: at(time.Hour)})
	wantErr(t, "device of another product", err, store.ErrConflict)
	err = s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: "ro-3", DeviceID: "dev-missing", State: store.RolloutDeviceAssigned, AssignedAt: at(time.Hour)})
	wantErr(t, "missing device", err, store.ErrNotFound)
}

func testRolloutProgress(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	r := rolloutFixture(t, s, 6)
	if err := s.CreateRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	running(t, s, r.ID)
	for i := range 6 {
		if i == 3 {
			if err := s.UpdateRollout(ctx, r.ID, store.RolloutRunning, 0, store.Rollout{State: store.RolloutRunning, Stage: 1,
				Eligible: 100, Target: 100}, at(12*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		err := s.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: r.ID, DeviceID: device(i).ID, Stage: i / 3,
			State: store.RolloutDeviceAssigned, AssignedAt: at(time.Duration(10+i) * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
	}
	upd := func(i int, state, reason string, when time.Duration) {
		t.Helper()
		if err := s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID, DeviceID: device(i).ID,
			State: state, Reason: reason, Now: at(when)}); err != nil {
			t.Fatal(err)
		}
	}
	upd(0, store.RolloutDeviceSucceeded, "", time.Hour)
	upd(1, store.RolloutDeviceFailed, "health_check_failed", time.Hour)
	upd(2, store.RolloutDeviceInProgress, "", time.Hour)
	upd(3, store.RolloutDeviceFailed, "health_check_failed", time.Hour)
	wantErr(t, "update of an unassigned device", s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID,
		DeviceID: device(7).ID, State: store.RolloutDeviceFailed, Now: at(time.Hour)}), store.ErrNotFound)
	wantErr(t, "bad device state", s.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: r.ID,
		DeviceID: device(0).ID, State: "great", Now: at(time.Hour)}), store.ErrInvalid)

	counts, err := s.RolloutCounts(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.RolloutCount{
		{Stage: 0, State: "assigned", N: 1}, // in progress
		{Stage: 0, State: "failed", Reason: "health_check_failed", N: 1},
		{Stage: 0, State: "succeeded", N: 1},
		{Stage: 1, State: "assigned", N: 2},
		{Stage: 1, State: "failed", Reason: "health_check_failed", N: 1},
	}
	if diff := cmp.Diff(want, counts, cmpOpts...); diff != "" {
		t.Errorf("RolloutCounts (-want +got):\n%s", diff)
	}
	// Devices 4 and 5 were assigned at 14 and 15 minutes and never
	// reported; device 2 reported at one hour.
	over, err := s.OverdueRolloutDevices(ctx, r.ID, at(30*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range over {
		got = append(got, d.DeviceID)
	}
	if diff := cmp.Diff([]string{device(4).ID, device(5).ID}, got, cmpOpts...); diff != "" {
		t.Errorf("OverdueRolloutDevices (-want +got):\n%s", diff)
	}
	over, err = s.OverdueRolloutDevices(ctx, r.ID, at(2*time.Hour), 0)
	if err != nil || len(over) != 3 {
		t.Errorf("OverdueRolloutDevices later = %d devices, %v; want 3", len(over), err)
	}
}

func testDeviceTags(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustCreate(t, s, device(1))
	if err := s.SetDeviceTags(ctx, device(1).ID, []string{"canary", "eu"}); err != nil {
		t.Fatal(err)
	}
	d, err := s.GetDevice(ctx, device(1).ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"canary", "eu"}, d.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	wantErr(t, "duplicate tags", s.SetDeviceTags(ctx, device(1).ID, []string{"a", "a"}), store.ErrInvalid)
	many := make([]string, store.MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	wantErr(t, "too many tags", s.SetDeviceTags(ctx, device(1).ID, many), store.ErrInvalid)
	wantErr(t, "missing device", s.SetDeviceTags(ctx, "dev-missing", nil), store.ErrNotFound)
	if err := s.SetDeviceTags(ctx, device(1).ID, nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDevice(ctx, device(1).ID); len(d.Tags) != 0 {
		t.Errorf("tags after clearing = %v", d.Tags)
	}
}

// testDirectorState proves director versions only move forward, once per
// version, even with concurrent writers.
func testDirectorState(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	mustCreate(t, s, device(1))
	id := device(1).ID
	_, err := s.GetDirectorState(ctx, id)
	wantErr(t, "no state yet", err, store.ErrNotFound)
	st := store.DirectorState{DeviceID: id, Version: 1, Assignment: "ro-1:abc", TimestampExpires: at(time.Hour),
		Expires: at(24 * time.Hour), UpdatedAt: at(0)}
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.PutDirectorState(ctx, st, 0) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			wantErr(t, "concurrent first version", err, store.ErrConflict)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent first versions stored, want 1", ok)
	}
	got, err := s.GetDirectorState(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("GetDirectorState (-want +got):\n%s", diff)
	}
	next := st
	next.Version, next.Assignment = 3, ""
	wantErr(t, "stale previous version", s.PutDirectorState(ctx, next, 2), store.ErrConflict)
	wantErr(t, "version not increasing", s.PutDirectorState(ctx, st, 1), store.ErrInvalid)
	if err := s.PutDirectorState(ctx, next, 1); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "replayed update", s.PutDirectorState(ctx, next, 1), store.ErrConflict)
	other := st
	other.DeviceID = "dev-missing"
	wantErr(t, "missing device", s.PutDirectorState(ctx, other, 0), store.ErrNotFound)
}
