package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
)

// setStatusFault sets the device API's status report fault (nil: none).
func (s *deviceAPI) setStatusFault(f func(deviceapi.StatusReport) (int, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statusFault = f
}

func (s *deviceAPI) receivedReports() []deviceapi.StatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reports)
}

// queueFile is the report queue file of the env's device.
func (e *serverEnv) queueFile(t *testing.T) string {
	t.Helper()
	d, err := device.OpenConfig(durable.OS, e.devCfg, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.Config()
	return filepath.Join(cfg.Path(cfg.StateDir), ReportQueueFile)
}

// checkIDs fails unless every report has a valid report ID, distinct from
// the others.
func checkIDs(t *testing.T, rs []deviceapi.StatusReport) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rs {
		if !deviceapi.ValidReportID(r.ID) || seen[r.ID] {
			t.Errorf("report %s %s has a missing, invalid or repeated ID %q", r.Kind, r.Version, r.ID)
		}
		seen[r.ID] = true
	}
}

var updateKinds = []string{"downloading 1.1.0", "verified 1.1.0", "installed 1.1.0", "rebooted 1.1.0", "committed 1.1.0"}

// TestQueuedReportsArriveOnceInOrderAfterAnOutage: the server's status
// endpoint answers 503 (a server restarting behind its load balancer)
// while the agent installs and commits 1.1.0 over real mTLS. No report is
// lost: all five wait in the queue on disk, and when the server is back
// they arrive at the next poll, in order, exactly once each, with their
// IDs, before its check-in; the queue is then empty and nothing is resent.
// The other transient answers (408, 429, 500) keep reports queued too.
func TestQueuedReportsArriveOnceInOrderAfterAnOutage(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	ctx := context.Background()
	e.api.setStatusFault(func(deviceapi.StatusReport) (int, bool) { return http.StatusServiceUnavailable, false })
	res, err := a.RunOnce(ctx)
	if err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("RunOnce during the outage = %+v, %v; want committed 1.1.0 (reports never fail an update)", res, err)
	}
	if got := e.api.receivedReports(); len(got) != 0 || e.api.faulted < 5 {
		t.Fatalf("during the outage: %d reports received, %d refused with 503; want 0 and at least 5", len(got), e.api.faulted)
	}
	data, err := os.ReadFile(e.queueFile(t))
	if err != nil {
		t.Fatal(err)
	}
	queued, err := parseReports(data)
	if err != nil || len(queued) != 5 {
		t.Fatalf("queue on disk after the outage: %d reports, %v; want 5", len(queued), err)
	}
	checkIDs(t, queued)

	// Other transient answers: the queue stays as it is.
	for _, code := range []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError} {
		e.api.setStatusFault(func(deviceapi.StatusReport) (int, bool) { return code, false })
		if _, err := a.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(e.queueFile(t)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("after HTTP %d the queue changed (%v):\n%s", code, err, got)
		}
	}

	// Back up; note how many check-ins came before each report (the
	// fault hook runs under the API's lock).
	checkinsBefore := len(e.api.checkins)
	var seenCheckins []int
	e.api.setStatusFault(func(deviceapi.StatusReport) (int, bool) {
		seenCheckins = append(seenCheckins, len(e.api.checkins))
		return 0, true
	})
	if res, err := a.RunOnce(ctx); err != nil || res.Action != ActionNone {
		t.Fatalf("RunOnce after the outage = %+v, %v; want none", res, err)
	}
	got := e.api.receivedReports()
	if diff := cmp.Diff(queued, got); diff != "" {
		t.Errorf("reports after the outage (-queued +received):\n%s", diff)
	}
	if diff := cmp.Diff(updateKinds, e.api.kinds()); diff != "" {
		t.Errorf("report kinds (-want +got):\n%s", diff)
	}
	if n := len(e.api.checkins); n != checkinsBefore+1 {
		t.Errorf("%d check-ins in the poll after the outage, want 1", n-checkinsBefore)
	}
	if want := slices.Repeat([]int{checkinsBefore}, 5); !slices.Equal(seenCheckins, want) {
		t.Errorf("check-ins seen before each queued report: %v, want %v (the reports before the poll's check-in)", seenCheckins, want)
	}
	if data, err := os.ReadFile(e.queueFile(t)); err != nil || !bytes.Equal(data, encodeReports(nil)) {
		t.Errorf("queue after delivery: %q, %v; want empty", data, err)
	}
	if _, err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.api.receivedReports()); n != 5 {
		t.Errorf("%d reports after another poll, want the same 5 (nothing resent)", n)
	}
}

