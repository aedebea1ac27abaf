package sim

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/server/store"
)

// TestFleetUpdatesAndInjectedFailuresRollBack runs simulated devices
// against the real server in repository mode: with fail rate 0 every
// device enrolls and commits the new release; with fail rate 1 every
// install fails its (real) health check, rolls back, and the server sees
// the rollbacks.
func TestFleetUpdatesAndInjectedFailuresRollBack(t *testing.T) {
	tests := []struct {
		name        string
		failRate    float64
		wantVersion string
		wantEvent   string
	}{
		{"healthy", 0, "1.1.0", deviceapi.StateCommitted},
		{"every install fails", 1, "1.0.0", deviceapi.StateRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 40
			v := newVendor(t, filepath.Join(t.TempDir(), "repo"))
			v.release("1.1.0")
			s := startServer(t, v, n, nil)
			f, err := New(v.fleetOptions(s, n, tt.failRate))
			if err != nil {
				t.Fatal(err)
			}
			st, ok := runUntil(t, f, 60*time.Second, func(s Stats) bool { return s.Installs >= n })
			if !ok {
				t.Fatalf("not every device installed: %v", st)
			}
			if st.Enrolled != n || st.Versions[tt.wantVersion] != n {
				t.Errorf("stats %v: want %d devices enrolled on %s", st, n, tt.wantVersion)
			}
			if tt.failRate == 1 && st.Injected != n {
				t.Errorf("injected failures = %d, want %d", st.Injected, n)
			}
			devs, err := s.db.ListDevices(context.Background(), store.DeviceFilter{})
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != n {
				t.Fatalf("the server has %d devices, want %d (each simulated device is its own identity)", len(devs), n)
			}
			byVersion, err := s.db.CountDevicesByVersion(context.Background(), testProduct)
			if err != nil || byVersion[tt.wantVersion] != n {
				t.Errorf("server: devices by version %v, %v; want %d on %s", byVersion, err, n, tt.wantVersion)
			}
			for _, d := range devs {
				// Every real agent checked in with its committed slot.
				if !deviceapi.ValidSlot(d.Slot) || !deviceapi.ValidState(d.State) {
					t.Errorf("server: device %s stored slot %q state %q", d.ID, d.Slot, d.State)
					break
				}
				evs, err := s.db.ListEvents(context.Background(), d.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(evs, func(e store.Event) bool { return e.Kind == tt.wantEvent }) {
					t.Errorf("server: device %s has no %q event: %+v", d.ID, tt.wantEvent, evs)
					break
				}
				// Every report came through the agent's durable queue,
				// with its own report ID.
				ids := map[string]bool{}
				for _, e := range evs {
					if e.Kind != "enrolled" && (!deviceapi.ValidReportID(e.ReportID) || ids[e.ReportID]) {
						t.Errorf("server: device %s: %s event with report ID %q (missing or repeated)", d.ID, e.Kind, e.ReportID)
					}
					ids[e.ReportID] = true
				}
			}
			// Every device keeps its report queue on its durable.Mem
			// (empty, unless the fleet stopped during a send).
			cfg := f.deviceConfig(false)
			queue := path.Join(cfg.Path(cfg.StateDir), agent.ReportQueueFile)
			for _, d := range f.devices {
				var q struct {
					Format  int                      `json:"format"`
					Reports []deviceapi.StatusReport `json:"reports"`
				}
				data, err := durable.ReadFile(d.fs, queue, agent.MaxReportQueueSize)
				if err == nil {
					err = strictjson.Unmarshal(data, &q)
				}
				if err != nil || q.Format != agent.ReportQueueFormat || q.Reports == nil {
					t.Errorf("device %d: report queue %q: %q, %v", d.idx, queue, data, err)
					break
				}
				for _, r := range q.Reports {
					if !deviceapi.ValidReportID(r.ID) {
						t.Errorf("device %d: queued report without a valid ID: %+v", d.idx, r)
					}
				}
			}
		})
	}
}

// TestFailureDrawsAreDeterministicPerDevice: the same seed fails the same
// installs of the same devices, whatever the timing; another seed differs.
func TestFailureDrawsAreDeterministicPerDevice(t *testing.T) {
	v := newVendor(t, filepath.Join(t.TempDir(), "repo"))
	opts := Options{Server: "https://127.0.0.1:1", ServerCA: testCA(t), Token: "t", Devices: 64, FailRate: 0.3, Seed: 42,
		Model: testModel, Product: testProduct, FactoryRoot: v.factoryRoot, InitialBundle: v.initialBundle, SlotSize: testSlotSize}
	draws := func(seed uint64) []bool {
		o := opts
		o.Seed = seed
		f, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		var out []bool
		for i := range 8 {
			d, err := f.provision(context.Background(), i)
			if err != nil {
				t.Fatal(err)
			}
			d.jitter.Float64() // timing draws must not shift failure draws
			out = append(out, d.failNext, d.fails.Float64() < o.FailRate, d.fails.Float64() < o.FailRate)
		}
		return out
	}
	a, b, c := draws(42), draws(42), draws(43)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different failure draws:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("different seeds, same failure draws: %v", a)
	}
}

func TestOptionsRejected(t *testing.T) {
	v := newVendor(t, filepath.Join(t.TempDir(), "repo"))
	valid := Options{Server: "https://127.0.0.1:1", ServerCA: testCA(t), Token: "t", Devices: 1,
		Model: testModel, Product: testProduct, FactoryRoot: v.factoryRoot, InitialBundle: v.initialBundle}
	if _, err := New(valid); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Options)
	}{
		{"http server", func(o *Options) { o.Server = "http://127.0.0.1:1" }},
		{"no CA", func(o *Options) { o.ServerCA = nil }},
		{"no token", func(o *Options) { o.Token = "" }},
		{"zero devices", func(o *Options) { o.Devices = 0 }},
		{"too many devices", func(o *Options) { o.Devices = MaxDevices + 1 }},
		{"fail rate above 1", func(o *Options) { o.FailRate = 1.5 }},
		{"fail rate NaN", func(o *Options) { o.FailRate = nanValue() }},
		{"no root", func(o *Options) { o.FactoryRoot = nil }},
		{"truncated bundle", func(o *Options) { o.InitialBundle = o.InitialBundle[:len(o.InitialBundle)/2] }},
		{"negative concurrency", func(o *Options) { o.Concurrency = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid
			tt.edit(&o)
			if _, err := New(o); !errors.Is(err, ErrOptions) {
				t.Fatalf("New = %v, want ErrOptions", err)
			}
		})
	}
}

func nanValue() float64 {
	zero := 0.0
	return zero / zero
}
