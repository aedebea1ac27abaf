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

func auditEvent(action, device string) store.AuditEvent {
	return store.AuditEvent{Time: at(time.Minute), Actor: device, Action: action,
		Details: map[string]string{"device": device, "release": "acme/router@2.0.0"}}
}

// outbox returns the whole outbox, lowest ID first.
func outbox(t *testing.T, s store.Store) []store.AuditOutboxEntry {
	t.Helper()
	es, err := s.ListAuditOutbox(context.Background(), store.MaxAuditOutboxBatch)
	if err != nil {
		t.Fatalf("ListAuditOutbox: %v", err)
	}
	return es
}

func outboxActions(t *testing.T, s store.Store) []string {
	t.Helper()
	var out []string
	for _, e := range outbox(t, s) {
		out = append(out, e.Action+" "+e.Actor)
	}
	return out
}

// testAuditCommitsWithItsChange: an event attached to a write commits with
// the write's change or not at all.
func testAuditCommitsWithItsChange(t *testing.T, newDSN NewDSN) {
	dsn := newDSN(t)
	s := open(t, dsn)
	ctx := context.Background()

	// The transaction fails at the outbox insert, after the device row was
	// written: neither the device nor the event survives.
	raw := rawDB(t, dsn)
	if _, err := raw.Exec(`ALTER TABLE audit_outbox RENAME TO audit_outbox_away`); err != nil {
		t.Fatal(err)
	}
	d0 := device(0)
	if err := s.CreateDevice(store.WithAudit(ctx, auditEvent("device.enrolled", d0.ID)), d0); err == nil {
		t.Fatal("CreateDevice succeeded although its audit event could not be written")
	}
	if _, err := raw.Exec(`ALTER TABLE audit_outbox_away RENAME TO audit_outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDevice(ctx, d0.ID); err == nil {
		t.Fatal("the device of a failed transaction was stored")
	}
	if got := outbox(t, s); len(got) != 0 {
		t.Fatalf("outbox after a failed transaction: %v", got)
	}

	// An invalid event fails the write too.
	bad := auditEvent("Device Enrolled", d0.ID)
	wantErr(t, "CreateDevice with an invalid audit event", s.CreateDevice(store.WithAudit(ctx, bad), d0), store.ErrInvalid)
	if _, err := s.GetDevice(ctx, d0.ID); err == nil {
		t.Fatal("the device of a write with an invalid audit event was stored")
	}

	// Commit: both.
	if err := s.CreateDevice(store.WithAudit(ctx, auditEvent("device.enrolled", d0.ID)), d0); err != nil {
		t.Fatal(err)
	}
	got := outbox(t, s)
	if len(got) != 1 {
		t.Fatalf("outbox after a committed write: %v, want 1 entry", got)
	}
	want := auditEvent("device.enrolled", d0.ID)
	if diff := cmp.Diff(want, got[0].AuditEvent, cmpOpts...); diff != "" {
		t.Errorf("stored audit event (-want +got):\n%s", diff)
	}

	// A write that fails (duplicate) writes no event; one reused context
	// writes its events once, with the first write that commits.
	if err := s.CreateDevice(store.WithAudit(ctx, auditEvent("device.enrolled", d0.ID)), d0); err == nil {
		t.Fatal("duplicate device created")
	}
	d1 := device(1)
	actx := store.WithAudit(ctx, auditEvent("device.enrolled", d1.ID))
	if err := s.Checkin(actx, d1.ID, store.DeviceReport{CurrentVersion: "1", State: store.StateIdle}, at(time.Hour)); err == nil {
		t.Fatal("check-in of a missing device succeeded")
	}
	mustCreateCtx(t, actx, s, d1)
	if err := s.Checkin(actx, d1.ID, store.DeviceReport{CurrentVersion: "1", State: store.StateIdle}, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEvent(actx, store.Event{DeviceID: d1.ID, Time: at(time.Hour), Kind: store.StateCommitted, Version: "2"}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"device.enrolled " + d0.ID, "device.enrolled " + d1.ID}, outboxActions(t, s)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}

	// Events attached to a scope later ride on the next write.
	sctx := store.WithAudit(ctx)
	if !store.AttachAudit(sctx, auditEvent("device.updated", d1.ID)) {
		t.Fatal("AttachAudit found no scope")
	}
	if store.AttachAudit(ctx, auditEvent("device.updated", d1.ID)) {
		t.Fatal("AttachAudit found a scope in a plain context")
	}
	if _, err := s.AddEvent(sctx, store.Event{DeviceID: d1.ID, Time: at(time.Hour), Kind: store.StateCommitted, Version: "2"}); err != nil {
		t.Fatal(err)
	}
	// A single-statement write through the consume path (UPDATE ... RETURNING).
	tok := store.EnrollmentToken{ID: "tok", Hash: hash("tok"), UsesLeft: 1, ExpiresAt: at(time.Hour), CreatedAt: at(0)}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	cctx := store.WithAudit(ctx, auditEvent("device.enrolled", "dev-tok"))
	if _, err := s.ConsumeEnrollmentToken(cctx, hash("tok"), at(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeEnrollmentToken(cctx, hash("tok"), at(time.Minute)); err == nil {
		t.Fatal("token consumed twice")
	}
	if diff := cmp.Diff([]string{"device.enrolled " + d0.ID, "device.enrolled " + d1.ID, "device.updated " + d1.ID, "device.enrolled dev-tok"}, outboxActions(t, s)); diff != "" {
		t.Errorf("outbox (-want +got):\n%s", diff)
	}
	select {
	case <-s.AuditOutboxNotify():
	default:
		t.Error("no outbox notification after commits")
	}

	// SetAuditDetail fills in a detail of the events not written yet, and
	// of no others.
	dctx := store.WithAudit(ctx, auditEvent("device.updated", d0.ID))
	store.SetAuditDetail(dctx, "token_id", "tok-1")
	store.SetAuditDetail(ctx, "token_id", "no-scope")
	if err := s.Checkin(dctx, d0.ID, store.DeviceReport{CurrentVersion: "1", State: store.StateIdle}, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	store.SetAuditDetail(dctx, "token_id", "tok-2")
	es := outbox(t, s)
	if last := es[len(es)-1]; last.Action != "device.updated" || last.Details["token_id"] != "tok-1" {
		t.Errorf("last outbox entry %+v, want device.updated with token_id tok-1", last)
	}
}

func mustCreateCtx(t *testing.T, ctx context.Context, s store.Store, d store.Device) {
	t.Helper()
	if err := s.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// testAuditOutboxDrain: entries come out lowest ID first and are deleted
// one by one; concurrent writers each write their own events once.
func testAuditOutboxDrain(t *testing.T, newDSN NewDSN) {
	s := fresh(t, newDSN)
	ctx := context.Background()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ev := store.AuditEvent{Time: at(time.Second), Actor: fmt.Sprintf("w%d", w), Action: "auth.logout",
					Details: map[string]string{"i": fmt.Sprint(i)}}
				if err := s.AppendAudit(ctx, ev); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := s.CountAuditOutbox(ctx)
	if err != nil || n != writers*each {
		t.Fatalf("CountAuditOutbox = %d, %v; want %d", n, err, writers*each)
	}
	seen := map[string]bool{}
	var last int64
	for {
		batch, err := s.ListAuditOutbox(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		for _, e := range batch {
			if e.ID <= last {
				t.Fatalf("outbox ID %d after %d", e.ID, last)
			}
			last = e.ID
			k := e.Actor + "/" + e.Details["i"]
			if seen[k] {
				t.Fatalf("event %s twice", k)
			}
			seen[k] = true
		}
		ids := []int64{batch[0].ID, batch[0].ID + 1_000_000} // one absent
		for _, e := range batch[1:] {
			ids = append(ids, e.ID)
		}
		if n, err := s.DeleteAuditOutbox(ctx, ids); err != nil || n != int64(len(batch)) {
			t.Fatalf("DeleteAuditOutbox(%v) = %d, %v; want %d", ids, n, err, len(batch))
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("drained %d events, want %d", len(seen), writers*each)
	}
	if n, err := s.DeleteAuditOutbox(ctx, []int64{last}); err != nil || n != 0 {
		t.Fatalf("second DeleteAuditOutbox(%d) = %d, %v; want 0", last, n, err)
	}
	if _, err := s.DeleteAuditOutbox(ctx, make([]int64, store.MaxAuditOutboxBatch+1)); err == nil {
		t.Error("DeleteAuditOutbox accepted more than MaxAuditOutboxBatch IDs")
	}
	for _, bad := range []store.AuditEvent{
		{Actor: "a", Action: "x.y"},
		{Time: at(0), Action: "x.y"},
		{Time: at(0), Actor: "a", Action: "X"},
		{Time: at(0), Actor: "a", Action: "x.y", Details: map[string]string{"K": "v"}},
		{Time: at(0), Actor: "a", Action: "x.y", Details: map[string]string{"k": "line\nbreak"}},
	} {
		wantErr(t, fmt.Sprintf("AppendAudit(%+v)", bad), s.AppendAudit(ctx, bad), store.ErrInvalid)
	}
	if _, err := s.ListAuditOutbox(ctx, store.MaxAuditOutboxBatch+1); err == nil {
		t.Error("ListAuditOutbox accepted a limit over MaxAuditOutboxBatch")
	}
}
