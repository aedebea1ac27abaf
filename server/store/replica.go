package store

import (
	"context"
	"fmt"
	"time"
)

// State that several server replicas on one database share, kept in the
// database rather than in a process (issue 16): dashboard sessions, the
// TOTP lockout counters and the director's root metadata versions.

// Limits of the replica-shared state.
const (
	// MaxDashboardSessions bounds the stored dashboard sessions;
	// CreateDashboardSession evicts the least recently used beyond it
	// (concurrent logins on several replicas may overshoot it briefly).
	MaxDashboardSessions = 10_000
	// MaxDirectorRootLen bounds a stored director root version.
	MaxDirectorRootLen = 512 << 10
	// MaxDirectorRoots bounds the root versions ListDirectorRoots returns.
	MaxDirectorRoots = 1000
)

// DashboardSession is a logged-in dashboard user. Only the SHA-256 hash of
// the cookie secret is stored.
type DashboardSession struct {
	Hash      []byte // SHA-256 of the cookie secret, HashSize bytes, unique
	UserID    string // required
	CreatedAt time.Time
	LastSeen  time.Time // the last request; the idle timeout runs from it
	ExpiresAt time.Time // absolute end, after CreatedAt
	Flash     string    // one-shot message for the next page, up to MaxMessageLen
}

// ReplicaStore is the part of Store that replicas share.
type ReplicaStore interface {
	// CreateDashboardSession stores a new dashboard session (LastSeen is
	// set to CreatedAt). In the same transaction it deletes the sessions
	// that expired (ExpiresAt reached or LastSeen at or before idleSince)
	// and, beyond MaxDashboardSessions, the least recently used ones.
	// ErrExists if the hash is taken; ErrNotFound if the user does not exist.
	CreateDashboardSession(ctx context.Context, sess DashboardSession, idleSince time.Time) error

	// TouchDashboardSession returns the live session with the given hash
	// and sets its LastSeen to now (never backwards). Live means ExpiresAt
	// after now, CreatedAt not after now and LastSeen after idleSince. A
	// session that is not live is deleted, and ErrNotFound returned as for
	// an unknown hash.
	TouchDashboardSession(ctx context.Context, hash []byte, now, idleSince time.Time) (DashboardSession, error)

	// DeleteDashboardSession deletes a session; deleting an absent one is
	// not an error.
	DeleteDashboardSession(ctx context.Context, hash []byte) error

	// DeleteExpiredDashboardSessions deletes the sessions that are no
	// longer live at now (see TouchDashboardSession) and returns how many.
	DeleteExpiredDashboardSessions(ctx context.Context, now, idleSince time.Time) (int64, error)

	// SetDashboardSessionFlash sets a session's flash message (empty
	// clears it). ErrNotFound if there is no such session.
	SetDashboardSessionFlash(ctx context.Context, hash []byte, msg string) error

	// TakeDashboardSessionFlash clears the session's flash message if it
	// is still msg, and reports whether it did: of concurrent takers of
	// one message exactly one gets true.
	TakeDashboardSessionFlash(ctx context.Context, hash []byte, msg string) (bool, error)

	// RecordTOTPAttempt counts one TOTP attempt of a user and returns the
	// number of attempts in the current window and the window's start.
	// The window starts at now with the first attempt, and again with the
	// first attempt after windowStart has passed it (the start is at or
	// before windowStart). The increment is atomic: concurrent callers,
	// on any replica, get distinct counts. ErrNotFound if there is no such
	// user.
	RecordTOTPAttempt(ctx context.Context, userID string, now, windowStart time.Time) (int64, time.Time, error)

	// ClearTOTPAttempts forgets a user's TOTP attempts (after a success).
	ClearTOTPAttempts(ctx context.Context, userID string) error

	// PutDirectorRoot stores director root version v (1.., and v-1 must be
	// stored) unless one is stored already, and returns the stored bytes
	// (the existing ones, or data): every replica serves the same root.
	PutDirectorRoot(ctx context.Context, v int64, data []byte, now time.Time) ([]byte, error)

	// ListDirectorRoots returns the stored director root versions 1..N in
	// order (at most MaxDirectorRoots).
	ListDirectorRoots(ctx context.Context) ([][]byte, error)
}

func validateDashboardSession(s DashboardSession) error {
	if err := checkHash("dashboard session hash", s.Hash); err != nil {
		return err
	}
	if err := checkID("dashboard session user id", s.UserID); err != nil {
		return err
	}
	if err := checkTime("dashboard session created at", s.CreatedAt); err != nil {
		return err
	}
	if err := checkTime("dashboard session expires at", s.ExpiresAt); err != nil {
		return err
	}
	if !s.ExpiresAt.After(s.CreatedAt) {
		return invalid("dashboard session expires at", "not after its creation")
	}
	return checkMessage("dashboard session flash", s.Flash)
}

