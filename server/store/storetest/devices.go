package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
)

func testDeviceRoundTrip(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	full := device(1)
	full.LastSeen = at(time.Minute)
	full.LastError = "line one\nline two\ttabbed — ünïcode"
	full.HWRev = 1<<32 - 1
	full.SecurityCounter = store.MaxSecurityCounter
	full.Slot = deviceapi.SlotB
	full.Tags = []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"}
	minimal := store.Device{ID: "dev-min", Model: "m", Product: "p", CertSerial: "01",
		CertFingerprint: strings.Repeat("ab", 32), EnrolledAt: at(0)}
	mustCreate(t, s, full, minimal)

	minimalWant := minimal
	minimalWant.State = store.StateIdle // empty state defaults to idle
	for _, want := range []store.Device{full, minimalWant} {
		got, err := s.GetDevice(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("GetDevice(%s) (-want +got):\n%s", want.ID, diff)
		}
		got, err = s.GetDeviceByCertSerial(ctx, want.CertSerial)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("GetDeviceByCertSerial(%s) (-want +got):\n%s", want.CertSerial, diff)
		}
	}
	_, err := s.GetDevice(ctx, "dev-unknown")
	wantErr(t, "unknown id", err, store.ErrNotFound)
	_, err = s.GetDeviceByCertSerial(ctx, "ffff")
	wantErr(t, "unknown serial", err, store.ErrNotFound)
	_, err = s.GetDevice(ctx, "../etc/passwd")
	wantErr(t, "bad id", err, store.ErrInvalid)
	_, err = s.GetDeviceByCertSerial(ctx, "' OR 1=1 --")
	wantErr(t, "bad serial", err, store.ErrInvalid)
}

func testDeviceDuplicates(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	d := device(1)
	mustCreate(t, s, d)
	for _, tc := range []struct {
		name   string
		mutate func(*store.Device)
	}{
		{"same id", func(x *store.Device) { x.ID = d.ID }},
		{"same cert serial", func(x *store.Device) { x.CertSerial = d.CertSerial }},
		{"same cert fingerprint", func(x *store.Device) { x.CertFingerprint = d.CertFingerprint }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := device(2)
			tc.mutate(&x)
			wantErr(t, "create", s.CreateDevice(ctx, x), store.ErrExists)
		})
	}
	if got, err := s.GetDevice(ctx, d.ID); err != nil || got.CertSerial != d.CertSerial {
		t.Fatalf("original device changed: %+v, %v", got, err)
	}
}

func testDeviceValidation(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	long := strings.Repeat("x", store.MaxStringLen+1)
	for _, tc := range []struct {
		name   string
		mutate func(*store.Device)
	}{
		{"empty id", func(d *store.Device) { d.ID = "" }},
		{"long id", func(d *store.Device) { d.ID = strings.Repeat("a", store.MaxIDLen+1) }},
		{"id with slash", func(d *store.Device) { d.ID = "dev/1" }},
		{"id with quote", func(d *store.Device) { d.ID = "dev'1" }},
		{"empty model", func(d *store.Device) { d.Model = "" }},
		{"long model", func(d *store.Device) { d.Model = long }},
		{"empty product", func(d *store.Device) { d.Product = "" }},
		{"long channel", func(d *store.Device) { d.Channel = long }},
		{"control char in product", func(d *store.Device) { d.Product = "acme\x00" }},
		{"newline in version", func(d *store.Device) { d.CurrentVersion = "1.0\n2.0" }},
		{"invalid utf8", func(d *store.Device) { d.Model = "\xff\xfe" }},
		{"too many tags", func(d *store.Device) { d.Tags = make([]string, store.MaxTags+1) }},
		{"empty tag", func(d *store.Device) { d.Tags = []string{""} }},
		{"duplicate tag", func(d *store.Device) { d.Tags = []string{"a", "a"} }},
		{"long tag", func(d *store.Device) { d.Tags = []string{long} }},
		{"unknown state", func(d *store.Device) { d.State = "pwned" }},
		{"unknown slot", func(d *store.Device) { d.Slot = "c" }},
		{"uppercase slot", func(d *store.Device) { d.Slot = "A" }},
		{"long last error", func(d *store.Device) { d.LastError = strings.Repeat("e", store.MaxMessageLen+1) }},
		{"counter too large", func(d *store.Device) { d.SecurityCounter = store.MaxSecurityCounter + 1 }},
		{"empty cert serial", func(d *store.Device) { d.CertSerial = "" }},
		{"uppercase cert serial", func(d *store.Device) { d.CertSerial = "ABCD" }},
		{"short fingerprint", func(d *store.Device) { d.CertFingerprint = "abcd" }},
		{"zero enrolled at", func(d *store.Device) { d.EnrolledAt = time.Time{} }},
		{"enrolled before 1970", func(d *store.Device) { d.EnrolledAt = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := device(1)
			tc.mutate(&d)
			wantErr(t, "CreateDevice", s.CreateDevice(ctx, d), store.ErrInvalid)
		})
	}
	if st, err := s.Stats(ctx); err != nil || st.Devices != 0 {
		t.Fatalf("invalid devices were stored: %+v, %v", st, err)
	}
}

