package store

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMigrationsAreSequential(t *testing.T) {
	for _, d := range []string{DialectSQLite, DialectPostgres} {
		t.Run(d, func(t *testing.T) {
			m, err := loadMigrations(d)
			if err != nil {
				t.Fatal(err)
			}
			for i, mig := range m {
				if mig.version != i+1 || strings.TrimSpace(mig.sql) == "" {
					t.Fatalf("migration %d: %+v", i, mig)
				}
			}
		})
	}
	sv, _ := SchemaVersion(DialectSQLite)
	pv, _ := SchemaVersion(DialectPostgres)
	if sv != pv {
		t.Fatalf("sqlite schema version %d != postgres %d: every migration needs both dialects", sv, pv)
	}
}

func TestParseDSN(t *testing.T) {
	for _, tc := range []struct {
		dsn, dialect, target string
	}{
		{"sqlite:///var/lib/airlock/state.db", DialectSQLite, "/var/lib/airlock/state.db"},
		{"sqlite://state.db", DialectSQLite, "state.db"},
		{"/var/lib/airlock/state.db", DialectSQLite, "/var/lib/airlock/state.db"},
		{"state.db", DialectSQLite, "state.db"},
		{"postgres://u:p@db:5432/airlock?sslmode=verify-full", DialectPostgres, "postgres://u:p@db:5432/airlock?sslmode=verify-full"},
		{"postgresql://db/airlock", DialectPostgres, "postgresql://db/airlock"},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			d, target, err := ParseDSN(tc.dsn)
			if err != nil || d != tc.dialect || target != tc.target {
				t.Fatalf("ParseDSN = %q, %q, %v; want %q, %q", d, target, err, tc.dialect, tc.target)
			}
		})
	}
	for _, dsn := range []string{"", "http://x", "sqlite://", "a.db?mode=memory", "a.db#x", ":memory:",
		"file:a.db", "a\x00b", "\xff", strings.Repeat("a", MaxDSNLen+1)} {
		if _, _, err := ParseDSN(dsn); !errors.Is(err, ErrUnsupportedDSN) {
			t.Errorf("ParseDSN(%q) = %v, want ErrUnsupportedDSN", dsn, err)
		}
	}
}

func FuzzParseDSN(f *testing.F) {
	for _, s := range []string{"sqlite:///a/b.db", "a.db", "postgres://u@h/db", "postgresql://h/db?x=y", "x://y", "sqlite://?"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		d, target, err := ParseDSN(dsn)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedDSN) {
				t.Fatalf("error does not wrap ErrUnsupportedDSN: %v", err)
			}
			return
		}
		if len(dsn) > MaxDSNLen || !utf8.ValidString(dsn) || target == "" {
			t.Fatalf("accepted %q", dsn)
		}
		switch d {
		case DialectSQLite:
			if strings.ContainsAny(target, "?#\x00") {
				t.Fatalf("sqlite path %q would inject driver parameters", target)
			}
		case DialectPostgres:
			if target != dsn {
				t.Fatalf("postgres target %q != dsn %q", target, dsn)
			}
		default:
			t.Fatalf("unknown dialect %q", d)
		}
	})
}

// FuzzValidateDevice checks that device validation never panics and that
// anything it accepts is within the named limits.
func FuzzValidateDevice(f *testing.F) {
	f.Add("dev-0123456789abcdef", "x1", "acme/router", "stable", "lab", "1.0.0", "idle", "", "0a1b", strings.Repeat("ab", 32), uint64(1))
	f.Add("dev-1", "m", "p", "", "", "", "", "boom\nbang", "01", strings.Repeat("00", 32), uint64(MaxSecurityCounter))
	f.Fuzz(func(t *testing.T, id, model, product, channel, tag, version, state, lastErr, serial, fp string, counter uint64) {
		d := Device{ID: id, Model: model, Product: product, Channel: channel, CurrentVersion: version,
			State: state, LastError: lastErr, CertSerial: serial, CertFingerprint: fp, SecurityCounter: counter,
			EnrolledAt: timeForFuzz}
		if tag != "" {
			d.Tags = []string{tag}
		}
		err := validateDevice(&d)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		for _, s := range []string{d.Model, d.Product, d.Channel, d.CurrentVersion, d.CertSerial, d.CertFingerprint, tag} {
			if len(s) > MaxStringLen || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("accepted out-of-limit string %q", s)
			}
		}
		if len(d.ID) > MaxIDLen || len(d.LastError) > MaxMessageLen || !ValidState(d.State) || d.SecurityCounter > MaxSecurityCounter {
			t.Fatalf("accepted invalid device %+v", d)
		}
	})
}

