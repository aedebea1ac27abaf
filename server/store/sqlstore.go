package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sqlStore implements Store on top of a backend; all SQL is shared between
// the dialects and parameterized.
type sqlStore struct {
	// b is the database behind the audit outbox: every write, in a
	// transaction or not, carries the pending audit events of its context.
	b *outboxBackend
}

var _ Store = (*sqlStore)(nil)

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// mapErr turns driver errors callers branch on into ErrExists.
func (s *sqlStore) mapErr(err error) error {
	if err != nil && s.b.isUnique(err) {
		return fmt.Errorf("%w: %v", ErrExists, err)
	}
	return err
}

func (s *sqlStore) CreateEnrollmentToken(ctx context.Context, t EnrollmentToken) error {
	if err := validateEnrollmentToken(t); err != nil {
		return err
	}
	_, err := s.b.writer().exec(ctx, `INSERT INTO enrollment_tokens
		(id, hash, product, model, uses_left, expires_at, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Hash, t.Product, t.Model, int64(t.UsesLeft), dbTime(t.ExpiresAt), dbTime(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("failed to create enrollment token %q: %w", t.ID, s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) ConsumeEnrollmentToken(ctx context.Context, hash []byte, now time.Time) (EnrollmentToken, error) {
	if err := checkHash("enrollment token hash", hash); err != nil {
		return EnrollmentToken{}, err
	}
	if err := checkTime("now", now); err != nil {
		return EnrollmentToken{}, err
	}
	// One statement: the row lock (PostgreSQL) or the single writer (SQLite)
	// makes the check and the decrement atomic.
	var t EnrollmentToken
	var uses, exp, created int64
	err := s.b.writer().queryRow(ctx, `UPDATE enrollment_tokens SET uses_left = uses_left - 1
		WHERE hash = $1 AND uses_left > 0 AND expires_at > $2
		RETURNING id, hash, product, model, uses_left, expires_at, created_at`,
		hash, dbTime(now)).Scan(&t.ID, &t.Hash, &t.Product, &t.Model, &uses, &exp, &created)
	if isNoRows(err) {
		return EnrollmentToken{}, fmt.Errorf("failed to consume enrollment token: %w", ErrNotFound)
	}
	if err != nil {
		return EnrollmentToken{}, fmt.Errorf("failed to consume enrollment token: %w", err)
	}
	t.UsesLeft = int(uses)
	t.ExpiresAt, t.CreatedAt = fromDBTime(exp), fromDBTime(created)
	return t, nil
}

const deviceColumns = `id, model, product, channel, hw_rev, tags, current_version,
	security_counter, state, slot, last_error, cert_serial, cert_fingerprint, enrolled_at, last_seen`

func scanDevice(r row) (Device, error) {
	var d Device
	var hwrev, counter, enrolled int64
	var tags string
	var lastSeen sql.NullInt64
	if err := r.Scan(&d.ID, &d.Model, &d.Product, &d.Channel, &hwrev, &tags, &d.CurrentVersion,
		&counter, &d.State, &d.Slot, &d.LastError, &d.CertSerial, &d.CertFingerprint, &enrolled, &lastSeen); err != nil {
		return Device{}, err
	}
	if hwrev < 0 || hwrev > 1<<32-1 || counter < 0 {
		return Device{}, fmt.Errorf("device %q: stored hw_rev %d or security_counter %d out of range", d.ID, hwrev, counter)
	}
	d.HWRev, d.SecurityCounter = uint32(hwrev), uint64(counter)
	if err := json.Unmarshal([]byte(tags), &d.Tags); err != nil {
		return Device{}, fmt.Errorf("device %q: failed to decode stored tags: %w", d.ID, err)
	}
	if len(d.Tags) == 0 {
		d.Tags = nil
	}
	d.EnrolledAt, d.LastSeen = fromDBTime(enrolled), fromDBOptTime(lastSeen)
	return d, nil
}

func (s *sqlStore) CreateDevice(ctx context.Context, d Device) error {
	if err := validateDevice(&d); err != nil {
		return err
	}
	tags := d.Tags
	if tags == nil {
		tags = []string{}
	}
	tagsJSON, err := json.Marshal(tags)
	if err != nil {
		return fmt.Errorf("failed to encode device tags: %w", err)
	}
	_, err = s.b.writer().exec(ctx, `INSERT INTO devices (`+deviceColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		d.ID, d.Model, d.Product, d.Channel, int64(d.HWRev), string(tagsJSON), d.CurrentVersion,
		int64(d.SecurityCounter), d.State, d.Slot, d.LastError, d.CertSerial, d.CertFingerprint,
		dbTime(d.EnrolledAt), dbOptTime(d.LastSeen))
	if err != nil {
		return fmt.Errorf("failed to create device %q: %w", d.ID, s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetDevice(ctx context.Context, id string) (Device, error) {
	if err := checkID("device id", id); err != nil {
		return Device{}, err
	}
	d, err := scanDevice(s.b.reader().queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if isNoRows(err) {
		return Device{}, fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("failed to get device %q: %w", id, err)
	}
	return d, nil
}

func (s *sqlStore) GetDeviceByCertSerial(ctx context.Context, serial string) (Device, error) {
	if err := checkHex("cert serial", serial, 0); err != nil {
		return Device{}, err
	}
	d, err := scanDevice(s.b.reader().queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE cert_serial = $1`, serial))
	if isNoRows(err) {
		return Device{}, fmt.Errorf("device with cert serial %q: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("failed to get device by cert serial: %w", err)
	}
	return d, nil
}

func (s *sqlStore) ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error) {
	limit, err := checkLimit(f.Limit)
	if err != nil {
		return nil, err
	}
	if f.Offset < 0 || f.Offset > MaxListOffset {
		return nil, invalid("offset", "%d outside 0..%d", f.Offset, MaxListOffset)
	}
	var where []string
	var args []any
	for _, c := range []struct{ field, column, value string }{
		{"filter product", "product", f.Product},
		{"filter model", "model", f.Model},
		{"filter channel", "channel", f.Channel},
		{"filter state", "state", f.State},
		{"filter version", "current_version", f.Version},
	} {
		if c.value == "" {
			continue
		}
		if err := checkString(c.field, c.value, false); err != nil {
			return nil, err
		}
		args = append(args, c.value)
		where = append(where, c.column+" = $"+strconv.Itoa(len(args)))
	}
	if f.After != "" {
		if err := checkID("filter after", f.After); err != nil {
			return nil, err
		}
		args = append(args, f.After)
		where = append(where, "id > $"+strconv.Itoa(len(args)))
	}
	q := `SELECT ` + deviceColumns + ` FROM devices`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, int64(limit), int64(f.Offset))
	q += fmt.Sprintf(` ORDER BY id LIMIT $%d OFFSET $%d`, len(args)-1, len(args))
	rs, err := s.b.reader().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to list devices: %w", err)
	}
	defer rs.Close()
	var out []Device
	for rs.Next() {
		d, err := scanDevice(rs)
		if err != nil {
			return nil, fmt.Errorf("failed to list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list devices: %w", err)
	}
	return out, nil
}

