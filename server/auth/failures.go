package auth

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Failed authentications are audited, but not one fsync'd audit entry per
// request: an unauthenticated client must not be able to grow the
// tamper-evident log at the rate it sends requests. The first failure of a
// source (remote host), actor, reason and channel in a FailureWindow is
// audited at once, as before; the ones after it in that window are only
// counted, and FlushFailures writes one entry per key with the count (the
// server calls it every FailureWindow and at shutdown).

const (
	// FailureWindow is the interval over which failures are aggregated.
	FailureWindow = time.Minute
	// MaxFailureKeys bounds the keys counted in one window (memory); the
	// failures of further keys are counted under the source "other".
	MaxFailureKeys = 1024
)

type failureKey struct{ source, actor, reason, via string }

type failureCount struct {
	n           int // failures after the first, not yet audited
	first, last time.Time
	action      string
}

type failureLog struct {
	mu     sync.Mutex
	start  time.Time
	counts map[failureKey]*failureCount
}

// auditFailure audits a failed authentication of r: at once if it is the
// first of its key in the window, else counted for FlushFailures.
func (a *Authenticator) auditFailure(r *http.Request, actor string, details map[string]string) {
	now := a.now()
	source := r.RemoteAddr
	if host, _, err := net.SplitHostPort(source); err == nil {
		source = host
	}
	k := failureKey{source: source, actor: actor, reason: details["reason"], via: details["via"]}
	f := &a.fails
	f.mu.Lock()
	var old map[failureKey]*failureCount
	if f.counts == nil || now.Sub(f.start) >= FailureWindow {
		old, f.counts, f.start = f.counts, map[failureKey]*failureCount{}, now
	}
	c, seen := f.counts[k]
	if !seen && len(f.counts) >= MaxFailureKeys {
		k = failureKey{source: "other", actor: "unknown", reason: "many sources"} // the audit log needs an actor
		c, seen = f.counts[k]
	}
	if seen {
		c.n++
		c.last = now
	} else {
		f.counts[k] = &failureCount{first: now, last: now, action: details["action"]}
	}
	f.mu.Unlock()
	a.writeFailures(r.Context(), old)
	if !seen {
		a.audit(r.Context(), actor, AuditLoginFailed, details)
	}
}

// FlushFailures audits the failures counted but not yet audited, one entry
// per key with their count, and starts a new window.
func (a *Authenticator) FlushFailures(ctx context.Context) {
	f := &a.fails
	f.mu.Lock()
	old := f.counts
	f.counts, f.start = map[failureKey]*failureCount{}, a.now()
	f.mu.Unlock()
	a.writeFailures(ctx, old)
}

func (a *Authenticator) writeFailures(ctx context.Context, counts map[failureKey]*failureCount) {
	for k, c := range counts {
		if c.n == 0 {
			continue
		}
		d := map[string]string{"reason": k.reason, "remote": k.source, "count": strconv.Itoa(c.n), "aggregated": "true",
			"first": c.first.UTC().Format(time.RFC3339), "last": c.last.UTC().Format(time.RFC3339)}
		if k.via != "" {
			d["via"] = k.via
		}
		if c.action != "" {
			d["action"] = c.action
		}
		a.audit(ctx, k.actor, AuditLoginFailed, d)
	}
}
