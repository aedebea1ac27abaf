package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

// testReportIDsRecordedOnce: a device's status report ID is recorded once.
// A resent report (same device, same ID) changes nothing, not even the
// device's state, and fails with ErrDuplicateReport; events without an ID
// and the same ID of another device are recorded.
func testReportIDs(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	d, other := device(1), device(2)
	mustCreate(t, s, d, other)
	id1, id2 := strings.Repeat("a1", 16), strings.Repeat("b2", 16)
	add := func(dev, kind, version, rid string, when time.Duration) (int64, error) {
		return s.AddEvent(ctx, store.Event{DeviceID: dev, Time: at(when), Kind: kind, Version: version, ReportID: rid})
	}
	if _, err := add(d.ID, store.StateDownloading, "2.0.0", id1, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := add(d.ID, store.StateCommitted, "2.0.0", id2, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The downloading report again: refused, and the device stays
	// committed (an old report must not move it back).
	_, err := add(d.ID, store.StateDownloading, "2.0.0", id1, 2*time.Minute)
	wantErr(t, "resent report", err, store.ErrDuplicateReport)
	wantErr(t, "resent report", err, store.ErrExists)
	// Even with other content: the ID decides.
	_, err = add(d.ID, store.StateFailed, "3.0.0", id2, 3*time.Minute)
	wantErr(t, "resent report ID with other content", err, store.ErrDuplicateReport)
	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateCommitted || got.CurrentVersion != "2.0.0" || got.LastError != "" {
		t.Errorf("after duplicates: state %q version %q error %q, want committed 2.0.0 and no error", got.State, got.CurrentVersion, got.LastError)
	}
	// Another device's report may carry the same ID; events without one
	// are all recorded.
	if _, err := add(other.ID, store.StateDownloading, "2.0.0", id1, 0); err != nil {
		t.Errorf("same report ID of another device: %v", err)
	}
	for i := range 2 {
		if _, err := add(d.ID, "note", "", "", time.Duration(10+i)*time.Minute); err != nil {
			t.Errorf("event without report ID #%d: %v", i, err)
		}
	}
	evs, err := s.ListEvents(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ReportID)
	}
	if want := []string{"", "", id2, id1}; strings.Join(ids, ",") != strings.Join(want, ",") {
		t.Errorf("report IDs of the history, newest first: %q, want %q", ids, want)
	}
	for _, bad := range []string{"A1" + id1[2:], id1[1:], id1 + "0", "g" + id1[1:], " " + id1[1:]} {
		_, err := add(d.ID, "note", "", bad, 0)
		wantErr(t, "report ID "+bad, err, store.ErrInvalid)
	}

	// Concurrent copies of one report: exactly one is recorded.
	id3 := strings.Repeat("c3", 16)
	const copies = 8
	errs := make(chan error, copies)
	start := make(chan struct{})
	for i := range copies {
		go func() {
			<-start
			_, err := add(d.ID, store.StateRolledBack, "2.1.0", id3, time.Duration(20+i)*time.Minute)
			errs <- err
		}()
	}
	close(start)
	recorded := 0
	for range copies {
		switch err := <-errs; {
		case err == nil:
			recorded++
		case !errors.Is(err, store.ErrDuplicateReport):
			t.Errorf("concurrent copy: %v", err)
		}
	}
	if recorded != 1 {
		t.Errorf("%d concurrent copies of one report recorded %d times, want once", copies, recorded)
	}
	evs, err = s.ListEvents(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(evs); n != 5 {
		t.Errorf("history holds %d events, want 5", n)
	}
}
