package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// User is a person (or service) using the admin API. Its role decides what
// it may do; its tokens (AdminToken.UserID) authenticate it.
type User struct {
	ID         string // server-assigned; [A-Za-z0-9._-]
	Name       string // unique login name; [A-Za-z0-9._-], at most MaxIDLen
	Role       string // [a-z0-9_-]; the server defines the roles
	CreatedAt  time.Time
	DisabledAt time.Time // zero while the user is enabled
	// TOTPSecret is the user's TOTP seed sealed with the server's
	// key-encryption key, at most MaxSealedLen bytes; nil when the user has
	// not enrolled a second factor. The store never sees it in the clear.
	TOTPSecret []byte
	// TOTPLastStep is the last accepted TOTP time step (0: none yet).
	TOTPLastStep int64
}

// Disabled reports whether the user is disabled.
func (u User) Disabled() bool { return !u.DisabledAt.IsZero() }

const userColumns = `id, name, role, created_at, disabled_at, totp_secret, totp_last_step`

func scanUser(r row) (User, error) {
	var u User
	var created int64
	var disabled, step sql.NullInt64
	if err := r.Scan(&u.ID, &u.Name, &u.Role, &created, &disabled, &u.TOTPSecret, &step); err != nil {
		return User{}, err
	}
	u.CreatedAt, u.DisabledAt = fromDBTime(created), fromDBOptTime(disabled)
	u.TOTPLastStep = step.Int64
	if len(u.TOTPSecret) == 0 {
		u.TOTPSecret = nil
	}
	return u, nil
}

func validateUser(u User) error {
	if err := checkID("user id", u.ID); err != nil {
		return err
	}
	if err := checkID("user name", u.Name); err != nil {
		return err
	}
	if err := checkWord("user role", u.Role); err != nil {
		return err
	}
	if err := checkTime("user created at", u.CreatedAt); err != nil {
		return err
	}
	if err := checkOptionalTime("user disabled at", u.DisabledAt); err != nil {
		return err
	}
	if err := checkSealed("user totp secret", u.TOTPSecret); err != nil {
		return err
	}
	if u.TOTPLastStep < 0 {
		return invalid("user totp last step", "negative")
	}
	return nil
}

func checkSealed(field string, b []byte) error {
	if len(b) > MaxSealedLen {
		return invalid(field, "%d bytes exceeds limit %d", len(b), MaxSealedLen)
	}
	return nil
}

func userExists(ctx context.Context, q querier, id string) error {
	var one int64
	err := q.queryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, id).Scan(&one)
	if isNoRows(err) {
		return fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return err
}

