package store

import (
	"context"
	"fmt"
	"time"
)

// MaxLeaseTTL bounds a lease's time to live.
const MaxLeaseTTL = time.Hour

// LeaseStore holds named leases: at most one holder per name at a time, so
// that periodic work of several servers on one database (the rollout
// ticker) runs in one of them. A lease is held until it expires; its holder
// renews it well before. Expiry is judged by the callers' clocks, which
// must agree to well within the TTL.
type LeaseStore interface {
	// AcquireLease takes the lease name for holder until now+ttl if it is
	// free, expired at now, or already held by holder (a renewal). It
	// reports whether holder now holds it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error)

	// ReleaseLease gives up holder's lease name (no-op if another holds it).
	ReleaseLease(ctx context.Context, name, holder string) error
}

func checkLease(name, holder string) error {
	if err := checkID("lease name", name); err != nil {
		return err
	}
	return checkID("lease holder", holder)
}

func (s *sqlStore) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	if err := checkLease(name, holder); err != nil {
		return false, err
	}
	if ttl <= 0 || ttl > MaxLeaseTTL {
		return false, invalid("lease ttl", "%v outside (0, %v]", ttl, MaxLeaseTTL)
	}
	if err := checkTime("now", now); err != nil {
		return false, err
	}
	// One statement: the row lock (PostgreSQL) or the single writer (SQLite)
	// decides between concurrent claimants.
	n, err := s.b.writer().exec(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= $4`,
		name, holder, dbTime(now.Add(ttl)), dbTime(now))
	if err != nil {
		return false, fmt.Errorf("failed to acquire lease %q: %w", name, err)
	}
	return n == 1, nil
}

func (s *sqlStore) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := checkLease(name, holder); err != nil {
		return err
	}
	if _, err := s.b.writer().exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return fmt.Errorf("failed to release lease %q: %w", name, err)
	}
	return nil
}
