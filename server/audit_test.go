package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"net/http"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// auditDir is an audit log directory and its checkpoint key for a test.
type auditDir struct {
	dir, key string
}

func newAuditDir(t *testing.T) auditDir {
	d := t.TempDir()
	return auditDir{dir: filepath.Join(d, "audit"), key: filepath.Join(d, "audit.key")}
}

func (a auditDir) open() (*audit.Log, error) {
	return audit.OpenWithKey(a.dir, a.key, audit.Options{CheckpointEvery: 10})
}

// verify checks the log with its key and returns its entries.
func (a auditDir) verify(t *testing.T) []audit.Entry {
	t.Helper()
	pub, err := audit.LoadPublic(a.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Verify(a.dir, pub); err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	es, err := audit.Query(a.dir, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// outboxIDs returns the outbox IDs of the entries, failing on an entry
// without one or on a duplicate.
func outboxIDs(t *testing.T, es []audit.Entry) []int64 {
	t.Helper()
	seen := map[int64]bool{}
	var ids []int64
	for _, e := range es {
		id, err := strconv.ParseInt(e.Details[AuditOutboxIDDetail], 10, 64)
		if err != nil {
			t.Fatalf("entry %d has no outbox ID: %s", e.Seq, e.Encode())
		}
		if seen[id] {
			t.Fatalf("outbox entry %d appended twice (entry %d)", id, e.Seq)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids
}

func appendEvents(t *testing.T, db store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		ev := store.AuditEvent{Time: time.Now(), Actor: "alice", Action: string(audit.AuthLogout), Details: map[string]string{"n": strconv.Itoa(i)}}
		if err := db.AppendAudit(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// eventNumbers returns the "n" details of the entries, sorted.
func eventNumbers(t *testing.T, es []audit.Entry) []int {
	t.Helper()
	var ns []int
	for _, e := range es {
		n, err := strconv.Atoi(e.Details["n"])
		if err != nil {
			t.Fatalf("entry %d: %s", e.Seq, e.Encode())
		}
		ns = append(ns, n)
	}
	sort.Ints(ns)
	return ns
}

func wantNumbers(t *testing.T, got []int, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d events in the audit log, want %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("event %d missing or duplicated (position %d holds %d)", i, i, v)
		}
	}
}

// runDrainer runs d until the returned stop is called.
func runDrainer(d *AuditDrainer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func waitOutboxEmpty(t *testing.T, db store.Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := db.CountAuditOutbox(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit outbox still holds %d entries", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAuditOutboxHookAttachesOrAppends(t *testing.T) {
	db := openTestStore(t, t.TempDir())
	defer db.Close()
	var logged bytes.Buffer
	hook := AuditOutbox(db, slog.New(slog.NewTextHandler(&logged, nil)))
	ctx := t.Context()
	// Without a scope: stored on its own.
	hook(ctx, "alice", AuditLogin, map[string]string{"remote": "192.0.2.1:1"})
	// In a scope: stored only with the write.
	sctx := store.WithAudit(ctx)
	hook(sctx, "bob", AuditUserCreated, map[string]string{"user": "carol"})
	if n, _ := db.CountAuditOutbox(ctx); n != 1 {
		t.Fatalf("outbox holds %d entries before the write, want 1", n)
	}
	if err := db.CreateUser(sctx, store.User{ID: "u-1", Name: "carol", Role: RoleViewer, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// Refused: unknown to the audit log, or the reserved detail.
	hook(ctx, "bob", "user.added", nil)
	hook(ctx, "bob", AuditLogin, map[string]string{AuditOutboxIDDetail: "1"})
	es, err := db.ListAuditOutbox(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Actor+" "+e.Action)
	}
	if want := "alice auth.login,bob user.created"; strings.Join(got, ",") != want {
		t.Errorf("outbox = %q, want %q", got, want)
	}
	if n := strings.Count(logged.String(), "audit event refused"); n != 2 {
		t.Errorf("%d refusals logged, want 2: %s", n, logged.String())
	}
}

// TestAuditDrainerAfterCrashes: a drainer that died after appending an
// entry but before deleting it from the outbox, and events committed but
// never drained: the next drainer appends every event exactly once.
func TestAuditDrainerAfterCrashes(t *testing.T) {
	db := openTestStore(t, t.TempDir())
	defer db.Close()
	ad := newAuditDir(t)
	appendEvents(t, db, 0, 6)
	obs, err := db.ListAuditOutbox(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	// What a drainer killed between the append and the delete of its
	// second batch leaves: entries 0..3 in the log, 0..1 deleted, 2..5 in
	// the outbox.
	l, err := ad.open()
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range [][]store.AuditOutboxEntry{obs[:2], obs[2:4]} {
		if _, err := l.AppendBatch(t.Context(), []audit.Entry{outboxEntry(b[0]), outboxEntry(b[1])}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := db.DeleteAuditOutbox(t.Context(), []int64{b[0].ID, b[1].ID}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	stop := runDrainer(&AuditDrainer{DB: db, Open: ad.open, Poll: 10 * time.Millisecond})
	waitOutboxEmpty(t, db)
	stop()
	es := ad.verify(t)
	outboxIDs(t, es)
	wantNumbers(t, eventNumbers(t, es), 6)
}

// TestAuditDrainerStopsAtAnEntryTheLogRefuses: an outbox entry with an
// action this binary's audit log does not know (written by a newer
// replica) stops the draining there, logged once; nothing after it is
// appended out of order, and nothing is lost.
func TestAuditDrainerStopsAtAnEntryTheLogRefuses(t *testing.T) {
	db := openTestStore(t, t.TempDir())
	defer db.Close()
	ad := newAuditDir(t)
	appendEvents(t, db, 0, 3)
	if err := db.AppendAudit(t.Context(), store.AuditEvent{Time: time.Now(), Actor: "airlock", Action: "rollout.from_the_future"}); err != nil {
		t.Fatal(err)
	}
	appendEvents(t, db, 3, 2)
	var logged syncBuffer
	stop := runDrainer(&AuditDrainer{DB: db, Open: ad.open, Poll: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logged, nil))})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, err := db.CountAuditOutbox(t.Context()); err != nil || n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entries before the refused one were not drained")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // several polls
	stop()
	if n := strings.Count(logged.String(), "refuses an outbox entry"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once:\n%s", n, logged.String())
	}
	if n, _ := db.CountAuditOutbox(t.Context()); n != 3 {
		t.Errorf("outbox holds %d entries, want the refused one and the 2 after it", n)
	}
	wantNumbers(t, eventNumbers(t, ad.verify(t)), 3)
}

// TestOnlyOneDrainerHoldsTheAuditLog: two drainers (two store handles, as
// two replicas have) on one audit directory: one holds the log and drains;
// when it stops the other takes over; no event is lost or duplicated.
func TestOnlyOneDrainerHoldsTheAuditLog(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "airlock.db") }},
		{"postgres", postgresDSN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := tc.dsn(t)
			var dbs [2]store.Store
			for i := range dbs {
				db, err := store.Open(t.Context(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				dbs[i] = db
			}
			ad := newAuditDir(t)
			var mu sync.Mutex
			var holders []int
			var stops [2]func()
			for i := range dbs {
				d := &AuditDrainer{DB: dbs[i], Open: ad.open, Poll: 10 * time.Millisecond, Retry: 20 * time.Millisecond,
					held: func() { mu.Lock(); holders = append(holders, i); mu.Unlock() }}
				stops[i] = runDrainer(d)
			}
			// Both write events; concurrently with the draining.
			var wg sync.WaitGroup
			for i := range dbs {
				wg.Go(func() { appendEvents(t, dbs[i], i*100, 100) })
			}
			wg.Wait()
			waitOutboxEmpty(t, dbs[0])
			mu.Lock()
			if len(holders) != 1 {
				t.Fatalf("holders %v, want exactly one", holders)
			}
			first := holders[0]
			mu.Unlock()
			stops[first]()
			appendEvents(t, dbs[first], 200, 50) // the stopped one's replica keeps writing the outbox
			waitOutboxEmpty(t, dbs[0])
			mu.Lock()
			if len(holders) != 2 || holders[1] == first {
				t.Fatalf("holders %v: the second drainer did not take over", holders)
			}
			mu.Unlock()
			stops[1-first]()
			es := ad.verify(t)
			outboxIDs(t, es)
			wantNumbers(t, eventNumbers(t, es), 250)
		})
	}
}

// TestSIGKILLedDrainer kills a process draining the outbox at random
// moments (fixed seed) while events keep arriving; after the last kill a
// new drainer leaves every event in the log exactly once, and the log
// verifies.
func TestSIGKILLedDrainer(t *testing.T) {
	dir := t.TempDir()
	dsn := filepath.Join(dir, "airlock.db")
	db, err := store.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ad := newAuditDir(t)
	const kills, perRound = 12, 400
	rng := rand.New(rand.NewPCG(16, 2026))
	appendedBefore, recovered := 0, 0
	for k := range kills {
		appendEvents(t, db, k*perRound, perRound)
		cmd := exec.Command(os.Args[0], "-test.run=^TestAuditDrainerChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "AIRLOCK_DRAINER_CHILD="+dsn+"\n"+ad.dir+"\n"+ad.key)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL (%v):\n%s", err, out.String())
		}
		for _, m := range regexp.MustCompile(`already in the log; deleting them" entries=(\d+)`).FindAllStringSubmatch(out.String(), -1) {
			k, _ := strconv.Atoi(m[1])
			recovered += k
		}
		if n, err := db.CountAuditOutbox(t.Context()); err == nil {
			t.Logf("kill %d: %d events left in the outbox", k, n)
		}
		if l, err := ad.open(); err == nil { // the log must open after every kill
			appendedBefore = int(l.Size())
			l.Close()
		} else {
			t.Fatalf("audit log after kill %d: %v", k, err)
		}
	}
	if appendedBefore == 0 {
		t.Fatal("the children appended nothing: the kills prove nothing")
	}
	stop := runDrainer(&AuditDrainer{DB: db, Open: ad.open, Poll: 10 * time.Millisecond})
	waitOutboxEmpty(t, db)
	stop()
	es := ad.verify(t)
	outboxIDs(t, es)
	wantNumbers(t, eventNumbers(t, es), kills*perRound)
	t.Logf("%d kills; %d entries appended by killed drainers, %d by the last; %d entries found appended but not deleted after a kill",
		kills, appendedBefore, len(es)-appendedBefore, recovered)
}

// TestAuditDrainerChild is the process TestSIGKILLedDrainer kills.
func TestAuditDrainerChild(t *testing.T) {
	env := os.Getenv("AIRLOCK_DRAINER_CHILD")
	if env == "" {
		t.Skip("run by TestSIGKILLedDrainer")
	}
	p := strings.Split(env, "\n")
	db, err := store.Open(context.Background(), p[0])
	if err != nil {
		t.Fatal(err)
	}
	ad := auditDir{dir: p[1], key: p[2]}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	(&AuditDrainer{DB: db, Open: ad.open, Log: log, Poll: 10 * time.Millisecond, Retry: 10 * time.Millisecond}).Run(context.Background())
	fmt.Println("unreachable: Run returned")
}

// auditedServer starts a rollout server whose events go through the outbox
// to the audit log in ad.
func auditedServer(t *testing.T, ad auditDir) *rolloutEnv {
	return startRolloutServer(t, func(c *Config) {
		c.Audit = AuditOutbox(c.DB, c.Logger)
		c.AuditOpen = ad.open
	})
}

// TestCommittedReportsEqualAuditEntries: N committed reports through the
// real server are N device.updated entries in the verified audit log, one
// per committed event in the store.
func TestCommittedReportsEqualAuditEntries(t *testing.T) {
	ad := newAuditDir(t)
	re := auditedServer(t, ad)
	const n = 25
	devs := make([]testDevice, n)
	for i := range devs {
		devs[i] = re.device()
		re.report(devs[i], store.StateDownloading, "1.1.0", "")
		re.report(devs[i], store.StateCommitted, "1.1.0", "ok")
	}
	re.report(devs[0], store.StateRolledBack, "1.2.0", "health check failed")
	waitOutboxEmpty(t, re.db)
	resp, data := re.do(re.client(nil), "GET", "/metrics", re.adminToken(RoleViewer), nil)
	wantStatus(t, resp, data, http.StatusOK)
	for name, want := range map[string]float64{"airlock_audit_outbox_backlog": 0, "airlock_audit_log_held": 1, "airlock_audit_drained_total": 2*n + 1} {
		// drained: the enrollments, the commits and the rollback (the
		// viewer token's user.created and login ride along or follow).
		if got := metricValue(t, string(data), name); got < want || (want <= 1 && got != want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if err := re.stop(); err != nil {
		t.Fatal(err)
	}
	es := ad.verify(t)
	outboxIDs(t, es)
	count := map[audit.Action]int{}
	for _, e := range es {
		count[e.Action]++
		if e.Action == audit.DeviceUpdated && (e.Release != testProduct+"@1.1.0" || e.Device != e.Actor) {
			t.Errorf("device.updated entry %s", e.Encode())
		}
	}
	committed := 0
	for _, d := range devs {
		evs, err := re.db.ListEvents(t.Context(), d.id, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Kind == store.StateCommitted {
				committed++
			}
		}
	}
	if count[audit.DeviceUpdated] != n || committed != n || count[audit.DeviceEnrolled] != n || count[audit.DeviceRolledBack] != 1 {
		t.Errorf("audit log %v, %d committed events in the store; want %d device.updated and device.enrolled, 1 device.rolled_back", count, committed, n)
	}
}

// TestRolloutTransitionsAreInTheAuditLog: creating, starting, advancing,
// pausing and resuming a rollout through the admin API leaves rollout.*
// entries (and the release's deployment) in the verified audit log.
func TestRolloutTransitionsAreInTheAuditLog(t *testing.T) {
	ad := newAuditDir(t)
	re := auditedServer(t, ad)
	re.register("1.1.0", EnvDev)
	devs := make([]testDevice, 4)
	for i := range devs {
		devs[i] = re.device()
	}
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Filter: "model=x1",
		Stages: "canary:2,100%", SuccessThreshold: "100%", FailureThreshold: "50%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	re.srv.EvaluateRollouts(t.Context())
	var canary []testDevice
	for _, d := range devs {
		if re.checkin(d).Assignment != nil {
			canary = append(canary, d)
		}
	}
	for _, d := range canary {
		re.report(d, store.StateCommitted, "1.1.0", "ok") // the second advances past the canary
	}
	re.srv.EvaluateRollouts(t.Context())
	re.action(ro.ID, rollout.ActionPause, http.StatusOK)
	re.action(ro.ID, rollout.ActionResume, http.StatusOK)
	waitOutboxEmpty(t, re.db)
	if err := re.stop(); err != nil {
		t.Fatal(err)
	}
	es := ad.verify(t)
	outboxIDs(t, es)
	var got []string
	assigned := map[string]bool{}
	for _, e := range es {
		if e.Details["rollout"] != ro.ID {
			continue
		}
		switch e.Action {
		case audit.RolloutAssigned:
			assigned[e.Device] = true
			if e.Details["stage"] != "canary" {
				t.Errorf("assignment outside the canary: %s", e.Encode())
			}
			continue
		case audit.RolloutTransition:
			got = append(got, e.Details["from"]+">"+e.Details["to"]+"@"+e.Details["to_stage"])
		default:
			got = append(got, string(e.Action))
		}
		if e.Release != testProduct+"@1.1.0" {
			t.Errorf("entry without the release: %s", e.Encode())
		}
	}
	want := "rollout.created release.deployed draft>running@canary running>running@stage 2 running>paused@stage 2 paused>running@stage 2"
	if strings.Join(got, " ") != want {
		t.Errorf("rollout entries in the audit log:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if len(assigned) != len(canary) {
		t.Errorf("rollout.assigned for %d devices, want the %d of the canary", len(assigned), len(canary))
	}
	for _, d := range canary {
		if !assigned[d.id] {
			t.Errorf("no rollout.assigned entry for %s", d.id)
		}
	}
}

// BenchmarkAuditDrain measures the drainer on SQLite: outbox rows appended
// to the log (one fsync each) and deleted (one commit each) per second.
func BenchmarkAuditDrain(b *testing.B) {
	db, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "airlock.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	d := b.TempDir()
	ad := auditDir{dir: filepath.Join(d, "audit"), key: filepath.Join(d, "audit.key")}
	l, err := ad.open()
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	for i := range b.N {
		ev := store.AuditEvent{Time: time.Now(), Actor: "dev-1", Action: string(audit.DeviceUpdated), Details: map[string]string{"n": strconv.Itoa(i)}}
		if err := db.AppendAudit(b.Context(), ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	n, err := (&AuditDrainer{DB: db}).drain(b.Context(), l)
	if err != nil || n != b.N {
		b.Fatalf("drained %d of %d: %v", n, b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