func ids(devs []store.Device) []string {
	var out []string
	for _, d := range devs {
		out = append(out, d.ID)
	}
	return out
}

func testListDevices(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	var all []store.Device
	for i := range 12 {
		d := device(i)
		if i%2 == 1 {
			d.Product = "acme/camera"
			d.Model = "c2"
		}
		if i%3 == 0 {
			d.Channel = "beta"
			d.CurrentVersion = "2.0.0"
		}
		if i == 5 {
			d.State = store.StateFailed
		}
		all = append(all, d)
	}
	mustCreate(t, s, all...)
	for _, tc := range []struct {
		name string
		f    store.DeviceFilter
		want []int
	}{
		{"all", store.DeviceFilter{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"product", store.DeviceFilter{Product: "acme/camera"}, []int{1, 3, 5, 7, 9, 11}},
		{"model", store.DeviceFilter{Model: "x1"}, []int{0, 2, 4, 6, 8, 10}},
		{"channel", store.DeviceFilter{Channel: "beta"}, []int{0, 3, 6, 9}},
		{"version", store.DeviceFilter{Version: "2.0.0"}, []int{0, 3, 6, 9}},
		{"state", store.DeviceFilter{State: store.StateFailed}, []int{5}},
		{"combined", store.DeviceFilter{Product: "acme/camera", Channel: "beta"}, []int{3, 9}},
		{"no match", store.DeviceFilter{Product: "nope"}, nil},
		{"injection is a literal", store.DeviceFilter{Product: "x' OR '1'='1"}, nil},
		{"first page", store.DeviceFilter{Limit: 5}, []int{0, 1, 2, 3, 4}},
		{"second page", store.DeviceFilter{Limit: 5, Offset: 5}, []int{5, 6, 7, 8, 9}},
		{"last page", store.DeviceFilter{Limit: 5, Offset: 10}, []int{10, 11}},
		{"past the end", store.DeviceFilter{Limit: 5, Offset: 100}, nil},
		{"filtered page", store.DeviceFilter{Product: "acme/router", Limit: 2, Offset: 1}, []int{2, 4}},
		{"keyset page", store.DeviceFilter{After: all[4].ID, Limit: 3}, []int{5, 6, 7}},
		{"filtered keyset page", store.DeviceFilter{Product: "acme/camera", After: all[4].ID, Limit: 2}, []int{5, 7}},
		{"keyset past the end", store.DeviceFilter{After: all[11].ID}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListDevices(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, i := range tc.want {
				want = append(want, all[i].ID)
			}
			if diff := cmp.Diff(want, ids(got), cmpOpts...); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			for i, d := range got {
				if diff := cmp.Diff(all[tc.want[i]], d, cmpOpts...); diff != "" {
					t.Errorf("device %s (-want +got):\n%s", d.ID, diff)
				}
			}
		})
	}
	for _, tc := range []struct {
		name string
		f    store.DeviceFilter
	}{
		{"negative limit", store.DeviceFilter{Limit: -1}},
		{"limit too large", store.DeviceFilter{Limit: store.MaxListLimit + 1}},
		{"negative offset", store.DeviceFilter{Offset: -1}},
		{"offset too large", store.DeviceFilter{Offset: store.MaxListOffset + 1}},
		{"long filter", store.DeviceFilter{Model: strings.Repeat("m", store.MaxStringLen+1)}},
		{"bad after", store.DeviceFilter{After: "dev 1"}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			_, err := s.ListDevices(ctx, tc.f)
			wantErr(t, "ListDevices", err, store.ErrInvalid)
		})
	}
}

