package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits of audit events, those of package audit's entries (the store does
// not import it): an event that passes here fits one audit entry, with one
// detail to spare for the outbox ID the drainer adds.
const (
	// MaxAuditDetails bounds the details of one audit event.
	MaxAuditDetails = 31
	// MaxAuditDetailKeyLen bounds a detail key, in bytes.
	MaxAuditDetailKeyLen = 64
	// MaxAuditDetailValueLen bounds a detail value, in bytes.
	MaxAuditDetailValueLen = 1024
	// MaxAuditOutboxBatch bounds what ListAuditOutbox returns.
	MaxAuditOutboxBatch = 1000
)

// AuditEvent is one security event on its way to the tamper-evident audit
// log (package audit), through the audit_outbox table.
type AuditEvent struct {
	Time    time.Time // required; WithAudit fills a zero time with the current time
	Actor   string    // required: a user name, a device ID or "airlock"
	Action  string    // required: an audit action such as "device.updated", [a-z0-9._-]
	Details map[string]string
}

// AuditOutboxEntry is a stored audit event not yet appended to the audit
// log; ID orders the outbox and identifies the entry in the log.
type AuditOutboxEntry struct {
	ID int64
	AuditEvent
}

// AuditOutbox is the audit outbox: events committed with the state changes
// they describe, waiting to be appended to the audit log. Attach events to
// a write with [WithAudit]; events that change nothing in the database
// (logins, logouts) are appended with AppendAudit.
type AuditOutbox interface {
	// AppendAudit stores ev in the outbox on its own (with the pending
	// events of ctx, see WithAudit).
	AppendAudit(ctx context.Context, ev AuditEvent) error

	// ListAuditOutbox returns up to limit (at most MaxAuditOutboxBatch)
	// outbox entries, lowest ID first.
	ListAuditOutbox(ctx context.Context, limit int) ([]AuditOutboxEntry, error)

	// DeleteAuditOutbox removes the entries with the given IDs (at most
	// MaxAuditOutboxBatch), in one transaction, and returns how many were
	// there.
	DeleteAuditOutbox(ctx context.Context, ids []int64) (int64, error)

	// CountAuditOutbox returns the number of entries in the outbox.
	CountAuditOutbox(ctx context.Context) (int64, error)

	// AuditOutboxNotify returns a channel that receives a value (coalesced)
	// after this process commits outbox entries. Other processes' commits
	// are not signalled: poll as well.
	AuditOutboxNotify() <-chan struct{}
}

func validateAuditEvent(ev AuditEvent) error {
	if err := checkTime("audit time", ev.Time); err != nil {
		return err
	}
	if err := checkString("audit actor", ev.Actor, true); err != nil {
		return err
	}
	if err := checkAuditKey("audit action", ev.Action, MaxStringLen); err != nil {
		return err
	}
	if len(ev.Details) > MaxAuditDetails {
		return invalid("audit details", "%d details exceed limit %d", len(ev.Details), MaxAuditDetails)
	}
	for k, v := range ev.Details {
		if err := checkAuditKey("audit detail key", k, MaxAuditDetailKeyLen); err != nil {
			return err
		}
		if err := checkText("audit detail "+k, v, MaxAuditDetailValueLen, false, false); err != nil {
			return err
		}
	}
	return nil
}

// checkAuditKey accepts 1..max bytes of [a-z0-9._-].
func checkAuditKey(field, s string, max int) error {
	if s == "" || len(s) > max {
		return invalid(field, "%d bytes outside 1..%d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return invalid(field, "character %q at offset %d is not allowed", c, i)
		}
	}
	return nil
}

// An auditBatch holds the audit events of a context until a store write
// made with that context commits them.
type auditBatch struct {
	mu     sync.Mutex
	events []*pendingAudit
}

type pendingAudit struct {
	ev    AuditEvent
	state int // auditPending, auditInFlight or auditWritten
}

const (
	auditPending = iota
	auditInFlight
	auditWritten
)

type auditBatchKey struct{}

