package server

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/server/store"
)

// Audit outbox draining (docs/audit.md).
const (
	// AuditOutboxIDDetail is the detail of an audit entry holding the ID of
	// the outbox entry it was copied from: how a drainer that takes over
	// after a crash tells whether the last entry was appended already.
	AuditOutboxIDDetail = "outbox_id"
	// DefaultAuditPoll is how often the process holding the audit log looks
	// at the outbox for events committed by other processes (its own
	// commits wake it at once).
	DefaultAuditPoll = time.Second
	// DefaultAuditRetry is how often a process that does not hold the
	// audit log tries to take it (audit.Open fails with audit.ErrLocked
	// while another process holds it).
	DefaultAuditRetry = 2 * time.Second
	// AuditDrainBatch is how many outbox entries one drain step reads.
	AuditDrainBatch = 100
	// AuditDrainShutdownTimeout bounds the last drain when Serve stops.
	AuditDrainShutdownTimeout = 5 * time.Second
)

// AuditOutbox returns a Config.Audit that writes the server's security
// events to the audit outbox of db (store.AuditOutbox), from which the
// process holding the audit log appends them to it (AuditDrainer). When
// ctx has an audit scope (store.WithAudit) the event joins it and commits
// with the next store write made with ctx, in the same transaction;
// otherwise it is stored on its own. An event that the audit log would
// refuse (an unknown action, an over-long detail) or that cannot be stored
// is logged as an error to log.
func AuditOutbox(db store.AuditOutbox, log *slog.Logger) func(ctx context.Context, actor, action string, details map[string]string) {
	return func(ctx context.Context, actor, action string, details map[string]string) {
		ev := store.AuditEvent{Time: time.Now(), Actor: actor, Action: action, Details: details}
		e := entryOf(ev)
		if err := e.Validate(); err != nil {
			log.LogAttrs(ctx, slog.LevelError, "audit event refused", slog.String("actor", actor), slog.String("action", action), slog.Any("details", details), slog.Any("err", err))
			return
		}
		if _, ok := details[AuditOutboxIDDetail]; ok {
			log.LogAttrs(ctx, slog.LevelError, "audit event refused", slog.String("action", action), slog.String("err", "reserved detail "+AuditOutboxIDDetail))
			return
		}
		if store.AttachAudit(ctx, ev) {
			return
		}
		if err := db.AppendAudit(context.WithoutCancel(ctx), ev); err != nil {
			log.LogAttrs(ctx, slog.LevelError, "failed to write an audit event to the outbox", slog.String("actor", actor), slog.String("action", action), slog.Any("details", details), slog.Any("err", err))
		}
	}
}

// entryOf is the audit entry of an outbox event: the release and device
// details also fill the entry's own fields, as `audit show` filters on them.
func entryOf(ev store.AuditEvent) audit.Entry {
	return audit.Entry{Time: ev.Time, Actor: ev.Actor, Action: audit.Action(ev.Action),
		Release: ev.Details["release"], Device: ev.Details["device"], Details: ev.Details}
}

// outboxEntry is the audit entry of an outbox entry, carrying its ID.
func outboxEntry(ob store.AuditOutboxEntry) audit.Entry {
	e := entryOf(ob.AuditEvent)
	e.Details = make(map[string]string, len(ob.Details)+1)
	for k, v := range ob.Details {
		e.Details[k] = v
	}
	e.Details[AuditOutboxIDDetail] = strconv.FormatInt(ob.ID, 10)
	return e
}

// AuditDrainer appends the audit outbox to the audit log, in outbox ID
// order, deleting each entry once appended. Any number of processes may
// run one against the same database and audit directory: only the one that
// holds the log (audit.Open's lock) drains, and when it dies another takes
// the lock over. Each appended entry carries its outbox ID
// (AuditOutboxIDDetail); a drainer that opens the log deletes the outbox
// entry the log's last entry came from if a crash left it behind, so every
// event is appended exactly once.
type AuditDrainer struct {
	// DB holds the outbox. Required.
	DB store.Store
	// Open opens the audit log (e.g. audit.OpenWithKey). Required.
	Open func() (*audit.Log, error)
	// Log receives errors and take-overs; nil means discard.
	Log *slog.Logger
	// Poll and Retry: zero means DefaultAuditPoll and DefaultAuditRetry.
	Poll, Retry time.Duration

	appended map[int64]audit.Entry // appended entries whose outbox rows may not be deleted yet, by outbox ID
	failedID int64                 // the outbox entry the log refused last (logged once)
	metrics  *drainMetrics
	held     func() // tests: called after the log is opened
}

type drainMetrics struct {
	drained prometheus.Counter
	holding prometheus.Gauge
}

// errAppend marks an append failure: the log is closed and reopened.
var errAppend = errors.New("audit append failed")

