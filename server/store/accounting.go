package store

import (
	"context"
	"errors"
	"fmt"
	"math"
)

// Rollout accounting: the counters of the rollouts row (assigned,
// in_flight, against eligible and stage_target) and rollout_counts are
// changed in the transaction of every rollout_devices insert or state
// change, so that servers sharing the database admit and evaluate on the
// same numbers. Lock order in every transaction: the rollout_devices row,
// then the rollouts row, then the rollout_counts rows of the old and the
// new state. The engine's state changes all move forward (assigned, then
// failed, then succeeded), so on PostgreSQL two of them never wait on each
// other in a cycle; SQLite has one writer.

func (s *sqlStore) SetRolloutEligible(ctx context.Context, id string, stage, eligible, target int) error {
	if err := checkID("rollout id", id); err != nil {
		return err
	}
	if stage < 0 || stage >= MaxRolloutStages {
		return invalid("rollout stage", "%d outside 0..%d", stage, MaxRolloutStages-1)
	}
	if err := checkCount("rollout eligible", eligible, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkCount("rollout target", target, MaxRolloutCount); err != nil {
		return err
	}
	n, err := s.b.writer().exec(ctx, `UPDATE rollouts SET eligible = $1, stage_target = $2
		WHERE id = $3 AND stage = $4 AND state IN ('draft', 'running', 'paused')`, int64(eligible), int64(target), id, int64(stage))
	if err != nil {
		return fmt.Errorf("failed to set the eligible count of rollout %q: %w", id, err)
	}
	if n == 0 {
		if _, err := getRollout(ctx, s.b.reader(), id); err != nil {
			return fmt.Errorf("failed to set the eligible count of rollout %q: %w", id, err)
		}
		return fmt.Errorf("%w: rollout %q is no longer active at stage %d", ErrConflict, id, stage)
	}
	return nil
}

// countState is the rollout_counts state of a rollout device state: every
// device without an outcome counts as assigned.
func countState(state string) string {
	if state == RolloutDeviceInProgress {
		return RolloutDeviceAssigned
	}
	return state
}

// addCount adds delta to a rollout's count of stage, state and reason.
func addCount(ctx context.Context, q querier, rolloutID string, stage int64, state, reason string, delta int64) error {
	_, err := q.exec(ctx, `INSERT INTO rollout_counts (rollout_id, stage, state, reason, n) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (rollout_id, stage, state, reason) DO UPDATE SET n = rollout_counts.n + $5`,
		rolloutID, stage, countState(state), reason, delta)
	return err
}

// admits reports whether r's current stage has room for one more device.
func (r Rollout) admits() bool {
	return r.Assigned < r.Target && (r.MaxParallel == 0 || r.InFlight < r.MaxParallel)
}

func (s *sqlStore) AssignRolloutDevice(ctx context.Context, d RolloutDevice) error {
	if err := checkID("rollout id", d.RolloutID); err != nil {
		return err
	}
	if err := checkID("device id", d.DeviceID); err != nil {
		return err
	}
	if d.Stage < 0 || d.Stage >= MaxRolloutStages {
		return invalid("stage", "%d outside 0..%d", d.Stage, MaxRolloutStages-1)
	}
	if d.State != RolloutDeviceAssigned {
		return invalid("state", "%q, want %q", truncate(d.State), RolloutDeviceAssigned)
	}
	if err := checkString("reason", d.Reason, false); err != nil {
		return err
	}
	if err := checkTime("assigned at", d.AssignedAt); err != nil {
		return err
	}
	wrap := func(err error) error {
		return fmt.Errorf("failed to assign device %q to rollout %q: %w", d.DeviceID, d.RolloutID, err)
	}
	// A read first, so that check-ins of a full stage (the common case
	// once a stage is assigned) take no write transaction; the
	// conditional update below is what admits.
	r, err := getRollout(ctx, s.b.reader(), d.RolloutID)
	if err != nil {
		return wrap(err)
	}
	if err := admission(r, d.Stage); err != nil {
		return wrap(err)
	}
	err = s.b.inTx(ctx, func(q querier) error {
		// The partial unique index refuses a second active rollout; the
		// join refuses a device of another product.
		n, err := q.exec(ctx, `INSERT INTO rollout_devices
			(rollout_id, device_id, product, active, stage, state, reason, assigned_at, updated_at)
			SELECT r.id, dv.id, dv.product, 1, $3, $4, $5, $6, $6 FROM rollouts r, devices dv
			WHERE r.id = $1 AND dv.id = $2 AND dv.product = r.product`,
			d.RolloutID, d.DeviceID, int64(d.Stage), d.State, d.Reason, dbTime(d.AssignedAt))
		if err != nil {
			return err
		}
		if n == 0 {
			dev, err := scanDevice(q.queryRow(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, d.DeviceID))
			if isNoRows(err) {
				return fmt.Errorf("device %q: %w", d.DeviceID, ErrNotFound)
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("%w: device %q is a %s, the rollout is for %s", ErrConflict, dev.ID, dev.Product, r.Product)
		}
		// Admission: PostgreSQL re-checks the WHERE clause after taking the
		// row lock, and SQLite has one writer, so concurrent servers never
		// push assigned past the target.
		n, err = q.exec(ctx, `UPDATE rollouts SET assigned = assigned + 1, in_flight = in_flight + 1
			WHERE id = $1 AND state = 'running' AND stage = $2 AND assigned < stage_target
			AND (max_parallel = 0 OR in_flight < max_parallel)`, d.RolloutID, int64(d.Stage))
		if err != nil {
			return err
		}
		if n == 0 {
			cur, err := getRollout(ctx, q, d.RolloutID)
			if err != nil {
				return err
			}
			if err := admission(cur, d.Stage); err != nil {
				return err
			}
			return fmt.Errorf("internal error: rollout %q refused an admissible device", d.RolloutID)
		}
		return addCount(ctx, q, d.RolloutID, int64(d.Stage), d.State, d.Reason, 1)
	})
	if err != nil {
		return wrap(s.mapErr(err))
	}
	return nil
}

// admission returns why r does not admit a device in stage, or nil.
func admission(r Rollout, stage int) error {
	switch {
	case r.State != RolloutRunning:
		if !r.Active() {
			return fmt.Errorf("%w: rollout %q is %s", ErrConflict, r.ID, r.State)
		}
		return fmt.Errorf("%w: rollout %q is %s", ErrRolloutMoved, r.ID, r.State)
	case r.Stage != stage:
		return fmt.Errorf("%w: rollout %q is at stage %d, not %d", ErrRolloutMoved, r.ID, r.Stage, stage)
	case !r.admits():
		return fmt.Errorf("%w: rollout %q has %d of %d devices assigned, %d in flight (max_parallel %d)",
			ErrRolloutFull, r.ID, r.Assigned, r.Target, r.InFlight, r.MaxParallel)
	}
	return nil
}

// MaxRolloutDeviceRetries bounds the compare-and-swap attempts of an
// unconditional UpdateRolloutDevice under concurrent changes.
const MaxRolloutDeviceRetries = 8

func (s *sqlStore) UpdateRolloutDevice(ctx context.Context, u RolloutDeviceUpdate) error {
	if err := checkID("rollout id", u.RolloutID); err != nil {
		return err
	}
	if err := checkID("device id", u.DeviceID); err != nil {
		return err
	}
	if err := checkRolloutDeviceState("state", u.State); err != nil {
		return err
	}
	if err := checkString("reason", u.Reason, false); err != nil {
		return err
	}
	if u.FromState != "" {
		if err := checkRolloutDeviceState("from state", u.FromState); err != nil {
			return err
		}
		if err := checkString("from reason", u.FromReason, false); err != nil {
			return err
		}
	}
	if !u.UpdatedBefore.IsZero() {
		if err := checkTime("updated before", u.UpdatedBefore); err != nil {
			return err
		}
	}
	if err := checkTime("now", u.Now); err != nil {
		return err
	}
	wrap := func(err error) error {
		return fmt.Errorf("failed to update device %q in rollout %q: %w", u.DeviceID, u.RolloutID, err)
	}
	if u.FromState != "" {
		if err := s.b.inTx(ctx, func(q querier) error { return updateRolloutDevice(ctx, q, u) }); err != nil {
			return wrap(err)
		}
		return nil
	}
	// Unconditional: compare-and-swap from what is stored, retrying when a
	// concurrent change wins.
	for range MaxRolloutDeviceRetries {
		var cur RolloutDevice
		cur, err := scanRolloutDevice(s.b.reader().queryRow(ctx, `SELECT `+rolloutDeviceColumns+` FROM rollout_devices rd
			WHERE rd.rollout_id = $1 AND rd.device_id = $2`, u.RolloutID, u.DeviceID))
		if isNoRows(err) {
			return wrap(fmt.Errorf("device %q in rollout %q: %w", u.DeviceID, u.RolloutID, ErrNotFound))
		}
		if err != nil {
			return wrap(err)
		}
		c := u
		c.FromState, c.FromReason = cur.State, cur.Reason
		err = s.b.inTx(ctx, func(q querier) error { return updateRolloutDevice(ctx, q, c) })
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				return wrap(err)
			}
			return nil
		}
	}
	return wrap(fmt.Errorf("%w: device changed concurrently %d times", ErrConflict, MaxRolloutDeviceRetries))
}