// WithAudit returns a context carrying evs (which may be none) and an audit
// scope: [AttachAudit] adds events to it. The next state-changing Store call
// made with the context writes the scope's events to the audit outbox in
// the same transaction as its change: they commit together or not at all.
// A call that fails, or a one-statement write that changes no row, leaves
// the events pending for the next one (a write of several statements that
// succeeds commits them even if it changed nothing, as PutDirectorRoot of
// a stored version or TouchDevices of unknown devices do); once committed they are never written again, however often the
// context is reused. Events of a scope that no write commits are dropped
// with it. A scope hides the scope of the parent context.
func WithAudit(ctx context.Context, evs ...AuditEvent) context.Context {
	b := &auditBatch{}
	for _, ev := range evs {
		b.add(ev)
	}
	return context.WithValue(ctx, auditBatchKey{}, b)
}

// AttachAudit adds ev to the audit scope of ctx (see WithAudit) and reports
// whether ctx has one.
func AttachAudit(ctx context.Context, ev AuditEvent) bool {
	b, _ := ctx.Value(auditBatchKey{}).(*auditBatch)
	if b == nil {
		return false
	}
	b.add(ev)
	return true
}

func (b *auditBatch) add(ev AuditEvent) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	d := make(map[string]string, len(ev.Details))
	for k, v := range ev.Details {
		d[k] = v
	}
	ev.Details = d
	b.mu.Lock()
	b.events = append(b.events, &pendingAudit{ev: ev})
	b.mu.Unlock()
}

func auditBatchOf(ctx context.Context) *auditBatch {
	b, _ := ctx.Value(auditBatchKey{}).(*auditBatch)
	return b
}

// pending reports whether ctx has events to write.
func (b *auditBatch) pending() bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.events {
		if p.state == auditPending {
			return true
		}
	}
	return false
}

// claim marks the pending events in flight and returns them, so a
// concurrent write with the same context does not write them too.
func (b *auditBatch) claim() []*pendingAudit {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*pendingAudit
	for _, p := range b.events {
		if p.state == auditPending {
			p.state = auditInFlight
			out = append(out, p)
		}
	}
	return out
}

// settle marks claimed events written after a commit, or pending again.
func (b *auditBatch) settle(ps []*pendingAudit, committed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range ps {
		if committed {
			p.state = auditWritten
		} else {
			p.state = auditPending
		}
	}
}

// outboxBackend wraps a backend so that every write transaction, and every
// single write statement made with a context holding pending audit events,
// inserts those events into audit_outbox in the same transaction.
type outboxBackend struct {
	backend
	notify chan struct{}
}

func newSQLStore(b backend) *sqlStore {
	return &sqlStore{b: &outboxBackend{backend: b, notify: make(chan struct{}, 1)}}
}

func (o *outboxBackend) inTx(ctx context.Context, fn func(querier) error) error {
	batch := auditBatchOf(ctx)
	claimed := batch.claim()
	if len(claimed) == 0 {
		return o.backend.inTx(ctx, fn)
	}
	err := o.backend.inTx(ctx, func(q querier) error {
		if err := fn(q); err != nil {
			return err
		}
		for _, p := range claimed {
			if err := insertAudit(ctx, q, p.ev); err != nil {
				return err
			}
		}
		return nil
	})
	batch.settle(claimed, err == nil)
	if err == nil {
		o.signal()
	}
	return err
}

func (o *outboxBackend) signal() {
	select {
	case o.notify <- struct{}{}:
	default:
	}
}

func (o *outboxBackend) writer() querier { return outboxWriter{o} }

// errNoChange rolls back a single-statement write that changed no row: its
// audit events stay pending.
var errNoChange = errors.New("no row changed")

// outboxWriter runs a write statement in a transaction with the pending
// audit events of its context, or directly when there are none.
type outboxWriter struct{ o *outboxBackend }

func (w outboxWriter) exec(ctx context.Context, s string, args ...any) (int64, error) {
	if !auditBatchOf(ctx).pending() {
		return w.o.backend.writer().exec(ctx, s, args...)
	}
	var n int64
	err := w.o.inTx(ctx, func(q querier) error {
		var err error
		if n, err = q.exec(ctx, s, args...); err == nil && n == 0 {
			err = errNoChange
		}
		return err
	})
	if errors.Is(err, errNoChange) {
		return 0, nil
	}
	return n, err
}

