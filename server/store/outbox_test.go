package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

// TestAuditEventFailsWithTheTransaction: a transaction that fails after
// the state change and the outbox insert (a failed COMMIT) leaves neither;
// the context's event stays pending and commits once with the next write.
func TestAuditEventFailsWithTheTransaction(t *testing.T) {
	for _, tc := range []struct {
		name string
		dsn  func(t testing.TB) string
	}{{"sqlite", sqliteDSN}, {"postgres", postgresDSN}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(t.Context(), tc.dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			d := store.Device{ID: "dev-1", Model: "x1", Product: "acme/router", CertSerial: "01", CertFingerprint: strings.Repeat("a", 64), EnrolledAt: time.Now()}
			ctx := store.WithAudit(t.Context(), store.AuditEvent{Actor: "dev-1", Action: "device.enrolled", Details: map[string]string{"device": "dev-1"}})

			store.FailCommits(s, true)
			if err := s.CreateDevice(ctx, d); !errors.Is(err, store.ErrInjectedCommit) {
				t.Fatalf("CreateDevice = %v, want the injected failure", err)
			}
			store.FailCommits(s, false)
			if _, err := s.GetDevice(t.Context(), d.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("device after a failed commit: %v", err)
			}
			if n, err := s.CountAuditOutbox(t.Context()); err != nil || n != 0 {
				t.Fatalf("outbox after a failed commit: %d, %v", n, err)
			}
			if err := s.CreateDevice(ctx, d); err != nil {
				t.Fatal(err)
			}
			if err := s.Checkin(ctx, d.ID, store.DeviceReport{CurrentVersion: "1", State: store.StateIdle}, time.Now()); err != nil {
				t.Fatal(err)
			}
			if n, err := s.CountAuditOutbox(t.Context()); err != nil || n != 1 {
				t.Fatalf("outbox after the commit and a second write: %d, %v; want 1", n, err)
			}
		})
	}
}
