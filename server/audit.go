package server

import (
	"context"
	"log/slog"

	"github.com/airlockfw/airlock/audit"
)

// AuditEvents returns a Config.Audit that appends the server's security
// events to rec (an audit.Log): logins, releases added, approved and
// deployed. Events the audit format has no action for (user changes) go to
// log instead, so nothing is dropped silently; a failed append is logged as
// an error.
func AuditEvents(rec audit.Recorder, log *slog.Logger) func(ctx context.Context, actor, action string, details map[string]string) {
	return func(ctx context.Context, actor, action string, details map[string]string) {
		a := audit.Action(action)
		if !a.Valid() {
			log.LogAttrs(ctx, slog.LevelInfo, "audit", slog.String("actor", actor), slog.String("action", action), slog.Any("details", details))
			return
		}
		e := audit.Entry{Actor: actor, Action: a, Release: details["release"], Device: details["device"], Details: details}
		if _, err := rec.Append(ctx, e); err != nil {
			log.Error("failed to append to the audit log", "action", action, "err", err)
		}
	}
}