func (s *sqlStore) CreateUser(ctx context.Context, u User) error {
	if err := validateUser(u); err != nil {
		return err
	}
	var step any
	if u.TOTPLastStep != 0 {
		step = u.TOTPLastStep
	}
	var secret any
	if u.TOTPSecret != nil {
		secret = u.TOTPSecret
	}
	_, err := s.b.writer().exec(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		u.ID, u.Name, u.Role, dbTime(u.CreatedAt), dbOptTime(u.DisabledAt), secret, step)
	if err != nil {
		return fmt.Errorf("failed to create user %q: %w", u.Name, s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetUser(ctx context.Context, id string) (User, error) {
	if err := checkID("user id", id); err != nil {
		return User{}, err
	}
	u, err := scanUser(s.b.reader().queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if isNoRows(err) {
		return User{}, fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("failed to get user %q: %w", id, err)
	}
	return u, nil
}

func (s *sqlStore) GetUserByName(ctx context.Context, name string) (User, error) {
	if err := checkID("user name", name); err != nil {
		return User{}, err
	}
	u, err := scanUser(s.b.reader().queryRow(ctx, `SELECT `+userColumns+` FROM users WHERE name = $1`, name))
	if isNoRows(err) {
		return User{}, fmt.Errorf("user named %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("failed to get user %q: %w", name, err)
	}
	return u, nil
}

func (s *sqlStore) ListUsers(ctx context.Context) ([]User, error) {
	rs, err := s.b.reader().query(ctx, `SELECT `+userColumns+` FROM users ORDER BY name LIMIT $1`, int64(MaxUsers))
	if err != nil {
		return nil, fmt.Errorf("failed to list users: %w", err)
	}
	defer rs.Close()
	var out []User
	for rs.Next() {
		u, err := scanUser(rs)
		if err != nil {
			return nil, fmt.Errorf("failed to list users: %w", err)
		}
		out = append(out, u)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list users: %w", err)
	}
	return out, nil
}

func (s *sqlStore) DisableUser(ctx context.Context, id string, now time.Time) error {
	if err := checkID("user id", id); err != nil {
		return err
	}
	if err := checkTime("now", now); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2`, dbTime(now), id)
	if err != nil {
		return fmt.Errorf("failed to disable user %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) SetUserTOTP(ctx context.Context, id string, sealed []byte) error {
	if err := checkID("user id", id); err != nil {
		return err
	}
	if err := checkSealed("user totp secret", sealed); err != nil {
		return err
	}
	var v any
	if len(sealed) > 0 {
		v = sealed
	}
	n, err := s.b.writer().exec(ctx, `UPDATE users SET totp_secret = $1, totp_last_step = NULL WHERE id = $2`, v, id)
	if err != nil {
		return fmt.Errorf("failed to set totp secret of user %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) AcceptTOTPStep(ctx context.Context, id string, step int64) error {
	if err := checkID("user id", id); err != nil {
		return err
	}
	if step <= 0 {
		return invalid("totp step", "%d is not positive", step)
	}
	// One statement: the compare and the update are atomic in both dialects.
	n, err := s.b.writer().exec(ctx, `UPDATE users SET totp_last_step = $1
		WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)`, step, id)
	if err != nil {
		return fmt.Errorf("failed to record totp step of user %q: %w", id, err)
	}
	if n == 1 {
		return nil
	}
	if err := userExists(ctx, s.b.reader(), id); err != nil {
		return err
	}
	return fmt.Errorf("user %q step %d: %w", id, step, ErrTOTPReplay)
}

const adminTokenColumns = `id, user_id, name, role, hash, created_at, last_used`

func scanAdminToken(r row) (AdminToken, error) {
	var t AdminToken
	var user sql.NullString
	var created int64
	var lastUsed sql.NullInt64
	if err := r.Scan(&t.ID, &user, &t.Name, &t.Role, &t.Hash, &created, &lastUsed); err != nil {
		return AdminToken{}, err
	}
	t.UserID = user.String
	t.CreatedAt, t.LastUsed = fromDBTime(created), fromDBOptTime(lastUsed)
	return t, nil
}

func (s *sqlStore) ListAdminTokens(ctx context.Context, userID string) ([]AdminToken, error) {
	if err := checkID("user id", userID); err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT `+adminTokenColumns+` FROM admin_tokens
		WHERE user_id = $1 ORDER BY created_at, id LIMIT $2`, userID, int64(MaxTokensPerUser))
	if err != nil {
		return nil, fmt.Errorf("failed to list tokens of user %q: %w", userID, err)
	}
	defer rs.Close()
	var out []AdminToken
	for rs.Next() {
		t, err := scanAdminToken(rs)
		if err != nil {
			return nil, fmt.Errorf("failed to list tokens of user %q: %w", userID, err)
		}
		out = append(out, t)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list tokens of user %q: %w", userID, err)
	}
	return out, nil
}

func (s *sqlStore) PutSecretIfAbsent(ctx context.Context, name string, value []byte, now time.Time) ([]byte, error) {
	if err := checkID("secret name", name); err != nil {
		return nil, err
	}
	if len(value) == 0 {
		return nil, invalid("secret value", "empty")
	}
	if err := checkSealed("secret value", value); err != nil {
		return nil, err
	}
	if err := checkTime("now", now); err != nil {
		return nil, err
	}
	var out []byte
	err := s.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO NOTHING`, name, value, dbTime(now)); err != nil {
			return err
		}
		return q.queryRow(ctx, `SELECT value FROM server_secrets WHERE name = $1`, name).Scan(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to store secret %q: %w", name, err)
	}
	return out, nil
}
