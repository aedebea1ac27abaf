package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/audit"
)

type recorded struct {
	entries []audit.Entry
	err     error
}

func (r *recorded) Append(_ context.Context, e audit.Entry) (uint64, error) {
	r.entries = append(r.entries, e)
	return uint64(len(r.entries)), r.err
}

func TestAuditEventsAppendsKnownActionsAndLogsTheRest(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	rec := &recorded{}
	hook := AuditEvents(rec, log)
	ctx := context.Background()
	hook(ctx, "alice", string(audit.ReleaseAdded), map[string]string{"release": "acme/x@1.0.0", "device": ""})
	hook(ctx, "bob", "user.added", map[string]string{"user": "carol"})
	if len(rec.entries) != 1 {
		t.Fatalf("appended %d entries, want 1", len(rec.entries))
	}
	if e := rec.entries[0]; e.Actor != "alice" || e.Action != audit.ReleaseAdded || e.Release != "acme/x@1.0.0" {
		t.Errorf("entry = %+v", e)
	}
	if !strings.Contains(logged.String(), "user.added") {
		t.Errorf("an event without an audit action was not logged: %q", logged.String())
	}
	rec.err = errors.New("disk full")
	hook(ctx, "alice", string(audit.ReleaseAdded), map[string]string{"release": "acme/x@1.0.1"})
	if !strings.Contains(logged.String(), "failed to append to the audit log") {
		t.Errorf("a failed append was not logged: %q", logged.String())
	}
}
