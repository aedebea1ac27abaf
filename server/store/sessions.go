package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Limits of admin sessions.
const (
	// MaxAdminSessionsPerUser bounds the unexpired, unrevoked sessions of
	// one user; CreateAdminSession refuses more (ErrConflict).
	MaxAdminSessionsPerUser = 100
	// AdminSessionRetention is how long an expired or revoked session is
	// kept (so a late request gets "expired", not "unknown") before
	// CreateAdminSession deletes it.
	AdminSessionRetention = 24 * time.Hour
)

// AdminSession is a short-lived admin API credential obtained with an
// admin token and a TOTP code (airlock login). Only the SHA-256 hash of the
// secret is stored.
type AdminSession struct {
	ID        string // server-assigned; [A-Za-z0-9._-]
	UserID    string // the user it authenticates, required
	TokenID   string // the admin token used to log in, required
	Role      string // the user's role at login; [a-z0-9_-], required
	Hash      []byte // SHA-256 of the secret, HashSize bytes, unique
	CreatedAt time.Time
	ExpiresAt time.Time // after CreatedAt
	RevokedAt time.Time // zero until RevokeAdminSession
}

// Live reports whether the session may be used at now.
func (s AdminSession) Live(now time.Time) bool {
	return s.RevokedAt.IsZero() && now.Before(s.ExpiresAt) && !now.Before(s.CreatedAt)
}

const adminSessionColumns = `id, user_id, token_id, role, hash, created_at, expires_at, revoked_at`

func scanAdminSession(r row) (AdminSession, error) {
	var s AdminSession
	var created, expires int64
	var revoked sql.NullInt64
	if err := r.Scan(&s.ID, &s.UserID, &s.TokenID, &s.Role, &s.Hash, &created, &expires, &revoked); err != nil {
		return AdminSession{}, err
	}
	s.CreatedAt, s.ExpiresAt, s.RevokedAt = fromDBTime(created), fromDBTime(expires), fromDBOptTime(revoked)
	return s, nil
}

func validateAdminSession(s AdminSession) error {
	if err := checkID("admin session id", s.ID); err != nil {
		return err
	}
	if err := checkID("admin session user id", s.UserID); err != nil {
		return err
	}
	if err := checkID("admin session token id", s.TokenID); err != nil {
		return err
	}
	if err := checkWord("admin session role", s.Role); err != nil {
		return err
	}
	if err := checkHash("admin session hash", s.Hash); err != nil {
		return err
	}
	if err := checkTime("admin session created at", s.CreatedAt); err != nil {
		return err
	}
	if err := checkTime("admin session expires at", s.ExpiresAt); err != nil {
		return err
	}
	if !s.ExpiresAt.After(s.CreatedAt) {
		return invalid("admin session expires at", "not after its creation")
	}
	if !s.RevokedAt.IsZero() {
		return invalid("admin session revoked at", "set at creation")
	}
	return nil
}

func (s *sqlStore) CreateAdminSession(ctx context.Context, sess AdminSession) error {
	if err := validateAdminSession(sess); err != nil {
		return err
	}
	now := dbTime(sess.CreatedAt)
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, sess.UserID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `DELETE FROM admin_sessions WHERE expires_at < $1 OR revoked_at < $1`,
			dbTime(sess.CreatedAt.Add(-AdminSessionRetention))); err != nil {
			return err
		}
		var live int64
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM admin_sessions
			WHERE user_id = $1 AND expires_at > $2 AND revoked_at IS NULL`, sess.UserID, now).Scan(&live); err != nil {
			return err
		}
		if live >= MaxAdminSessionsPerUser {
			return fmt.Errorf("%w: user %q has %d live sessions (limit %d); log out of one", ErrConflict, sess.UserID, live, MaxAdminSessionsPerUser)
		}
		_, err := q.exec(ctx, `INSERT INTO admin_sessions (`+adminSessionColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)`,
			sess.ID, sess.UserID, sess.TokenID, sess.Role, sess.Hash, now, dbTime(sess.ExpiresAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to create admin session %q: %w", sess.ID, s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) GetAdminSessionByHash(ctx context.Context, hash []byte) (AdminSession, error) {
	if err := checkHash("admin session hash", hash); err != nil {
		return AdminSession{}, err
	}
	sess, err := scanAdminSession(s.b.reader().queryRow(ctx, `SELECT `+adminSessionColumns+`
		FROM admin_sessions WHERE hash = $1`, hash))
	if isNoRows(err) {
		return AdminSession{}, fmt.Errorf("admin session: %w", ErrNotFound)
	}
	if err != nil {
		return AdminSession{}, fmt.Errorf("failed to get admin session: %w", err)
	}
	return sess, nil
}

func (s *sqlStore) RevokeAdminSession(ctx context.Context, id string, now time.Time) error {
	if err := checkID("admin session id", id); err != nil {
		return err
	}
	if err := checkTime("now", now); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE admin_sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2`, dbTime(now), id)
	if err != nil {
		return fmt.Errorf("failed to revoke admin session %q: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("admin session %q: %w", id, ErrNotFound)
	}
	return nil
}
