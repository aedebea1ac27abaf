package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
)

// The durable report queue: every status report is written to
// ReportQueueFile in the device's state directory before it is first sent,
// and removed once the server acknowledged it (2xx). The server records a
// report ID once, so a report resent after a lost acknowledgement is not
// counted twice.
const (
	// MaxQueuedReports bounds the reports waiting for the server; when the
	// queue is full the oldest report is dropped (and logged).
	MaxQueuedReports = 64
	// MaxReportQueueSize bounds the queue file: MaxQueuedReports reports
	// of the largest size the device API accepts, and the framing.
	MaxReportQueueSize = MaxQueuedReports*(deviceapi.MaxStatusRequestSize+1) + 64
	// ReportQueueFile is the queue's file in the device's state directory.
	ReportQueueFile = "reports.json"
	// ReportQueueFormat is the only format version of the queue file.
	ReportQueueFormat = 1
)

// ErrCorruptReportQueue is wrapped when the report queue file does not
// parse. The agent moves such a file aside (ReportQueueFile+".corrupt"),
// logs it and starts with an empty queue: lost reports are the lesser harm
// than an agent that no longer updates.
var ErrCorruptReportQueue = errors.New("corrupt report queue file")

// reportQueue is the queue file: {"format":1,"reports":[...]}, oldest first.
type reportQueue struct {
	Format  int                      `json:"format"`
	Reports []deviceapi.StatusReport `json:"reports"`
}

// encodeReports is the one encoding of a queue.
func encodeReports(rs []deviceapi.StatusReport) []byte {
	if rs == nil {
		rs = []deviceapi.StatusReport{}
	}
	data, err := json.Marshal(reportQueue{Format: ReportQueueFormat, Reports: rs})
	if err != nil {
		panic("internal error: " + err.Error())
	}
	return append(data, '\n')
}

// parseReports parses a queue file strictly: within MaxReportQueueSize,
// the known format, at most MaxQueuedReports reports, each with a report
// ID and valid for the device API, and the bytes exactly as encodeReports
// writes them. Errors wrap ErrCorruptReportQueue.
func parseReports(data []byte) ([]deviceapi.StatusReport, error) {
	var q reportQueue
	err := (strictjson.Limits{Size: MaxReportQueueSize, Depth: 3}).Unmarshal(data, &q)
	if err == nil && (q.Format != ReportQueueFormat || len(q.Reports) > MaxQueuedReports) {
		err = fmt.Errorf("format %d with %d reports, want format %d with at most %d (MaxQueuedReports)", q.Format, len(q.Reports), ReportQueueFormat, MaxQueuedReports)
	}
	for i := 0; err == nil && i < len(q.Reports); i++ {
		if err = q.Reports[i].Validate(); err == nil && q.Reports[i].ID == "" {
			err = errors.New("a report without an id")
		}
	}
	if err == nil && !bytes.Equal(data, encodeReports(q.Reports)) {
		err = errors.New("not in its one encoding")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptReportQueue, err)
	}
	return q.Reports, nil
}

// queuePath is the report queue file of a cycle's device.
func queuePath(c *cycle) string {
	cfg := c.dev.Config()
	return filepath.Join(cfg.Path(cfg.StateDir), ReportQueueFile)
}

// loadReports reads the report queue: empty when there is none; a queue
// that cannot be read or parsed is moved aside and logged.
func (a *Agent) loadReports(path string) []deviceapi.StatusReport {
	data, err := durable.ReadFile(a.fs, path, MaxReportQueueSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	var rs []deviceapi.StatusReport
	if err == nil {
		if rs, err = parseReports(data); err == nil {
			return rs
		}
	}
	a.log.Error("discarding the report queue", "path", path, "moved_to", path+".corrupt", "error", err)
	if a.fs.Rename(path, path+".corrupt") == nil {
		a.fs.SyncDir(filepath.Dir(path))
	}
	return nil
}

// report logs a step and queues it durably for the server, then sends the
// queue. A report is never lost to a server that is down: it is resent at
// every report and every poll until acknowledged.
func (a *Agent) report(ctx context.Context, c *cycle, kind, version, msg string) {
	logf := a.log.Info
	if kind == deviceapi.StateFailed || kind == deviceapi.StateRolledBack {
		logf = a.log.Error
	}
	logf("update "+kind, "version", version, "message", msg)
	if c.api == nil || ctx.Err() != nil {
		// No server; or the agent is stopping, and a step it cut short
		// is not the device's failure to report.
		return
	}
	var id [deviceapi.ReportIDLength / 2]byte
	rand.Read(id[:])
	r := deviceapi.StatusReport{ID: hex.EncodeToString(id[:]), Kind: kind, Version: version, Message: deviceapi.CleanMessage(msg)}
	if err := r.Validate(); err != nil {
		// Never queue what the server refuses (or the queue's parser).
		a.log.Error("failed to queue a status report", "kind", kind, "error", err)
		return
	}
	path := queuePath(c)
	a.flush(ctx, path, c.api, a.enqueue(path, r))
}

// enqueue appends r to the queue at path, durably, and returns the queue.
// A full queue drops its oldest report; a queue that cannot be written is
// returned all the same, to be sent once without a copy on disk.
func (a *Agent) enqueue(path string, r deviceapi.StatusReport) []deviceapi.StatusReport {
	rs := append(a.loadReports(path), r)
	if n := len(rs) - MaxQueuedReports; n > 0 {
		a.log.Warn("report queue full (MaxQueuedReports): dropped the oldest report", "id", rs[0].ID, "kind", rs[0].Kind, "version", rs[0].Version)
		rs = rs[n:]
	}
	if err := durable.WriteFile(a.fs, path, encodeReports(rs), 0o644); err != nil {
		a.log.Error("failed to queue a status report; sending it without a copy on disk", "kind", r.Kind, "error", err)
	}
	return rs
}

// flushReports sends the queued reports, if any (at every poll).
func (a *Agent) flushReports(ctx context.Context, c *cycle) {
	path := queuePath(c)
	if rs := a.loadReports(path); len(rs) > 0 {
		a.flush(ctx, path, c.api, rs)
	}
}

// flush sends the queue rs (stored at path) in order and stores what is
// left: a report leaves the queue when the server acknowledged it, or
// refused it for good (a 4xx other than 408 and 429: resending would not
// help, and one bad report must not block the others). Any other failure
// stops the flush; the rest waits for the next report or poll.
func (a *Agent) flush(ctx context.Context, path string, api *apiClient, rs []deviceapi.StatusReport) {
	n := 0
	for _, r := range rs {
		// status returns an *httpStatusError unwrapped.
		err := api.status(ctx, r)
		he, _ := err.(*httpStatusError)
		if err != nil && !(he != nil && he.code >= 400 && he.code < 500 && he.code != http.StatusRequestTimeout && he.code != http.StatusTooManyRequests) {
			a.log.Warn("status reports stay queued", "queued", len(rs)-n, "error", err)
			break
		}
		if err != nil {
			a.log.Error("the server refused a status report: dropped", "id", r.ID, "error", err)
		}
		n++
	}
	if n == 0 {
		return
	}
	if err := durable.WriteFile(a.fs, path, encodeReports(rs[n:]), 0o644); err != nil {
		a.log.Error("failed to store the report queue", "error", err)
	}
}