func (s *sqlStore) CountDevicesByVersion(ctx context.Context, product string) (map[string]int, error) {
	if err := checkString("product", product, false); err != nil {
		return nil, err
	}
	q := `SELECT current_version, COUNT(*) FROM devices`
	var args []any
	if product != "" {
		q += ` WHERE product = $1`
		args = append(args, product)
	}
	q += ` GROUP BY current_version`
	rs, err := s.b.reader().query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("failed to count devices: %w", err)
	}
	defer rs.Close()
	out := make(map[string]int)
	for rs.Next() {
		var v string
		var n int64
		if err := rs.Scan(&v, &n); err != nil {
			return nil, fmt.Errorf("failed to count devices: %w", err)
		}
		out[v] = int(n)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to count devices: %w", err)
	}
	return out, nil
}

func (s *sqlStore) Checkin(ctx context.Context, id string, r DeviceReport, now time.Time) error {
	if err := checkID("device id", id); err != nil {
		return err
	}
	if err := validateReport(r); err != nil {
		return err
	}
	if err := checkTime("now", now); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE devices SET current_version = $1, security_counter = $2,
		state = $3, slot = $4, last_error = $5, last_seen = $6 WHERE id = $7`,
		r.CurrentVersion, int64(r.SecurityCounter), r.State, r.Slot, r.LastError, dbTime(now), id)
	if err != nil {
		return fmt.Errorf("failed to record check-in of device %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("device %q: %w", id, ErrNotFound)
	}
	return nil
}

// MaxTouchDevices bounds one TouchDevices call.
const MaxTouchDevices = 100_000

func (s *sqlStore) TouchDevices(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) > MaxTouchDevices {
		return invalid("devices", "%d to touch, at most %d", len(seen), MaxTouchDevices)
	}
	for id, t := range seen {
		if err := checkID("device id", id); err != nil {
			return err
		}
		if err := checkTime("last seen", t); err != nil {
			return err
		}
	}
	if len(seen) == 0 {
		return nil
	}
	// In ID order, so that two servers touching the same devices take
	// their row locks (PostgreSQL) in the same order and never deadlock.
	ids := slices.Sorted(maps.Keys(seen))
	err := s.b.inTx(ctx, func(q querier) error {
		for _, id := range ids {
			if _, err := q.exec(ctx, `UPDATE devices SET last_seen = $1 WHERE id = $2 AND (last_seen IS NULL OR last_seen < $1)`,
				dbTime(seen[id]), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to record when %d devices were last seen: %w", len(seen), err)
	}
	return nil
}

func (s *sqlStore) AddEvent(ctx context.Context, e Event) (int64, error) {
	if err := validateEvent(e); err != nil {
		return 0, err
	}
	var id int64
	err := s.b.inTx(ctx, func(q querier) error {
		// The device update doubles as the existence check.
		var n int64
		var err error
		switch {
		case e.Kind == StateFailed || e.Kind == StateRolledBack:
			n, err = q.exec(ctx, `UPDATE devices SET state = $1, last_error = $2 WHERE id = $3`, e.Kind, e.Message, e.DeviceID)
		case e.Kind == StateCommitted && e.Version != "":
			n, err = q.exec(ctx, `UPDATE devices SET state = $1, last_error = '', current_version = $2 WHERE id = $3`, e.Kind, e.Version, e.DeviceID)
		case e.Kind == StateCommitted:
			n, err = q.exec(ctx, `UPDATE devices SET state = $1, last_error = '' WHERE id = $2`, e.Kind, e.DeviceID)
		case ValidState(e.Kind):
			n, err = q.exec(ctx, `UPDATE devices SET state = $1 WHERE id = $2`, e.Kind, e.DeviceID)
		default:
			var one int64
			err = q.queryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, e.DeviceID).Scan(&one)
			if err == nil {
				n = 1
			} else if isNoRows(err) {
				err = nil
			}
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("device %q: %w", e.DeviceID, ErrNotFound)
		}
		// The partial unique index on (device_id, report_id) refuses a
		// report ID recorded before; the device update is rolled back with
		// the insert.
		return q.queryRow(ctx, `INSERT INTO events (device_id, occurred_at, kind, version, message, report_id)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
			e.DeviceID, dbTime(e.Time), e.Kind, e.Version, e.Message, e.ReportID).Scan(&id)
	})
	if err != nil && e.ReportID != "" && s.b.isUnique(err) {
		return 0, fmt.Errorf("device %q report %q: %w", e.DeviceID, e.ReportID, ErrDuplicateReport)
	}
	if err != nil {
		return 0, fmt.Errorf("failed to add event for device %q: %w", e.DeviceID, err)
	}
	return id, nil
}