func testCountDevicesByVersion(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	got, err := s.CountDevicesByVersion(ctx, "")
	if err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	for i, v := range []string{"1.0.0", "1.0.0", "1.1.0", "", "1.1.0", "1.0.0"} {
		d := device(i)
		d.CurrentVersion = v
		if i >= 4 {
			d.Product = "acme/camera"
		}
		mustCreate(t, s, d)
	}
	for _, tc := range []struct {
		product string
		want    map[string]int
	}{
		{"", map[string]int{"1.0.0": 3, "1.1.0": 2, "": 1}},
		{"acme/router", map[string]int{"1.0.0": 2, "1.1.0": 1, "": 1}},
		{"acme/camera", map[string]int{"1.1.0": 1, "1.0.0": 1}},
		{"nope", map[string]int{}},
	} {
		t.Run("product="+tc.product, func(t *testing.T) {
			got, err := s.CountDevicesByVersion(ctx, tc.product)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})
	}
	_, err = s.CountDevicesByVersion(ctx, strings.Repeat("p", store.MaxStringLen+1))
	wantErr(t, "long product", err, store.ErrInvalid)
}

func testCheckin(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	d := device(1)
	mustCreate(t, s, d)
	// A report without a slot leaves it unknown; the next one stores it.
	for _, slot := range []string{"", deviceapi.SlotB} {
		r := store.DeviceReport{CurrentVersion: "1.2.0", SecurityCounter: 7, State: store.StateRebooted, Slot: slot, LastError: "retrying"}
		if err := s.Checkin(ctx, d.ID, r, at(time.Hour)); err != nil {
			t.Fatal(err)
		}
		want := d
		want.CurrentVersion, want.SecurityCounter, want.State, want.Slot, want.LastError = "1.2.0", 7, store.StateRebooted, slot, "retrying"
		want.LastSeen = at(time.Hour)
		got, err := s.GetDevice(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("after check-in with slot %q (-want +got):\n%s", slot, diff)
		}
	}
	r := store.DeviceReport{CurrentVersion: "1.2.0", SecurityCounter: 7, State: store.StateDownloading, Slot: deviceapi.SlotA, LastError: "retrying"}
	if err := s.Checkin(ctx, d.ID, r, at(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetDevice(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateDownloading || got.Slot != deviceapi.SlotA {
		t.Errorf("after check-in: state %q slot %q, want %q %q", got.State, got.Slot, store.StateDownloading, deviceapi.SlotA)
	}
	wantErr(t, "unknown device", s.Checkin(ctx, "dev-unknown", r, at(time.Hour)), store.ErrNotFound)
	for _, tc := range []struct {
		name string
		id   string
		r    store.DeviceReport
		now  time.Time
	}{
		{"bad id", "dev 1", r, at(0)},
		{"unknown state", d.ID, store.DeviceReport{State: "hacked"}, at(0)},
		{"empty state", d.ID, store.DeviceReport{}, at(0)},
		{"unknown slot", d.ID, store.DeviceReport{State: store.StateIdle, Slot: "c"}, at(0)},
		{"uppercase slot", d.ID, store.DeviceReport{State: store.StateIdle, Slot: "B"}, at(0)},
		{"long version", d.ID, store.DeviceReport{State: store.StateIdle, CurrentVersion: strings.Repeat("1", store.MaxStringLen+1)}, at(0)},
		{"counter too large", d.ID, store.DeviceReport{State: store.StateIdle, SecurityCounter: 1 << 63}, at(0)},
		{"long error", d.ID, store.DeviceReport{State: store.StateIdle, LastError: strings.Repeat("e", store.MaxMessageLen+1)}, at(0)},
		{"zero now", d.ID, r, time.Time{}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			wantErr(t, "Checkin", s.Checkin(ctx, tc.id, tc.r, tc.now), store.ErrInvalid)
		})
	}
	if got2, _ := s.GetDevice(ctx, d.ID); !cmp.Equal(got, got2, cmpOpts...) {
		t.Errorf("rejected check-ins changed the device")
	}
}

func testConcurrentCheckins(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	const devices, checkins = 20, 200
	for i := range devices {
		mustCreate(t, s, device(i))
	}
	errs := make(chan error, checkins)
	start := make(chan struct{})
	for i := range checkins {
		go func() {
			<-start
			d := device(i % devices)
			r := store.DeviceReport{CurrentVersion: fmt.Sprintf("1.0.%d", i), SecurityCounter: uint64(i), State: store.StateIdle}
			errs <- s.Checkin(ctx, d.ID, r, at(time.Duration(i)*time.Second))
		}()
	}
	close(start)
	for range checkins {
		if err := <-errs; err != nil {
			t.Errorf("concurrent check-in: %v", err)
		}
	}
	for i := range devices {
		got, err := s.GetDevice(ctx, device(i).ID)
		if err != nil {
			t.Fatal(err)
		}
		// Whichever check-in landed last, the row holds one report intact.
		n := int(got.SecurityCounter)
		if n%devices != i || got.CurrentVersion != fmt.Sprintf("1.0.%d", n) || !got.LastSeen.Equal(at(time.Duration(n)*time.Second)) {
			t.Errorf("device %d holds a torn report: %+v", i, got)
		}
	}
}

func testEvents(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	d := device(1)
	mustCreate(t, s, d)
	steps := []struct {
		ev                           store.Event
		wantState, wantErr, wantVers string
	}{
		{store.Event{Kind: "enrolled", Message: "hello"}, store.StateIdle, "", "1.0.0"},
		{store.Event{Kind: store.StateDownloading, Version: "2.0.0"}, store.StateDownloading, "", "1.0.0"},
		{store.Event{Kind: store.StateFailed, Version: "2.0.0", Message: "digest mismatch"}, store.StateFailed, "digest mismatch", "1.0.0"},
		{store.Event{Kind: store.StateInstalled, Version: "2.0.0"}, store.StateInstalled, "digest mismatch", "1.0.0"},
		{store.Event{Kind: store.StateRolledBack, Version: "2.0.0", Message: "health check timed out"}, store.StateRolledBack, "health check timed out", "1.0.0"},
		{store.Event{Kind: store.StateCommitted, Version: "2.0.1"}, store.StateCommitted, "", "2.0.1"},
		{store.Event{Kind: store.StateCommitted}, store.StateCommitted, "", "2.0.1"},
		{store.Event{Kind: "note", Version: "9.9.9", Message: "only recorded"}, store.StateCommitted, "", "2.0.1"},
	}
	var added []store.Event
	for i, step := range steps {
		e := step.ev
		e.DeviceID = d.ID
		e.Time = at(time.Duration(i) * time.Minute)
		id, err := s.AddEvent(ctx, e)
		if err != nil {
			t.Fatalf("step %d AddEvent(%s): %v", i, e.Kind, err)
		}
		if len(added) > 0 && id <= added[len(added)-1].ID {
			t.Errorf("event id %d not increasing", id)
		}
		e.ID = id
		added = append(added, e)
		got, err := s.GetDevice(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != step.wantState || got.LastError != step.wantErr || got.CurrentVersion != step.wantVers {
			t.Errorf("after %s: state %q error %q version %q, want %q %q %q", e.Kind,
				got.State, got.LastError, got.CurrentVersion, step.wantState, step.wantErr, step.wantVers)
		}
	}
	// An event with an older timestamp sorts by time, not insertion order.
	late := store.Event{DeviceID: d.ID, Time: at(-time.Hour), Kind: "note", Message: "late report"}
	id, err := s.AddEvent(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	late.ID = id
	var want []store.Event
	for i := len(added) - 1; i >= 0; i-- {
		want = append(want, added[i])
	}
	want = append(want, late)
	got, err := s.ListEvents(ctx, d.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("ListEvents newest first (-want +got):\n%s", diff)
	}
	got, err = s.ListEvents(ctx, d.ID, 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:3], got, cmpOpts...); diff != "" {
		t.Errorf("ListEvents limit 3 (-want +got):\n%s", diff)
	}
	// Another device's history is separate.
	other := device(2)
	mustCreate(t, s, other)
	if got, err := s.ListEvents(ctx, other.ID, 0); err != nil || len(got) != 0 {
		t.Errorf("other device's events: %v, %v", got, err)
	}

	_, err = s.AddEvent(ctx, store.Event{DeviceID: "dev-unknown", Time: at(0), Kind: store.StateFailed})
	wantErr(t, "AddEvent unknown device", err, store.ErrNotFound)
	_, err = s.AddEvent(ctx, store.Event{DeviceID: "dev-unknown", Time: at(0), Kind: "note"})
	wantErr(t, "AddEvent note for unknown device", err, store.ErrNotFound)
	_, err = s.ListEvents(ctx, "dev-unknown", 0)
	wantErr(t, "ListEvents unknown device", err, store.ErrNotFound)
	for _, tc := range []struct {
		name string
		e    store.Event
	}{
		{"preset id", store.Event{ID: 5, DeviceID: d.ID, Time: at(0), Kind: "note"}},
		{"zero time", store.Event{DeviceID: d.ID, Kind: "note"}},
		{"empty kind", store.Event{DeviceID: d.ID, Time: at(0)}},
		{"kind with space", store.Event{DeviceID: d.ID, Time: at(0), Kind: "rm -rf"}},
		{"long message", store.Event{DeviceID: d.ID, Time: at(0), Kind: "note", Message: strings.Repeat("m", store.MaxMessageLen+1)}},
		{"nul in message", store.Event{DeviceID: d.ID, Time: at(0), Kind: "note", Message: "a\x00b"}},
		{"long version", store.Event{DeviceID: d.ID, Time: at(0), Kind: "note", Version: strings.Repeat("v", store.MaxStringLen+1)}},
	} {
		t.Run("invalid/"+tc.name, func(t *testing.T) {
			_, err := s.AddEvent(ctx, tc.e)
			wantErr(t, "AddEvent", err, store.ErrInvalid)
		})
	}
	for _, limit := range []int{-1, store.MaxListLimit + 1} {
		_, err := s.ListEvents(ctx, d.ID, limit)
		wantErr(t, fmt.Sprintf("ListEvents limit %d", limit), err, store.ErrInvalid)
	}
}

// testTouchDevices: TouchDevices moves LastSeen forward only, skips
// unknown devices and refuses bad input whole.
func testTouchDevices(t *testing.T, newDSN NewDSN) {
	ctx := context.Background()
	s := fresh(t, newDSN)
	d1, d2 := device(1), device(2)
	mustCreate(t, s, d1)
	mustCreate(t, s, d2)
	r := store.DeviceReport{CurrentVersion: "1.0.0", State: store.StateIdle}
	if err := s.Checkin(ctx, d2.ID, r, at(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	err := s.TouchDevices(ctx, map[string]time.Time{d1.ID: at(time.Hour), d2.ID: at(time.Hour), "dev-unknown": at(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		want time.Time
	}{{d1.ID, at(time.Hour)}, {d2.ID, at(2 * time.Hour)}} {
		got, err := s.GetDevice(ctx, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if !got.LastSeen.Equal(c.want) {
			t.Errorf("%s: last seen %v, want %v", c.id, got.LastSeen, c.want)
		}
	}
	wantErr(t, "bad id", s.TouchDevices(ctx, map[string]time.Time{d1.ID: at(3 * time.Hour), "dev 1": at(time.Hour)}), store.ErrInvalid)
	wantErr(t, "zero time", s.TouchDevices(ctx, map[string]time.Time{d1.ID: {}}), store.ErrInvalid)
	over := make(map[string]time.Time, store.MaxTouchDevices+1)
	for i := range store.MaxTouchDevices + 1 {
		over[fmt.Sprintf("dev-%d", i)] = at(3 * time.Hour)
	}
	over[d1.ID] = at(3 * time.Hour)
	wantErr(t, "over MaxTouchDevices", s.TouchDevices(ctx, over), store.ErrInvalid)
	if got, _ := s.GetDevice(ctx, d1.ID); !got.LastSeen.Equal(at(time.Hour)) {
		t.Errorf("a refused TouchDevices changed last seen to %v", got.LastSeen)
	}
}