func (s *sqlStore) CreateDashboardSession(ctx context.Context, sess DashboardSession, idleSince time.Time) error {
	if err := validateDashboardSession(sess); err != nil {
		return err
	}
	if err := checkTime("idle since", idleSince); err != nil {
		return err
	}
	now := dbTime(sess.CreatedAt)
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, sess.UserID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `DELETE FROM dashboard_sessions WHERE expires_at <= $1 OR last_seen <= $2`,
			now, dbTime(idleSince)); err != nil {
			return err
		}
		var n int64
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM dashboard_sessions`).Scan(&n); err != nil {
			return err
		}
		if n >= MaxDashboardSessions {
			if _, err := q.exec(ctx, `DELETE FROM dashboard_sessions WHERE hash IN
				(SELECT hash FROM dashboard_sessions ORDER BY last_seen LIMIT $1)`, n-MaxDashboardSessions+1); err != nil {
				return err
			}
		}
		_, err := q.exec(ctx, `INSERT INTO dashboard_sessions (hash, user_id, created_at, last_seen, expires_at, flash)
			VALUES ($1, $2, $3, $3, $4, $5)`, sess.Hash, sess.UserID, now, dbTime(sess.ExpiresAt), sess.Flash)
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to create dashboard session: %w", s.mapErr(err))
	}
	return nil
}

func (s *sqlStore) TouchDashboardSession(ctx context.Context, hash []byte, now, idleSince time.Time) (DashboardSession, error) {
	if err := checkHash("dashboard session hash", hash); err != nil {
		return DashboardSession{}, err
	}
	if err := checkTime("now", now); err != nil {
		return DashboardSession{}, err
	}
	if err := checkTime("idle since", idleSince); err != nil {
		return DashboardSession{}, err
	}
	sess := DashboardSession{}
	var created, last, expires int64
	err := s.b.writer().queryRow(ctx, `UPDATE dashboard_sessions
		SET last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END
		WHERE hash = $1 AND expires_at > $2 AND created_at <= $2 AND last_seen > $3
		RETURNING hash, user_id, created_at, last_seen, expires_at, flash`,
		hash, dbTime(now), dbTime(idleSince)).Scan(&sess.Hash, &sess.UserID, &created, &last, &expires, &sess.Flash)
	if isNoRows(err) {
		// Unknown, or no longer live: delete it if it exists.
		if _, err := s.b.writer().exec(ctx, `DELETE FROM dashboard_sessions WHERE hash = $1`, hash); err != nil {
			return DashboardSession{}, fmt.Errorf("failed to delete an expired dashboard session: %w", err)
		}
		return DashboardSession{}, fmt.Errorf("dashboard session: %w", ErrNotFound)
	}
	if err != nil {
		return DashboardSession{}, fmt.Errorf("failed to get dashboard session: %w", err)
	}
	sess.CreatedAt, sess.LastSeen, sess.ExpiresAt = fromDBTime(created), fromDBTime(last), fromDBTime(expires)
	return sess, nil
}

func (s *sqlStore) DeleteDashboardSession(ctx context.Context, hash []byte) error {
	if err := checkHash("dashboard session hash", hash); err != nil {
		return err
	}
	if _, err := s.b.writer().exec(ctx, `DELETE FROM dashboard_sessions WHERE hash = $1`, hash); err != nil {
		return fmt.Errorf("failed to delete dashboard session: %w", err)
	}
	return nil
}

func (s *sqlStore) DeleteExpiredDashboardSessions(ctx context.Context, now, idleSince time.Time) (int64, error) {
	if err := checkTime("now", now); err != nil {
		return 0, err
	}
	if err := checkTime("idle since", idleSince); err != nil {
		return 0, err
	}
	n, err := s.b.writer().exec(ctx, `DELETE FROM dashboard_sessions
		WHERE expires_at <= $1 OR created_at > $1 OR last_seen <= $2`, dbTime(now), dbTime(idleSince))
	if err != nil {
		return 0, fmt.Errorf("failed to delete expired dashboard sessions: %w", err)
	}
	return n, nil
}

func (s *sqlStore) SetDashboardSessionFlash(ctx context.Context, hash []byte, msg string) error {
	if err := checkHash("dashboard session hash", hash); err != nil {
		return err
	}
	if err := checkMessage("dashboard session flash", msg); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE dashboard_sessions SET flash = $1 WHERE hash = $2`, msg, hash)
	if err != nil {
		return fmt.Errorf("failed to set dashboard session flash: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("dashboard session: %w", ErrNotFound)
	}
	return nil
}