var timeForFuzz = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// A database made by a version-1 binary keeps its admin tokens working: each
// becomes a user of its own with the token's role.
func TestMigrationTurnsLegacyAdminTokensIntoUsers(t *testing.T) {
	ctx := t.Context()
	s := openOldSQLite(t, "users_releases",
		`INSERT INTO admin_tokens (id, name, role, hash, created_at) VALUES ('at-1', 'ops laptop', 'viewer', x'`+strings.Repeat("ab", HashSize)+`', 1000000)`)
	hash := make([]byte, HashSize)
	for i := range hash {
		hash[i] = 0xab
	}
	tok, err := s.GetAdminTokenByHash(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUser(ctx, tok.UserID)
	if err != nil {
		t.Fatalf("legacy token's user: %v", err)
	}
	if u.Name != "token-at-1" || u.Role != "viewer" || u.Disabled() || u.TOTPSecret != nil {
		t.Fatalf("legacy token's user: %+v", u)
	}
}

// A database made before the slot column (schema 3) keeps its devices: their
// slot is unknown until their next check-in reports it.
func TestMigrationKeepsDevicesWithAnUnknownSlot(t *testing.T) {
	ctx := t.Context()
	s := openOldSQLite(t, "device_slot", `INSERT INTO devices (id, model, product, channel, hw_rev, tags, current_version,
		security_counter, state, last_error, cert_serial, cert_fingerprint, enrolled_at, last_seen)
		VALUES ('dev-old', 'x1', 'acme/router', '', 1, '[]', '1.0.0', 1, 'idle', '', '01', '`+strings.Repeat("ab", HashSize)+`', 1000000, NULL)`)
	d, err := s.GetDevice(ctx, "dev-old")
	if err != nil {
		t.Fatal(err)
	}
	if d.Slot != "" || d.State != StateIdle || d.CurrentVersion != "1.0.0" {
		t.Fatalf("migrated device: %+v", d)
	}
	if err := s.Checkin(ctx, "dev-old", DeviceReport{CurrentVersion: "1.0.0", State: StateIdle, Slot: "b"}, timeForFuzz); err != nil {
		t.Fatal(err)
	}
	if d, err = s.GetDevice(ctx, "dev-old"); err != nil || d.Slot != "b" {
		t.Fatalf("slot after check-in: %+v, %v", d, err)
	}
}

// A database with rollouts made before the rollout counters keeps its
// numbers: the migration fills assigned, in_flight and rollout_counts from
// the existing rollout_devices rows.
func TestMigrationBackfillsRolloutCounters(t *testing.T) {
	ctx := t.Context()
	stmts := []string{`INSERT INTO users (id, name, role, created_at) VALUES ('u-1', 'op', 'operator', 0)`,
		`INSERT INTO releases (id, product, version, environment, target_path, uploader, created_at)
			VALUES ('rel-1', 'acme/router', '2.0.0', 'dev', 'fw.img', 'u-1', 0)`,
		`INSERT INTO rollouts (id, release_id, product, version, target_path, filter, stages, success_threshold,
			failure_threshold, max_parallel, window_spec, forced, report_deadline, state, stage, ack_failed, reason,
			created_by, created_at, updated_at) VALUES ('ro-1', 'rel-1', 'acme/router', '2.0.0', 'fw.img', '', '2,100%',
			9500, 200, 0, '', 0, 1000000, 'running', 1, 0, '', 'u-1', 0, 0)`}
	states := []struct{ stage, state, reason string }{
		{"0", "succeeded", ""}, {"0", "failed", "timed_out"}, {"1", "in_progress", ""}, {"1", "assigned", ""}, {"1", "failed", "timed_out"},
	}
	for i, s := range states {
		stmts = append(stmts, fmt.Sprintf(`INSERT INTO devices (id, model, product, channel, hw_rev, tags, current_version,
			security_counter, state, last_error, cert_serial, cert_fingerprint, enrolled_at, last_seen)
			VALUES ('dev-%d', 'x1', 'acme/router', '', 1, '[]', '1.0.0', 1, 'idle', '', '0%d', '%s', 0, NULL)`,
			i, i, strings.Repeat(fmt.Sprintf("%02x", i), HashSize)),
			fmt.Sprintf(`INSERT INTO rollout_devices (rollout_id, device_id, product, active, stage, state, reason, assigned_at, updated_at)
			VALUES ('ro-1', 'dev-%d', 'acme/router', 1, %s, '%s', '%s', 0, 0)`, i, s.stage, s.state, s.reason))
	}
	s := openOldSQLite(t, "rollout_accounting", stmts...)
	r, err := s.GetRollout(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Assigned != 5 || r.InFlight != 2 || r.Eligible != 5 || r.Target != 5 {
		t.Fatalf("migrated counters: assigned %d, in_flight %d, eligible %d, target %d; want 5, 2, 5, 5", r.Assigned, r.InFlight, r.Eligible, r.Target)
	}
	cs, err := s.RolloutCounts(ctx, "ro-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []RolloutCount{{0, "failed", "timed_out", 1}, {0, "succeeded", "", 1}, {1, "assigned", "", 2}, {1, "failed", "timed_out", 1}}
	if fmt.Sprint(cs) != fmt.Sprint(want) {
		t.Fatalf("migrated counts %v, want %v", cs, want)
	}
}

// openOldSQLite makes an SQLite database at a temporary path with the
// migrations before the first one whose file name contains next, inserts
// rows into it, then opens it with Open, which applies the rest.
func openOldSQLite(t *testing.T, next string, rows ...string) Store {
	t.Helper()
	ctx := t.Context()
	migs, err := loadMigrations(DialectSQLite)
	if err != nil {
		t.Fatal(err)
	}
	n := slices.IndexFunc(migs, func(m migration) bool { return strings.Contains(m.name, next) })
	if n <= 0 {
		t.Fatalf("no migration after the first is named %q", next)
	}
	path := t.TempDir() + "/old.db"
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`}
	for _, m := range migs[:n] {
		stmts = append(stmts, m.sql, fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, 0)`, m.version))
	}
	for _, q := range append(stmts, rows...) {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
