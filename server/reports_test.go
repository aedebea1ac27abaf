package server

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// TestResentReportIsRecordedOnce: the agent resends a status report until
// it sees a 2xx, so the server may get one report twice (its first answer
// lost). Over mTLS on loopback, a report posted twice with its ID is
// acknowledged with 204 both times and recorded once: one event, one
// audit entry, one rollout success. A report whose first attempt stopped
// after its event was stored (a crash before the rollout update) is
// finished by the resend. Reports without an ID (older agents) are all
// recorded.
func TestResentReportIsRecordedOnce(t *testing.T) {
	// The real audit path: events attached to the store write that
	// records the report, counted in the outbox.
	re := startRolloutServer(t, func(c *Config) { c.Audit = AuditOutbox(c.DB, slog.New(slog.DiscardHandler)) })
	re.register("1.1.0", EnvDev)
	d1, d2 := re.device(), re.device()
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: "canary:2,100%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	for _, d := range []testDevice{d1, d2} {
		if re.checkin(d).Assignment == nil {
			t.Fatalf("device %s not assigned", d.id)
		}
	}
	post := func(d testDevice, r deviceapi.StatusReport) {
		t.Helper()
		resp, data := re.do(d.client, "POST", deviceapi.PathStatus, "", r)
		wantStatus(t, resp, data, http.StatusNoContent)
	}
	count := func(d testDevice, kind string) (events, audits int) {
		t.Helper()
		evs, err := re.db.ListEvents(t.Context(), d.id, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == kind {
				events++
			}
		}
		out, err := re.db.ListAuditOutbox(t.Context(), store.MaxListLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range out {
			if a.Action == AuditDeviceUpdated && a.Details["device"] == d.id {
				audits++
			}
		}
		return events, audits
	}

	committed := deviceapi.StatusReport{ID: strings.Repeat("5a", 16), Kind: deviceapi.StateCommitted, Version: "1.1.0", Message: "health check passed"}
	post(d1, committed)
	post(d1, committed)
	if ev, au := count(d1, deviceapi.StateCommitted); ev != 1 || au != 1 {
		t.Errorf("a report posted twice: %d events, %d audit entries, want 1 and 1", ev, au)
	}
	if v := re.view(ro.ID); v.Total.Succeeded != 1 {
		t.Errorf("a report posted twice: %d rollout successes, want 1", v.Total.Succeeded)
	}
	// A resent report does not move the device back: after a newer
	// report, the old one again leaves the newer state.
	downloading := deviceapi.StatusReport{ID: strings.Repeat("6b", 16), Kind: deviceapi.StateDownloading, Version: "1.2.0"}
	post(d1, downloading)
	post(d1, deviceapi.StatusReport{ID: strings.Repeat("7c", 16), Kind: deviceapi.StateFailed, Version: "1.2.0", Message: "payload: hash mismatch"})
	post(d1, downloading)
	if got, err := re.db.GetDevice(t.Context(), d1.id); err != nil || got.State != deviceapi.StateFailed {
		t.Errorf("after a resent older report: state %q (%v), want %q", got.State, err, deviceapi.StateFailed)
	}

	// The first attempt of d2's report stored its event and stopped
	// before the rollout update (the server was killed in between).
	first := deviceapi.StatusReport{ID: strings.Repeat("8d", 16), Kind: deviceapi.StateCommitted, Version: "1.1.0", Message: "health check passed"}
	if _, err := re.db.AddEvent(t.Context(), store.Event{DeviceID: d2.id, Time: re.clock.Now(), Kind: first.Kind, Version: first.Version, Message: first.Message, ReportID: first.ID}); err != nil {
		t.Fatal(err)
	}
	if v := re.view(ro.ID); v.Total.Succeeded != 1 {
		t.Fatalf("before the resend: %d rollout successes, want 1", v.Total.Succeeded)
	}
	post(d2, first)
	if v := re.view(ro.ID); v.Total.Succeeded != 2 {
		t.Errorf("the resend did not finish the rollout update: %d successes, want 2", v.Total.Succeeded)
	}
	if ev, _ := count(d2, deviceapi.StateCommitted); ev != 1 {
		t.Errorf("the resend added an event: %d, want 1", ev)
	}

	// Without an ID every copy is recorded, as before report IDs.
	old := deviceapi.StatusReport{Kind: deviceapi.StateVerified, Version: "1.1.0"}
	post(d2, old)
	post(d2, old)
	if ev, _ := count(d2, deviceapi.StateVerified); ev != 2 {
		t.Errorf("two reports without an ID: %d events, want 2", ev)
	}
	// A malformed ID is refused.
	resp, data := re.do(d2.client, "POST", deviceapi.PathStatus, "", deviceapi.StatusReport{ID: "NOT-HEX", Kind: deviceapi.StateVerified})
	wantStatus(t, resp, data, http.StatusBadRequest)
}
