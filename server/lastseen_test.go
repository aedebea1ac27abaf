package server

import (
	"testing"
	"time"
)

// TestUnchangedCheckinsBatchLastSeen: over TLS, a check-in that changes
// the device's stated state is written at once; one that states what the
// store holds only moves last_seen in the batch, which a flush writes
// (forward only).
func TestUnchangedCheckinsBatchLastSeen(t *testing.T) {
	re := startRolloutServer(t, nil)
	d := re.device()
	lastSeen := func() time.Time {
		t.Helper()
		dev, err := re.db.GetDevice(t.Context(), d.id)
		if err != nil {
			t.Fatal(err)
		}
		return dev.LastSeen
	}
	re.checkin(d) // enrolled → idle on 1.0.0: a change, written at once
	first := lastSeen()
	if first.IsZero() {
		t.Fatal("the first check-in did not record last_seen")
	}
	re.clock.Advance(time.Minute)
	re.checkin(d) // the same state: batched
	if got := lastSeen(); !got.Equal(first) {
		t.Fatalf("an unchanged check-in wrote last_seen %v at once, want %v until the flush", got, first)
	}
	re.srv.seen.mu.Lock()
	batched := re.srv.seen.seen[d.id]
	re.srv.seen.mu.Unlock()
	if !batched.After(first) {
		t.Fatalf("the batch holds %v for the device, want a time after %v", batched, first)
	}
	if err := re.srv.seen.flush(t.Context(), re.db); err != nil {
		t.Fatal(err)
	}
	if got := lastSeen(); !got.Equal(batched.UTC().Truncate(time.Microsecond)) {
		t.Errorf("after the flush last_seen is %v, want %v", got, batched)
	}
	// A flush never moves last_seen back.
	re.srv.seen.note(d.id, first.Add(-time.Hour))
	if err := re.srv.seen.flush(t.Context(), re.db); err != nil {
		t.Fatal(err)
	}
	if got := lastSeen(); got.Before(batched.Truncate(time.Microsecond)) {
		t.Errorf("an older batched time moved last_seen back to %v", got)
	}
}