func (s *sqlStore) ListEvents(ctx context.Context, deviceID string, limit int) ([]Event, error) {
	if err := checkID("device id", deviceID); err != nil {
		return nil, err
	}
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var one int64
	err = s.b.reader().queryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, deviceID).Scan(&one)
	if isNoRows(err) {
		return nil, fmt.Errorf("device %q: %w", deviceID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list events of device %q: %w", deviceID, err)
	}
	rs, err := s.b.reader().query(ctx, `SELECT id, device_id, occurred_at, kind, version, message, report_id
		FROM events WHERE device_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2`, deviceID, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("failed to list events of device %q: %w", deviceID, err)
	}
	defer rs.Close()
	var out []Event
	for rs.Next() {
		var e Event
		var at int64
		if err := rs.Scan(&e.ID, &e.DeviceID, &at, &e.Kind, &e.Version, &e.Message, &e.ReportID); err != nil {
			return nil, fmt.Errorf("failed to list events of device %q: %w", deviceID, err)
		}
		e.Time = fromDBTime(at)
		out = append(out, e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list events of device %q: %w", deviceID, err)
	}
	return out, nil
}

func (s *sqlStore) CreateAdminToken(ctx context.Context, t AdminToken) error {
	if err := validateAdminToken(t); err != nil {
		return err
	}
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, t.UserID); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO admin_tokens (id, user_id, name, role, hash, created_at, last_used)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			t.ID, t.UserID, t.Name, t.Role, t.Hash, dbTime(t.CreatedAt), dbOptTime(t.LastUsed))
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to create admin token %q: %w", t.ID, s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetAdminTokenByHash(ctx context.Context, hash []byte) (AdminToken, error) {
	if err := checkHash("admin token hash", hash); err != nil {
		return AdminToken{}, err
	}
	t, err := scanAdminToken(s.b.reader().queryRow(ctx, `SELECT `+adminTokenColumns+`
		FROM admin_tokens WHERE hash = $1`, hash))
	if isNoRows(err) {
		return AdminToken{}, fmt.Errorf("admin token: %w", ErrNotFound)
	}
	if err != nil {
		return AdminToken{}, fmt.Errorf("failed to get admin token: %w", err)
	}
	return t, nil
}

func (s *sqlStore) TouchAdminToken(ctx context.Context, id string, now time.Time) error {
	if err := checkID("admin token id", id); err != nil {
		return err
	}
	if err := checkTime("now", now); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE admin_tokens SET last_used = $1 WHERE id = $2`, dbTime(now), id)
	if err != nil {
		return fmt.Errorf("failed to touch admin token %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("admin token %q: %w", id, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	if err := s.b.reader().queryRow(ctx, `SELECT (SELECT COUNT(*) FROM devices), (SELECT COUNT(*) FROM events)`).
		Scan(&st.Devices, &st.Events); err != nil {
		return Stats{}, fmt.Errorf("failed to count records: %w", err)
	}
	size, err := s.b.sizeBytes(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("failed to get database size: %w", err)
	}
	st.SizeBytes = size
	return st, nil
}

func (s *sqlStore) Close() error { return s.b.close() }
