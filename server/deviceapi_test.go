package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
)

// TestCheckinSlotAndStateReachTheStore: over mTLS on loopback, every state
// and both slots a device reports at check-in are stored, and shown in the
// device's own record and the admin API (the slot used to be validated and
// then dropped).
func TestCheckinSlotAndStateReachTheStore(t *testing.T) {
	e := startServer(t, nil)
	cert, er := e.enroll()
	c := e.client(&cert)
	admin := e.adminToken(RoleViewer)
	for i, state := range deviceapi.States() {
		slot := []string{deviceapi.SlotA, deviceapi.SlotB}[i%2]
		resp, data := e.do(c, "POST", deviceapi.PathCheckin, "", deviceapi.CheckinRequest{CurrentVersion: "1.0.0", SecurityCounter: 2, State: state, Slot: slot})
		wantStatus(t, resp, data, http.StatusOK)
		d, err := e.db.GetDevice(t.Context(), er.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != state || d.Slot != slot {
			t.Fatalf("stored state %q slot %q, want %q %q", d.State, d.Slot, state, slot)
		}
		for _, get := range []struct{ path, bearer string }{
			{deviceapi.PathDevice, ""}, {"/api/v1/admin/devices/" + er.DeviceID, admin},
		} {
			cl := c
			if get.bearer != "" {
				cl = e.client(nil)
			}
			resp, data := e.do(cl, "GET", get.path, get.bearer, nil)
			wantStatus(t, resp, data, http.StatusOK)
			var got Device
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if got.State != state || got.Slot != slot {
				t.Fatalf("GET %s: state %q slot %q, want %q %q", get.path, got.State, got.Slot, state, slot)
			}
		}
	}
	// A check-in without a slot (an agent that does not know it) makes it
	// unknown rather than keeping a stale one.
	resp, data := e.do(c, "POST", deviceapi.PathCheckin, "", deviceapi.CheckinRequest{State: deviceapi.StateIdle})
	wantStatus(t, resp, data, http.StatusOK)
	if d, err := e.db.GetDevice(t.Context(), er.DeviceID); err != nil || d.Slot != "" {
		t.Fatalf("slot after a check-in without one: %+v, %v", d, err)
	}
}

// TestEveryDeviceAPIStateIsAcceptedByTheServer guards against the two sides
// drifting apart again: each deviceapi state is a valid check-in state and
// each kind a valid status report, and the server stores it as the device's
// state; anything else is refused and changes nothing.
func TestEveryDeviceAPIStateIsAcceptedByTheServer(t *testing.T) {
	e := startServer(t, nil)
	cert, er := e.enroll()
	c := e.client(&cert)
	stored := func() store.Device {
		t.Helper()
		d, err := e.db.GetDevice(t.Context(), er.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, state := range deviceapi.States() {
		resp, data := e.do(c, "POST", deviceapi.PathCheckin, "", deviceapi.CheckinRequest{State: state, Slot: deviceapi.SlotA})
		wantStatus(t, resp, data, http.StatusOK)
		if got := stored().State; got != state {
			t.Errorf("check-in with state %q stored %q", state, got)
		}
		if !deviceapi.ValidKind(state) {
			continue
		}
		resp, data = e.do(c, "POST", deviceapi.PathStatus, "", deviceapi.StatusReport{Kind: state, Version: "1.1.0"})
		wantStatus(t, resp, data, http.StatusNoContent)
		if got := stored().State; got != state {
			t.Errorf("status report %q stored state %q", state, got)
		}
	}
	before := stored()
	for _, bad := range []struct {
		path string
		body any
	}{
		{deviceapi.PathCheckin, deviceapi.CheckinRequest{State: "trial"}},
		{deviceapi.PathCheckin, deviceapi.CheckinRequest{State: "IDLE"}},
		{deviceapi.PathCheckin, deviceapi.CheckinRequest{State: deviceapi.StateIdle, Slot: "A"}},
		{deviceapi.PathCheckin, deviceapi.CheckinRequest{State: deviceapi.StateIdle, Slot: "c"}},
		{deviceapi.PathStatus, deviceapi.StatusReport{Kind: deviceapi.StateIdle}},
		{deviceapi.PathStatus, deviceapi.StatusReport{Kind: "reboot_pending"}},
	} {
		resp, data := e.do(c, "POST", bad.path, "", bad.body)
		wantStatus(t, resp, data, http.StatusBadRequest)
	}
	if after := stored(); after.State != before.State || after.Slot != before.Slot {
		t.Fatalf("refused reports changed the device: %+v -> %+v", before, after)
	}
}

// TestMarkupHeavyReportsAreNotRefusedAsTooLarge: a valid status message or
// last error at its length limit made of '<' (which encoding/json escapes to
// six bytes, \u003c) must fit the request size limit; a health check that
// prints HTML used to get its report refused with 413 and lost.
func TestMarkupHeavyReportsAreNotRefusedAsTooLarge(t *testing.T) {
	e := startServer(t, nil)
	cert, er := e.enroll()
	c := e.client(&cert)
	msg := strings.Repeat("<", deviceapi.MaxMessageLength)
	version := strings.Repeat(">", deviceapi.MaxStringLength)
	resp, data := e.do(c, "POST", deviceapi.PathStatus, "", deviceapi.StatusReport{Kind: deviceapi.StateFailed, Version: version, Message: msg})
	wantStatus(t, resp, data, http.StatusNoContent)
	resp, data = e.do(c, "POST", deviceapi.PathCheckin, "", deviceapi.CheckinRequest{CurrentVersion: version, State: deviceapi.StateIdle, LastError: msg})
	wantStatus(t, resp, data, http.StatusOK)
	if d, err := e.db.GetDevice(t.Context(), er.DeviceID); err != nil || d.LastError != msg || d.CurrentVersion != version {
		t.Fatalf("stored device: %v, last error %d bytes, version %d bytes", err, len(d.LastError), len(d.CurrentVersion))
	}
}

// TestDeviceAPILimitsFitTheStore: whatever the device API accepts, the store
// can hold.
func TestDeviceAPILimitsFitTheStore(t *testing.T) {
	if deviceapi.MaxStringLength > store.MaxStringLen || deviceapi.MaxMessageLength > store.MaxMessageLen ||
		uint64(deviceapi.MaxSecurityCounter) > uint64(store.MaxSecurityCounter) {
		t.Fatalf("deviceapi limits (%d, %d, %d) exceed the store's (%d, %d, %d)",
			deviceapi.MaxStringLength, deviceapi.MaxMessageLength, uint64(deviceapi.MaxSecurityCounter),
			store.MaxStringLen, store.MaxMessageLen, uint64(store.MaxSecurityCounter))
	}
	for _, s := range deviceapi.States() {
		if !store.ValidState(s) {
			t.Errorf("the store refuses device state %q", s)
		}
	}
}
