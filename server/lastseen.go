package server

import (
	"context"
	"sync"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

// LastSeenFlushInterval is how often the check-ins that changed nothing but
// the time a device was last seen are written to the store, in one
// transaction. A device's stored last_seen lags by at most this much (and a
// crash loses at most this much of it: nothing else).
const LastSeenFlushInterval = 5 * time.Second

// lastSeen batches the last_seen writes of check-ins that report exactly
// what the store already holds, so a fleet polling with nothing to do costs
// one write per interval instead of one per check-in.
type lastSeen struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// note records that device id was seen at t. It returns false when the
// batch is full, and the caller writes the check-in itself.
func (l *lastSeen) note(id string, t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	if _, ok := l.seen[id]; !ok && len(l.seen) >= store.MaxTouchDevices {
		return false
	}
	if t.After(l.seen[id]) {
		l.seen[id] = t
	}
	return true
}

// flush writes the batch. On failure the batch is merged back, so the
// next flush retries it.
func (l *lastSeen) flush(ctx context.Context, db store.Store) error {
	l.mu.Lock()
	batch := l.seen
	l.seen = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := db.TouchDevices(ctx, batch)
	if err != nil {
		for id, t := range batch {
			l.note(id, t) // a full batch drops the rest, as note does
		}
	}
	return err
}

// unchanged reports whether a check-in reports what the store holds for d.
func unchanged(d store.Device, r store.DeviceReport) bool {
	return d.CurrentVersion == r.CurrentVersion && d.SecurityCounter == r.SecurityCounter &&
		d.State == r.State && d.Slot == r.Slot && d.LastError == r.LastError && !d.LastSeen.IsZero()
}