// Run drains the outbox until ctx is done, then drains what is left for up
// to AuditDrainShutdownTimeout and closes the log.
func (d *AuditDrainer) Run(ctx context.Context) {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll, retry := d.Poll, d.Retry
	if poll <= 0 {
		poll = DefaultAuditPoll
	}
	if retry <= 0 {
		retry = DefaultAuditRetry
	}
	var l *audit.Log
	release := func() {
		if l != nil {
			if err := l.Close(); err != nil {
				log.Error("failed to close the audit log", "err", err)
			}
			l = nil
			d.setHolding(0)
		}
	}
	defer release()
	lockedLogged := false
	for {
		wait := poll
		if l == nil {
			var err error
			l, err = d.Open()
			switch {
			case errors.Is(err, audit.ErrLocked):
				if !lockedLogged {
					log.Info("the audit log is held by another process; writing audit events to the outbox only")
					lockedLogged = true
				}
				wait = retry
			case err != nil:
				log.Error("failed to open the audit log; audit events wait in the outbox", "err", err)
				wait = retry
			default:
				lockedLogged = false
				d.setHolding(1)
				log.Info("holding the audit log; draining the audit outbox", "entries", l.Size())
				// A crash may have left the last batch appended but not
				// deleted; it is in the log's tail.
				d.appended = map[int64]audit.Entry{}
				for _, e := range l.Tail(audit.MaxTail) {
					if id, err := strconv.ParseInt(e.Details[AuditOutboxIDDetail], 10, 64); err == nil {
						d.appended[id] = e
					}
				}
				if d.held != nil {
					d.held()
				}
			}
		}
		if l != nil {
			if _, err := d.drain(ctx, l); err != nil && ctx.Err() == nil {
				if errors.Is(err, errAppend) {
					release()
				}
				wait = retry
			}
		}
		select {
		case <-ctx.Done():
			if l != nil {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AuditDrainShutdownTimeout)
				d.drain(sctx, l)
				cancel()
			}
			return
		case <-d.DB.AuditOutboxNotify():
		case <-time.After(wait):
		}
	}
}

func (d *AuditDrainer) setHolding(v float64) {
	if d.metrics != nil {
		d.metrics.holding.Set(v)
	}
}

// drain appends the outbox to l until it is empty, and returns how many
// entries it appended. Each batch is one append (one fsync) and one delete
// (one commit); a batch appended but not deleted (a crash, a failed delete)
// is recognized by its outbox IDs in the log's tail and only deleted.
func (d *AuditDrainer) drain(ctx context.Context, l *audit.Log) (int, error) {
	log := d.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := 0
	for {
		batch, err := d.DB.ListAuditOutbox(ctx, AuditDrainBatch)
		if err != nil {
			log.Error("failed to read the audit outbox", "err", err)
			return n, err
		}
		if len(batch) == 0 {
			return n, nil
		}
		var (
			add     []audit.Entry
			addIDs  []int64
			ids     []int64
			blocked error // an entry the log refuses: the batch stops before it
		)
		for _, ob := range batch {
			e := outboxEntry(ob)
			if prev, ok := d.appended[ob.ID]; ok && sameEntry(prev, e) {
				ids = append(ids, ob.ID) // appended before a crash or a failed delete
				continue
			}
			if err := e.Validate(); err != nil {
				if ob.ID != d.failedID {
					log.Error("the audit log refuses an outbox entry; audit events wait in the outbox", "outbox_id", ob.ID, "action", ob.Action, "err", err)
					d.failedID = ob.ID
				}
				blocked = err // e.g. an action a newer server wrote: wait for an upgrade
				break
			}
			add, addIDs, ids = append(add, e), append(addIDs, ob.ID), append(ids, ob.ID)
		}
		if k := len(ids) - len(add); k > 0 {
			log.Info("audit outbox entries already in the log; deleting them", "entries", k)
		}
		if len(add) > 0 {
			size := l.Size()
			if _, err := l.AppendBatch(ctx, add); err != nil {
				if l.Size() == size {
					log.Error("failed to append to the audit log; audit events wait in the outbox", "outbox_id", addIDs[0], "err", err)
					return n, errors.Join(errAppend, err)
				}
				log.Error("audit entries appended, but", "err", err) // the checkpoint failed
			}
			if d.appended == nil {
				d.appended = map[int64]audit.Entry{}
			}
			for i, id := range addIDs {
				d.appended[id] = add[i]
			}
			n += len(add)
			if d.metrics != nil {
				d.metrics.drained.Add(float64(len(add)))
			}
		}
		if len(ids) > 0 {
			if _, err := d.DB.DeleteAuditOutbox(ctx, ids); err != nil {
				log.Error("failed to delete appended audit outbox entries", "outbox_ids", len(ids), "err", err)
				return n, err
			}
		}
		clear(d.appended)
		if blocked != nil {
			return n, blocked
		}
		d.failedID = 0
	}
}

// sameEntry reports whether e (with its outbox ID) is logged, the entry
// appended for it.
func sameEntry(logged, e audit.Entry) bool {
	e.Seq, e.Prev = logged.Seq, logged.Prev
	e.Time = e.Time.UTC().Round(0)
	return string(e.Encode()) == string(logged.Encode())
}

// auditBacklog reports airlock_audit_outbox_backlog from the store at
// scrape time.
type auditBacklog struct {
	db      store.Store
	timeout time.Duration
}

var auditBacklogDesc = prometheus.NewDesc("airlock_audit_outbox_backlog",
	"Audit events committed to the database's outbox and not yet appended to the audit log.", nil, nil)

func (c auditBacklog) Describe(ch chan<- *prometheus.Desc) { ch <- auditBacklogDesc }

func (c auditBacklog) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	n, err := c.db.CountAuditOutbox(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(auditBacklogDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(auditBacklogDesc, prometheus.GaugeValue, float64(n))
}

// newDrainMetrics registers the drainer's metrics on reg.
func newDrainMetrics(reg prometheus.Registerer) *drainMetrics {
	m := &drainMetrics{
		drained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_audit_drained_total",
			Help: "Audit outbox entries this process appended to the audit log.",
		}),
		holding: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "airlock_audit_log_held",
			Help: "1 while this process holds the audit log and drains the outbox into it.",
		}),
	}
	reg.MustRegister(m.drained, m.holding)
	return m
}