func (w outboxWriter) queryRow(ctx context.Context, s string, args ...any) row {
	if !auditBatchOf(ctx).pending() {
		return w.o.backend.writer().queryRow(ctx, s, args...)
	}
	return txRow{func(dest ...any) error {
		return w.o.inTx(ctx, func(q querier) error { return q.queryRow(ctx, s, args...).Scan(dest...) })
	}}
}

func (w outboxWriter) query(ctx context.Context, s string, args ...any) (rows, error) {
	if auditBatchOf(ctx).pending() {
		return nil, errors.New("internal error: audit events cannot ride on a multi-row write query; use inTx")
	}
	return w.o.backend.writer().query(ctx, s, args...)
}

// txRow runs its statement, in a transaction, when scanned.
type txRow struct{ scan func(dest ...any) error }

func (r txRow) Scan(dest ...any) error { return r.scan(dest...) }

func insertAudit(ctx context.Context, q querier, ev AuditEvent) error {
	if err := validateAuditEvent(ev); err != nil {
		return err
	}
	details := ev.Details
	if details == nil {
		details = map[string]string{}
	}
	data, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("failed to encode audit details: %w", err)
	}
	_, err = q.exec(ctx, `INSERT INTO audit_outbox (time, actor, action, details) VALUES ($1, $2, $3, $4)`,
		dbTime(ev.Time), ev.Actor, ev.Action, string(data))
	if err != nil {
		return fmt.Errorf("failed to write audit event %q to the outbox: %w", ev.Action, err)
	}
	return nil
}

func (s *sqlStore) AppendAudit(ctx context.Context, ev AuditEvent) error {
	if err := validateAuditEvent(ev); err != nil {
		return err
	}
	err := s.b.inTx(ctx, func(q querier) error { return insertAudit(ctx, q, ev) })
	if err == nil {
		s.b.signal()
	}
	return err
}

func (s *sqlStore) ListAuditOutbox(ctx context.Context, limit int) ([]AuditOutboxEntry, error) {
	if limit <= 0 || limit > MaxAuditOutboxBatch {
		return nil, invalid("limit", "%d outside 1..%d", limit, MaxAuditOutboxBatch)
	}
	rs, err := s.b.reader().query(ctx, `SELECT id, time, actor, action, details FROM audit_outbox ORDER BY id LIMIT $1`, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("failed to list the audit outbox: %w", err)
	}
	defer rs.Close()
	var out []AuditOutboxEntry
	for rs.Next() {
		var e AuditOutboxEntry
		var at int64
		var details string
		if err := rs.Scan(&e.ID, &at, &e.Actor, &e.Action, &details); err != nil {
			return nil, fmt.Errorf("failed to list the audit outbox: %w", err)
		}
		e.Time = fromDBTime(at)
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return nil, fmt.Errorf("audit outbox entry %d: failed to decode details: %w", e.ID, err)
		}
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list the audit outbox: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DeleteAuditOutbox(ctx context.Context, ids []int64) (int64, error) {
	if len(ids) > MaxAuditOutboxBatch {
		return 0, invalid("ids", "%d exceed limit %d", len(ids), MaxAuditOutboxBatch)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var q strings.Builder
	q.WriteString(`DELETE FROM audit_outbox WHERE id IN (`)
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("$" + strconv.Itoa(i+1))
		args[i] = id
	}
	q.WriteString(")")
	n, err := s.b.writer().exec(ctx, q.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("failed to delete %d audit outbox entries: %w", len(ids), err)
	}
	return n, nil
}

func (s *sqlStore) CountAuditOutbox(ctx context.Context) (int64, error) {
	var n int64
	if err := s.b.reader().queryRow(ctx, `SELECT COUNT(*) FROM audit_outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("failed to count the audit outbox: %w", err)
	}
	return n, nil
}

func (s *sqlStore) AuditOutboxNotify() <-chan struct{} { return s.b.notify }

// SetAuditDetail sets a detail on the events of ctx's audit scope that are
// not written yet, for a value learned just before the write that commits
// them (the ID of a token being created). It does nothing without a scope.
func SetAuditDetail(ctx context.Context, key, value string) {
	b := auditBatchOf(ctx)
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.events {
		if p.state == auditPending {
			p.ev.Details[key] = value
		}
	}
}
