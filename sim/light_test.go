package sim

import (
	"context"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server"
)

func newLightEnv(t *testing.T, devices int) (*rolloutEnv, LightOptions) {
	t.Helper()
	v := newVendor(t, filepath.Join(t.TempDir(), "repo"))
	v.release("1.1.0")
	var dataDir string
	s := startServer(t, v, devices, func(c *server.Config) { dataDir = c.DataDir })
	e := &rolloutEnv{v: v, s: s, admin: newAdmin(t, s, dataDir, 6)}
	return e, LightOptions{Server: s.url, ServerCA: s.srv.CAPEM(), Token: s.token, Devices: devices, Seed: 7,
		Model: testModel, HWRev: 1, Product: testProduct, Version: v.initialVersion, ConsistentSnapshot: true,
		PollInterval: time.Second, Concurrency: 50}
}

// TestLightFleetRollout: 300 light devices enroll through the real
// enrollment API, a staged rollout of 1.1.0 completes, every device runs
// it (stated on its next check-in), and the latency histograms hold every
// check-in.
func TestLightFleetRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const n = 300
	e, opts := newLightEnv(t, n)
	f, err := NewLight(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	id := ""
	for ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		st := f.Stats()
		if id == "" {
			if st.Enrolled == n {
				id = e.startRollout(t, "canary:10,10%,100%")
			}
			continue
		}
		if ro := e.rollout(id); ro.State != "running" && ro.State != "created" {
			if ro.State != "completed" {
				t.Fatalf("rollout ended %q (%s); fleet %v", ro.State, ro.Reason, st)
			}
			if st.Versions["1.1.0"] == n {
				// A check-in is in the histogram before its cycle ends
				// and counts as a poll: at most one per cycle in flight.
				if cnt := st.Checkin.Count(); cnt < uint64(st.Polls) || cnt > uint64(st.Polls+int64(opts.Concurrency)) || st.Commits != n || st.RollBacks != 0 {
					t.Errorf("stats %v: want %d check-ins recorded, %d commits", st, st.Polls, n)
				}
				if st.EnrollSec <= 0 || st.Enroll.Count() < n {
					t.Errorf("enrollment not measured: %v s, %d", st.EnrollSec, st.Enroll.Count())
				}
				t.Logf("%v", st)
				return
			}
		}
	}
	t.Fatalf("rollout %s did not complete on every device: %v", id, f.Stats())
}

// TestLightDeviceMemory: an enrolled light device costs less than 5 KiB
// of heap (without the TLS session cache).
func TestLightDeviceMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const n, budget = 2000, 5 << 10
	_, opts := newLightEnv(t, n)
	opts.SessionCache = -1
	opts.PollInterval = time.Hour // enroll, then idle
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := NewLight(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for deadline := time.Now().Add(90 * time.Second); f.Stats().Enrolled < n && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if f.Stats().Enrolled < n {
		cancel()
		<-done
		t.Fatalf("only %d of %d devices enrolled: %v", f.Stats().Enrolled, n, f.Stats().LastError)
	}
	time.Sleep(200 * time.Millisecond)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	cancel()
	<-done
	runtime.KeepAlive(f)
	t.Logf("%d bytes of heap per enrolled light device", per)
	if per > budget {
		t.Errorf("%d bytes per light device, want at most %d", per, budget)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h, o Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	o.Record(time.Hour) // beyond the last bucket: counted in it
	if err := h.Merge(&o); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*histGrowth {
			t.Errorf("p%v = %v, want within 5%% above %v", c.q*100, got, c.want)
		}
	}
	if h.Count() != 1001 || h.Quantile(1) < 6*time.Minute {
		t.Errorf("count %d, max %v", h.Count(), h.Quantile(1))
	}
	// docs/simulator.md: the buckets reach about 11 minutes.
	if top := histUpper(HistBuckets - 1); top < 10*time.Minute || top > 12*time.Minute {
		t.Errorf("last bucket ends at %v, want about 11 minutes", top)
	}
	if err := h.Merge(&Histogram{Counts: make([]uint64, 3)}); err == nil {
		t.Error("merged a histogram of another geometry")
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"timestamp","meta":{"snapshot.json":{"version":3}}}}`), "timestamp")
	f.Add([]byte(`{"signed":{"_type":"targets","targets":{"p/1.0.0/x.img":{"length":3,"hashes":{"sha256":"00"},"custom":{}}}}}`), "targets")
	f.Fuzz(func(t *testing.T, data []byte, role string) {
		m, err := parseMeta(data, role)
		if err == nil && m.Signed.Type != role {
			t.Fatalf("accepted _type %q for %q", m.Signed.Type, role)
		}
	})
}