// updateRolloutDevice applies u (FromState set) and its counter changes
// inside a transaction. The lock order is the device row, then the
// rollout row, then the counts, as in AssignRolloutDevice.
func updateRolloutDevice(ctx context.Context, q querier, u RolloutDeviceUpdate) error {
	var stage int64
	before := int64(math.MaxInt64)
	if !u.UpdatedBefore.IsZero() {
		before = dbTime(u.UpdatedBefore)
	}
	err := q.queryRow(ctx, `UPDATE rollout_devices SET state = $1, reason = $2, updated_at = $3
		WHERE rollout_id = $4 AND device_id = $5 AND state = $6 AND reason = $7 AND updated_at <= $8
		RETURNING stage`, u.State, u.Reason, dbTime(u.Now), u.RolloutID, u.DeviceID, u.FromState, u.FromReason, before).Scan(&stage)
	if isNoRows(err) {
		var one int64
		err := q.queryRow(ctx, `SELECT 1 FROM rollout_devices WHERE rollout_id = $1 AND device_id = $2`, u.RolloutID, u.DeviceID).Scan(&one)
		if isNoRows(err) {
			return fmt.Errorf("device %q in rollout %q: %w", u.DeviceID, u.RolloutID, ErrNotFound)
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: device %q in rollout %q is no longer %s", ErrConflict, u.DeviceID, u.RolloutID, u.FromState)
	}
	if err != nil {
		return err
	}
	from, to := countState(u.FromState), countState(u.State)
	if from == to && u.FromReason == u.Reason {
		return nil
	}
	var delta int64
	switch {
	case from == RolloutDeviceAssigned && to != RolloutDeviceAssigned:
		delta = -1
	case from != RolloutDeviceAssigned && to == RolloutDeviceAssigned:
		delta = 1
	}
	if delta != 0 {
		if _, err := q.exec(ctx, `UPDATE rollouts SET in_flight = in_flight + $1 WHERE id = $2`, delta, u.RolloutID); err != nil {
			return err
		}
	}
	if err := addCount(ctx, q, u.RolloutID, stage, u.FromState, u.FromReason, -1); err != nil {
		return err
	}
	return addCount(ctx, q, u.RolloutID, stage, u.State, u.Reason, 1)
}