func (s *sqlStore) TakeDashboardSessionFlash(ctx context.Context, hash []byte, msg string) (bool, error) {
	if err := checkHash("dashboard session hash", hash); err != nil {
		return false, err
	}
	if msg == "" {
		return false, nil
	}
	if err := checkMessage("dashboard session flash", msg); err != nil {
		return false, err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE dashboard_sessions SET flash = '' WHERE hash = $1 AND flash = $2`, hash, msg)
	if err != nil {
		return false, fmt.Errorf("failed to take dashboard session flash: %w", err)
	}
	return n == 1, nil
}

func (s *sqlStore) RecordTOTPAttempt(ctx context.Context, userID string, now, windowStart time.Time) (int64, time.Time, error) {
	if err := checkID("user id", userID); err != nil {
		return 0, time.Time{}, err
	}
	if err := checkTime("now", now); err != nil {
		return 0, time.Time{}, err
	}
	if err := checkTime("window start", windowStart); err != nil {
		return 0, time.Time{}, err
	}
	// One statement: the row lock (PostgreSQL) or the single writer
	// (SQLite) makes the read and the increment atomic. SET expressions
	// read the row as it was before the update.
	var n, first int64
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, userID); err != nil {
			return err
		}
		return q.queryRow(ctx, `INSERT INTO totp_attempts (user_id, attempts, first_at) VALUES ($1, 1, $2)
			ON CONFLICT (user_id) DO UPDATE SET
				attempts = CASE WHEN totp_attempts.first_at <= $3 THEN 1 ELSE totp_attempts.attempts + 1 END,
				first_at = CASE WHEN totp_attempts.first_at <= $3 THEN $2 ELSE totp_attempts.first_at END
			RETURNING attempts, first_at`, userID, dbTime(now), dbTime(windowStart)).Scan(&n, &first)
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("failed to record a totp attempt of user %q: %w", userID, err)
	}
	return n, fromDBTime(first), nil
}

func (s *sqlStore) ClearTOTPAttempts(ctx context.Context, userID string) error {
	if err := checkID("user id", userID); err != nil {
		return err
	}
	if _, err := s.b.writer().exec(ctx, `DELETE FROM totp_attempts WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("failed to clear the totp attempts of user %q: %w", userID, err)
	}
	return nil
}

func (s *sqlStore) PutDirectorRoot(ctx context.Context, v int64, data []byte, now time.Time) ([]byte, error) {
	if v < 1 || v > MaxDirectorRoots {
		return nil, invalid("director root version", "%d outside 1..%d", v, MaxDirectorRoots)
	}
	if len(data) == 0 || len(data) > MaxDirectorRootLen {
		return nil, invalid("director root", "%d bytes outside 1..%d", len(data), MaxDirectorRootLen)
	}
	if err := checkTime("now", now); err != nil {
		return nil, err
	}
	var out []byte
	err := s.b.inTx(ctx, func(q querier) error {
		if v > 1 {
			var one int64
			err := q.queryRow(ctx, `SELECT 1 FROM director_roots WHERE version = $1`, v-1).Scan(&one)
			if isNoRows(err) {
				return fmt.Errorf("%w: director root version %d is not stored", ErrConflict, v-1)
			}
			if err != nil {
				return err
			}
		}
		if _, err := q.exec(ctx, `INSERT INTO director_roots (version, data, created_at) VALUES ($1, $2, $3)
			ON CONFLICT (version) DO NOTHING`, v, data, dbTime(now)); err != nil {
			return err
		}
		return q.queryRow(ctx, `SELECT data FROM director_roots WHERE version = $1`, v).Scan(&out)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to store director root version %d: %w", v, err)
	}
	return out, nil
}

func (s *sqlStore) ListDirectorRoots(ctx context.Context) ([][]byte, error) {
	rs, err := s.b.reader().query(ctx, `SELECT version, data FROM director_roots ORDER BY version LIMIT $1`, MaxDirectorRoots)
	if err != nil {
		return nil, fmt.Errorf("failed to list director roots: %w", err)
	}
	defer rs.Close()
	var out [][]byte
	for rs.Next() {
		var v int64
		var data []byte
		if err := rs.Scan(&v, &data); err != nil {
			return nil, fmt.Errorf("failed to list director roots: %w", err)
		}
		if v != int64(len(out))+1 {
			return nil, fmt.Errorf("internal error: stored director root versions are not consecutive: found %d after %d", v, len(out))
		}
		out = append(out, data)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list director roots: %w", err)
	}
	return out, nil
}