// TestLostAcknowledgementResendsTheSameReport: the server stores a report
// but its answer is lost (recorded, then 503): the agent resends the same
// report, same ID, which the server records once (see the server's
// TestResentReportIsRecordedOnce). Every other report is sent once, in
// order.
func TestLostAcknowledgementResendsTheSameReport(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	lost := false
	e.api.setStatusFault(func(r deviceapi.StatusReport) (int, bool) {
		if r.Kind == deviceapi.StateInstalled && !lost {
			lost = true
			return http.StatusServiceUnavailable, true
		}
		return 0, true
	})
	if res, err := a.RunOnce(context.Background()); err != nil || res.Action != ActionCommitted {
		t.Fatalf("RunOnce = %+v, %v; want committed", res, err)
	}
	got := e.api.receivedReports()
	want := []string{"downloading 1.1.0", "verified 1.1.0", "installed 1.1.0", "installed 1.1.0", "rebooted 1.1.0", "committed 1.1.0"}
	if diff := cmp.Diff(want, e.api.kinds()); diff != "" {
		t.Fatalf("reports (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(got[2], got[3]); diff != "" {
		t.Errorf("the resent report differs from the first copy (-first +resent):\n%s", diff)
	}
	checkIDs(t, slices.Delete(got, 3, 4))
}

// TestPermanentlyRefusedReportIsDropped: a report the server refuses for
// good (a 4xx other than 408 and 429) leaves the queue, logged, so that it
// cannot block the reports after it.
func TestPermanentlyRefusedReportIsDropped(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	e.api.setStatusFault(func(r deviceapi.StatusReport) (int, bool) {
		if r.Kind == deviceapi.StateVerified {
			return http.StatusBadRequest, false
		}
		return 0, true
	})
	if res, err := a.RunOnce(context.Background()); err != nil || res.Action != ActionCommitted {
		t.Fatalf("RunOnce = %+v, %v; want committed", res, err)
	}
	want := []string{"downloading 1.1.0", "installed 1.1.0", "rebooted 1.1.0", "committed 1.1.0"}
	if diff := cmp.Diff(want, e.api.kinds()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if e.api.faulted != 1 {
		t.Errorf("the refused report was sent %d times, want once", e.api.faulted)
	}
	if !strings.Contains(e.logs.String(), "the server refused a status report: dropped") {
		t.Errorf("the dropped report was not logged:\n%s", e.logs)
	}
	if data, err := os.ReadFile(e.queueFile(t)); err != nil || !bytes.Equal(data, encodeReports(nil)) {
		t.Errorf("queue: %q, %v; want empty", data, err)
	}
}

// TestCorruptReportQueueIsMovedAside: a queue file that does not parse
// (flash corruption, tampering) does not stop the agent: it is moved to
// ReportQueueFile+".corrupt" with its bytes, the error is logged naming
// ErrCorruptReportQueue, and the update and its reports go on.
func TestCorruptReportQueueIsMovedAside(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	path := e.queueFile(t)
	garbage := []byte(`{"format":1,"reports":[{"id":"x","kind":"committed"}]}` + "\n")
	if err := os.WriteFile(path, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := a.RunOnce(context.Background()); err != nil || res.Action != ActionCommitted {
		t.Fatalf("RunOnce = %+v, %v; want committed", res, err)
	}
	if diff := cmp.Diff(updateKinds, e.api.kinds()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if got, err := os.ReadFile(path + ".corrupt"); err != nil || !bytes.Equal(got, garbage) {
		t.Errorf("moved-aside queue: %q, %v; want the corrupt bytes", got, err)
	}
	if !strings.Contains(e.logs.String(), ErrCorruptReportQueue.Error()) {
		t.Errorf("the corrupt queue was not logged as %q:\n%s", ErrCorruptReportQueue, e.logs)
	}
}

func testReport(i int) deviceapi.StatusReport {
	return deviceapi.StatusReport{ID: fmt.Sprintf("abcdef%026x", i+1), Kind: deviceapi.StateDownloading, Version: fmt.Sprintf("1.%d.0", i), Message: "<step>\n\tdetail"}
}

// TestReportQueueSurvivesPowerCuts: a power cut at every write boundary
// of queueing a report (durable.Mem), with and without torn writes,
// leaves the old queue or the new one, never a corrupt or a lost one.
func TestReportQueueSurvivesPowerCuts(t *testing.T) {
	const path = "/state/" + ReportQueueFile
	old := []deviceapi.StatusReport{testReport(0), testReport(1)}
	added := testReport(2)
	setup := func() (*durable.Mem, *Agent) {
		m := durable.NewMem()
		if err := m.MkdirAll("/state", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := durable.WriteFile(m, path, encodeReports(old), 0o644); err != nil {
			t.Fatal(err)
		}
		return m, &Agent{fs: m, log: discard{}}
	}
	m, a := setup()
	m.CutAfter(0)
	a.enqueue(path, added)
	ops := m.Ops()
	if ops < 4 {
		t.Fatalf("queueing took %d write ops, want the temp-file, fsync, rename, fsync-dir sequence", ops)
	}
	want := [][]deviceapi.StatusReport{old, append(slices.Clone(old), added)}
	for i := 1; i <= ops+1; i++ {
		for seed := range int64(4) {
			m, a := setup()
			m.CutAfter(i)
			a.enqueue(path, added)
			if seed == 0 {
				m.Crash()
			} else {
				m.CrashTorn(seed)
			}
			var logs bytes.Buffer
			a.log = testLogWriter(&logs)
			got := a.loadReports(path)
			if !slices.ContainsFunc(want, func(w []deviceapi.StatusReport) bool { return cmp.Equal(w, got) }) {
				t.Fatalf("cut at op %d (seed %d): queue %+v, want the old or the new one (log: %s)", i, seed, got, logs.String())
			}
			if _, err := m.Stat(path + ".corrupt"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("cut at op %d (seed %d): the queue was found corrupt (%v)", i, seed, err)
			}
		}
	}
}

// TestFullReportQueueDropsTheOldest: the queue holds MaxQueuedReports; the
// next report drops the oldest, logged.
func TestFullReportQueueDropsTheOldest(t *testing.T) {
	m := durable.NewMem()
	if err := m.MkdirAll("/state", 0o755); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := &Agent{fs: m, log: testLogWriter(&logs)}
	const path = "/state/" + ReportQueueFile
	var all []deviceapi.StatusReport
	for i := range MaxQueuedReports + 3 {
		all = append(all, testReport(i))
		a.enqueue(path, testReport(i))
	}
	got := a.loadReports(path)
	if diff := cmp.Diff(all[3:], got); diff != "" {
		t.Errorf("full queue (-want +got):\n%s", diff)
	}
	if n := strings.Count(logs.String(), "report queue full"); n != 3 {
		t.Errorf("%d drops logged, want 3:\n%s", n, logs.String())
	}
}

// TestReportQueueParserIsStrict: the queue file has one encoding; anything
// else, every strict prefix of a valid file included, is refused with
// ErrCorruptReportQueue.
func TestReportQueueParserIsStrict(t *testing.T) {
	valid := encodeReports([]deviceapi.StatusReport{testReport(0), testReport(1)})
	rs, err := parseReports(valid)
	if err != nil || len(rs) != 2 {
		t.Fatalf("valid queue: %v, %v", rs, err)
	}
	if _, err := parseReports(encodeReports(nil)); err != nil {
		t.Fatalf("empty queue: %v", err)
	}
	for i := range valid {
		if _, err := parseReports(valid[:i]); !errors.Is(err, ErrCorruptReportQueue) {
			t.Fatalf("prefix of %d bytes: %v, want ErrCorruptReportQueue", i, err)
		}
	}
	id := testReport(0).ID
	var full []deviceapi.StatusReport
	for i := range MaxQueuedReports + 1 {
		full = append(full, testReport(i))
	}
	for _, tc := range []struct{ name, data string }{
		{"not JSON", "garbage"},
		{"null reports", `{"format":1,"reports":null}` + "\n"},
		{"other format", `{"format":2,"reports":[]}` + "\n"},
		{"missing format", `{"reports":[]}` + "\n"},
		{"no newline", `{"format":1,"reports":[]}`},
		{"spaces", `{"format": 1, "reports": []}` + "\n"},
		{"key order", `{"reports":[],"format":1}` + "\n"},
		{"uppercase key", `{"Format":1,"reports":[]}` + "\n"},
		{"duplicate key", `{"format":1,"format":1,"reports":[]}` + "\n"},
		{"unknown key", `{"format":1,"reports":[],"x":1}` + "\n"},
		{"trailing data", `{"format":1,"reports":[]}` + "\n{}"},
		{"report without id", `{"format":1,"reports":[{"kind":"committed"}]}` + "\n"},
		{"bad id", `{"format":1,"reports":[{"id":"` + strings.ToUpper(id) + `","kind":"committed"}]}` + "\n"},
		{"idle kind", `{"format":1,"reports":[{"id":"` + id + `","kind":"idle"}]}` + "\n"},
		{"control character", `{"format":1,"reports":[{"id":"` + id + `","kind":"failed","message":"\u001b[2J"}]}` + "\n"},
		{"escaped differently", `{"format":1,"reports":[{"id":"` + id + `","kind":"failed","message":"\u0061"}]}` + "\n"},
		{"too many reports", string(encodeReports(full))},
		{"too large", `{"format":1,"reports":[],"pad":"` + strings.Repeat("x", MaxReportQueueSize) + `"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseReports([]byte(tc.data)); !errors.Is(err, ErrCorruptReportQueue) {
				t.Fatalf("parseReports = %v, want ErrCorruptReportQueue", err)
			}
		})
	}
}

// FuzzParseReports: the queue parser never panics, accepts only its own
// encoding (parse, then encode, gives the same bytes) within its limits,
// and refuses every strict prefix of what it accepts.
func FuzzParseReports(f *testing.F) {
	f.Add(encodeReports(nil))
	f.Add(encodeReports([]deviceapi.StatusReport{testReport(0), testReport(1)}))
	f.Add([]byte(`{"format":1,"reports":[{"id":"0123456789abcdef0123456789abcdef","kind":"failed","version":"1.0.0","message":"a\nb"}]}` + "\n"))
	f.Add([]byte(`{"format":1,"reports":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := parseReports(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptReportQueue) {
				t.Fatalf("error %v does not wrap ErrCorruptReportQueue", err)
			}
			return
		}
		if len(rs) > MaxQueuedReports || len(data) > MaxReportQueueSize {
			t.Fatalf("accepted %d reports in %d bytes", len(rs), len(data))
		}
		if again := encodeReports(rs); !bytes.Equal(again, data) {
			t.Fatalf("accepted bytes that are not its encoding:\n%q\n%q", data, again)
		}
		for i := range data {
			if _, err := parseReports(data[:i]); err == nil {
				t.Fatalf("accepted the %d-byte prefix of a valid queue", i)
			}
		}
	})
}

// testLogWriter is an agent Logger writing text to w.
func testLogWriter(w io.Writer) Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// TestStoppingAgentQueuesNoReport: a step cut short because the agent is
// stopping (its context canceled) is not queued: sent at the next start, a
// "failed: context canceled" would count as a failed install in the
// device's rollout.
func TestStoppingAgentQueuesNoReport(t *testing.T) {
	m := durable.NewMem()
	a := &Agent{fs: m, log: discard{}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A cycle with an API client but no device: queueing would need the
	// device's state directory.
	a.report(ctx, &cycle{api: &apiClient{}}, deviceapi.StateFailed, "1.1.0", "payload: context canceled")
	if m.Ops() != 0 {
		t.Fatalf("%d write ops after a report of a stopping agent, want none", m.Ops())
	}
}

// TestFetchFailureIsReportedAsRetryNotFailure: a payload the repository
// cannot serve (503, the server restarting) is a step still in progress,
// reported as "downloading" with "retrying at the next poll", because the
// pipeline did not refuse anything (no verify.ErrVerification); a payload
// served with a flipped byte is a refusal, reported as "failed" naming the
// payload check. The next poll with the repository back installs.
func TestFetchFailureIsReportedAsRetryNotFailure(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	ctx := context.Background()
	h := e.api.repo.(*repoHandler)

	h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		return true
	})
	if res, err := a.RunOnce(ctx); err == nil || res.Action != ActionFailed {
		t.Fatalf("RunOnce with the payload unavailable = %+v, %v; want an error", res, err)
	}
	last := e.api.lastReport()
	if last.Kind != deviceapi.StateDownloading || !strings.HasPrefix(last.Message, "retrying at the next poll: "+device.CheckPayload+": ") {
		t.Errorf("report of an unavailable payload = %s %q; want downloading, \"retrying at the next poll: payload: ...\"", last.Kind, last.Message)
	}

	e.api.resetReports()
	h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		bad := slices.Clone(data)
		bad[len(bad)/2] ^= 1
		w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
		w.Write(bad)
		return true
	})
	if res, err := a.RunOnce(ctx); err == nil || res.Action != ActionFailed {
		t.Fatalf("RunOnce with a tampered payload = %+v, %v; want an error", res, err)
	}
	last = e.api.lastReport()
	if last.Kind != deviceapi.StateFailed || !strings.HasPrefix(last.Message, device.CheckPayload+": ") {
		t.Errorf("report of a tampered payload = %s %q; want failed, \"payload: ...\"", last.Kind, last.Message)
	}

	h.setFault(nil)
	if res, err := a.RunOnce(ctx); err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("RunOnce with the repository back = %+v, %v; want committed 1.1.0", res, err)
	}
}
