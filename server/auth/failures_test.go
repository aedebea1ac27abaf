package auth

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

type auditRec struct {
	mu      sync.Mutex
	entries []map[string]string
}

func (a *auditRec) audit(_ context.Context, actor, action string, d map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := map[string]string{"actor": actor, "action_name": action}
	for k, v := range d {
		e[k] = v
	}
	a.entries = append(a.entries, e)
}

// TestFailedAuthenticationsAreAggregated: 1,000 requests with a bad token
// from one client make two audit entries (the first failure, then the count
// of the rest), not 1,000; every failure is accounted for.
func TestFailedAuthenticationsAreAggregated(t *testing.T) {
	rec := &auditRec{}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	a, err := New(Config{Audit: rec.audit, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	bad := func(remote string) {
		r := httptest.NewRequest("GET", "/api/v1/devices", nil)
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer not-a-token")
		if _, err := a.Authenticate(r, ActionFleetRead); err == nil {
			t.Fatal("a bad token authenticated")
		}
	}
	for i := range 1000 {
		bad(fmt.Sprintf("192.0.2.7:%d", 40000+i)) // one host, many ports
	}
	bad("198.51.100.9:5555")
	if n := len(rec.entries); n != 2 {
		t.Fatalf("%d audit entries after 1,001 failures from two hosts before a flush, want 2 (one per host)", n)
	}
	a.FlushFailures(context.Background())
	total := 0
	for _, e := range rec.entries {
		n := 1
		if e["aggregated"] == "true" {
			n, _ = strconv.Atoi(e["count"])
		}
		total += n
		if e["action_name"] != AuditLoginFailed || e["reason"] != "bad_token" {
			t.Errorf("entry %v", e)
		}
	}
	if len(rec.entries) != 3 || total != 1001 {
		t.Fatalf("%d entries accounting for %d failures, want 3 for 1001: %v", len(rec.entries), total, rec.entries)
	}
	// A new window audits the first failure again at once; the previous
	// window's count is written when the window turns.
	bad("192.0.2.7:1")
	bad("192.0.2.7:2")
	now = now.Add(FailureWindow)
	bad("192.0.2.7:3")
	// entries[3]: ":1", the first of the new window; [4]: the count of
	// ":2"; [5]: ":3", the first of the next window.
	if len(rec.entries) != 6 || rec.entries[4]["aggregated"] != "true" || rec.entries[4]["count"] != "1" || rec.entries[5]["aggregated"] != "" {
		t.Fatalf("after the window turned: %v", rec.entries[3:])
	}
}

// TestFailureKeysAreBounded: many sources in one window are counted under
// "other" beyond MaxFailureKeys, so memory and entries stay bounded.
func TestFailureKeysAreBounded(t *testing.T) {
	rec := &auditRec{}
	a, err := New(Config{Audit: rec.audit})
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxFailureKeys + 500 {
		r := httptest.NewRequest("GET", "/api/v1/devices", nil)
		r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16&255, i>>8&255, i&255)
		r.Header.Set("Authorization", "Bearer x")
		a.Authenticate(r, ActionFleetRead)
	}
	a.FlushFailures(context.Background())
	if n := len(rec.entries); n > MaxFailureKeys+2 {
		t.Fatalf("%d audit entries for %d sources, want at most %d", n, MaxFailureKeys+500, MaxFailureKeys+2)
	}
	if got := len(a.fails.counts); got != 0 {
		t.Errorf("%d keys kept after the flush", got)
	}
	// The sources beyond the bound: the first audited at once, the other
	// 499 in one entry the audit log accepts (it refuses an empty actor).
	other := 0
	for _, e := range rec.entries {
		if e["actor"] == "" {
			t.Errorf("audit entry without an actor: %v", e)
		}
		if e["remote"] == "other" {
			other++
			if e["count"] != "499" {
				t.Errorf("the entry of the other sources counts %s failures, want 499", e["count"])
			}
		}
	}
	if other != 1 {
		t.Errorf("%d entries for the other sources, want 1", other)
	}
}
