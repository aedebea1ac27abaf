// Package storetest is the conformance suite every store.Store implementation
// must pass. It talks to a real database through store.Open, so the same
// tests run against SQLite and PostgreSQL.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" database/sql driver for raw access
	_ "modernc.org/sqlite"             // "sqlite" database/sql driver for raw access

	"github.com/airlockfw/airlock/server/store"
)

// NewDSN returns the DSN of a fresh, empty database; it is called once per
// subtest.
type NewDSN func(t *testing.T) string

// Run runs the conformance suite. newDSN must return a new empty database
// each call.
func Run(t *testing.T, newDSN NewDSN) {
	tests := []struct {
		name string
		fn   func(t *testing.T, newDSN NewDSN)
	}{
		{"EnrollmentTokenLifecycle", testEnrollmentTokenLifecycle},
		{"EnrollmentTokenUsesNeverOverspentConcurrently", testConcurrentConsume},
		{"DeviceRoundTrip", testDeviceRoundTrip},
		{"DeviceDuplicatesRejected", testDeviceDuplicates},
		{"DeviceInputValidated", testDeviceValidation},
		{"ListDevicesFiltersAndPages", testListDevices},
		{"CountDevicesByVersion", testCountDevicesByVersion},
		{"CheckinRecordsReport", testCheckin},
		{"ConcurrentCheckinsAllSucceed", testConcurrentCheckins},
		{"TouchDevicesMovesLastSeenForward", testTouchDevices},
		{"EventsUpdateDeviceState", testEvents},
		{"ReportIDsRecordedOnce", testReportIDs},
		{"AdminTokenLifecycle", testAdminTokens},
		{"UserLifecycle", testUsers},
		{"TOTPStepNeverAcceptedTwice", testTOTPReplay},
		{"TOTPStepConcurrentlyAcceptedOnce", testTOTPConcurrent},
		{"TOTPSecretStoredAsGiven", testTOTPSecret},
		{"AdminSessionLifecycle", testAdminSessions},
		{"AdminSessionsBoundedPerUser", testAdminSessionLimit},
		{"DashboardSessionsSharedByReplicas", testDashboardSessions},
		{"DashboardSessionsBounded", testDashboardSessionsBounded},
		{"TOTPAttemptsCountedAtomicallyAcrossReplicas", testTOTPAttempts},
		{"DirectorRootsFirstWriterWins", testDirectorRoots},
		{"ReleaseApprovalsAreDistinctAndNotSelf", testApprovals},
		{"DeployNeedsApprovalsFromEnabledUsers", testDeploy},
		{"ReleaseInputValidated", testReleaseValidation},
		{"SecretPutOnce", testSecrets},
		{"RolloutRoundTripAndCompareAndSwap", testRolloutRoundTrip},
		{"DeviceInAtMostOneActiveRolloutPerProduct", testOneActiveRollout},
		{"RolloutCountsAndOverdueDevices", testRolloutProgress},
		{"RolloutAdmissionNeverOvershootsAcrossStores", testRolloutAdmission},
		{"LeaseOneHolderWithFailover", testLeases},
		{"DeviceTagsReplaced", testDeviceTags},
		{"DirectorVersionsOnlyMoveForward", testDirectorState},
		{"AuditEventCommitsWithItsChange", testAuditCommitsWithItsChange},
		{"AuditOutboxDrainsInOrderOnce", testAuditOutboxDrain},
		{"Stats", testStats},
		{"TimesRoundTripInUTC", testTimes},
		{"ReopenIsIdempotentAndKeepsData", testReopen},
		{"NewerSchemaRefused", testNewerSchema},
		{"CanceledContextFails", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newDSN) })
	}
}

// base is a fixed instant with microsecond precision, in a non-UTC zone so
// the tests prove times come back in UTC.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.FixedZone("X", 5*3600))

func at(d time.Duration) time.Time { return base.Add(d) }

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

func open(t testing.TB, dsn string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func fresh(t *testing.T, newDSN NewDSN) store.Store { return open(t, newDSN(t)) }

// cmpOpts treats nil and empty slices alike; cmp compares times with their
// Equal method, so zones do not matter (testTimes checks UTC separately).
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func device(n int) store.Device {
	return store.Device{
		ID:              fmt.Sprintf("dev-%016x", n),
		Model:           "x1",
		Product:         "acme/router",
		Channel:         "stable",
		HWRev:           3,
		Tags:            []string{"lab", fmt.Sprintf("rack-%d", n%3)},
		CurrentVersion:  "1.0.0",
		SecurityCounter: 1,
		State:           store.StateIdle,
		CertSerial:      fmt.Sprintf("%x", 0x1000+n),
		CertFingerprint: fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(n)))),
		EnrolledAt:      at(time.Duration(n) * time.Second),
	}
}

func mustCreate(t testing.TB, s store.Store, devs ...store.Device) {
	t.Helper()
	for _, d := range devs {
		if err := s.CreateDevice(context.Background(), d); err != nil {
			t.Fatalf("CreateDevice(%s): %v", d.ID, err)
		}
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

// BenchCheckin measures Checkin on a store holding 100 devices, from
// GOMAXPROCS goroutines.
func BenchCheckin(b *testing.B, s store.Store) {
	ctx := context.Background()
	const devices = 100
	for i := range devices {
		mustCreate(b, s, device(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var worker atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := worker.Add(1) * 1_000_000_000
		for pb.Next() {
			i++
			r := store.DeviceReport{CurrentVersion: "1.0.1", SecurityCounter: uint64(i), State: store.StateIdle}
			if err := s.Checkin(ctx, device(int(i%devices)).ID, r, at(time.Duration(i))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
