package rollouts

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// Checkin reconciles device d's rollout row with what it states (d as
// just checked in), assigns it to a running rollout if it is eligible and
// not held by one, and returns its current assignment (nil if none).
func (e *Engine) Checkin(ctx context.Context, d store.Device) (*deviceapi.Assignment, error) {
	e.maybeRefresh(ctx)
	rd, ro, err := e.db.DeviceAssignment(ctx, d.ID)
	switch {
	case err == nil:
		if err := e.reconcile(ctx, d, rd, ro); err != nil {
			return nil, err
		}
		if ro.Active() {
			return assignmentOf(ro), nil
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	found := err == nil
	for _, c := range e.running(d.Product) {
		a, err := e.tryAssign(ctx, c, d)
		if err != nil || a != nil {
			return a, err
		}
	}
	if found && ro.State == store.RolloutCompleted {
		return assignmentOf(ro), nil
	}
	return nil, nil
}

// tryAssign asks the store to admit d into the cached rollout c. A
// rollout that moved on (another server advanced or paused it) is re-read
// once.
func (e *Engine) tryAssign(ctx context.Context, c *cached, d store.Device) (*deviceapi.Assignment, error) {
	for attempt := 0; ; attempt++ {
		now := e.now()
		if c.rec.State != store.RolloutRunning || !eligibleDevice(c.rec, c.r, d) || !c.r.Window.Open(now) {
			return nil, nil
		}
		// The assignment's audit event commits with the assignment, or not
		// at all (a full stage, a moved rollout).
		actx := store.WithAudit(ctx)
		e.audit(actx, systemActor, AuditRolloutAssigned, map[string]string{"rollout": c.rec.ID, "device": d.ID,
			"release": c.rec.Product + "@" + c.rec.Version, "stage": c.r.Stages[c.rec.Stage].Label(c.rec.Stage)})
		err := e.db.AssignRolloutDevice(actx, store.RolloutDevice{RolloutID: c.rec.ID, DeviceID: d.ID, Stage: c.rec.Stage,
			State: store.RolloutDeviceAssigned, AssignedAt: now.UTC()})
		switch {
		case err == nil:
			e.log.Info("rollout assigned a device", "rollout", c.rec.ID, "device_id", d.ID, "stage", c.rec.Stage)
			return assignmentOf(c.rec), nil
		case errors.Is(err, store.ErrRolloutMoved) && attempt == 0:
			rec, err := e.db.GetRollout(ctx, c.rec.ID)
			if err != nil {
				return nil, err
			}
			r, err := specOf(rec)
			if err != nil {
				return nil, err
			}
			e.put(rec, r)
			c = &cached{rec: rec, r: r}
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
			// No room, moved again, or held by another rollout (or
			// process) that was faster.
			return nil, nil
		default:
			return nil, err
		}
	}
}

func assignmentOf(ro store.Rollout) *deviceapi.Assignment {
	return &deviceapi.Assignment{RolloutID: ro.ID, Release: ro.Product + "@" + ro.Version, TargetPath: ro.TargetPath}
}

// reconcile marks d's rollout row succeeded when d states it runs the
// rollout's release outside a trial (idle, current version the assigned
// one), whatever reports were lost: a row still in flight, and one that
// failed (timed out, or a failure report of an attempt the device
// retried). Other rows are left as they are.
func (e *Engine) reconcile(ctx context.Context, d store.Device, rd store.RolloutDevice, ro store.Rollout) error {
	if d.State != store.StateIdle || d.CurrentVersion != ro.Version || rd.State == store.RolloutDeviceSucceeded {
		return nil
	}
	from := rd.State
	if rd.Reason != "" {
		from += "/" + rd.Reason
	}
	actx := store.WithAudit(ctx) // the event commits with the update, or not at all
	e.audit(actx, systemActor, AuditRolloutReconciled, map[string]string{"rollout": ro.ID, "device": d.ID,
		"release": ro.Product + "@" + ro.Version, "from": from, "to": store.RolloutDeviceSucceeded})
	err := e.db.UpdateRolloutDevice(actx, store.RolloutDeviceUpdate{RolloutID: ro.ID, DeviceID: d.ID,
		FromState: rd.State, FromReason: rd.Reason, State: store.RolloutDeviceSucceeded, Now: e.now().UTC()})
	if errors.Is(err, store.ErrConflict) {
		return nil // a concurrent report or time-out; the next check-in looks again
	}
	if err != nil {
		return err
	}
	e.log.Info("rollout device reconciled from its check-in", "rollout", ro.ID, "device_id", d.ID, "from", from)
	if ro.State == store.RolloutRunning {
		_, err = e.evaluate(ctx, ro) // ro as read with the row, not read again
	}
	return err
}

// Report applies a device's status report to its rollout.
func (e *Engine) Report(ctx context.Context, d store.Device, kind, version, msg string) error {
	state, reason, ok := rollout.Classify(kind, msg)
	if !ok {
		return nil
	}
	for range MaxCASRetries {
		rd, ro, err := e.db.DeviceAssignment(ctx, d.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		// Only reports about the assigned release count; a report without
		// a version (the agent failed before choosing a release) says
		// nothing certain about this rollout.
		if version != ro.Version {
			return nil
		}
		cur := rollout.DeviceState(rd.State)
		next := rollout.Next(cur, state)
		if next == cur && cur.Outcome() {
			return nil
		}
		r := ""
		if next == rollout.DeviceFailed {
			r = string(reason)
		}
		err = e.db.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: ro.ID, DeviceID: d.ID,
			FromState: rd.State, FromReason: rd.Reason, State: string(next), Reason: r, Now: e.now().UTC()})
		if errors.Is(err, store.ErrConflict) {
			continue // a concurrent report, check-in or time-out: read again
		}
		if err != nil {
			return err
		}
		if next != cur && next.Outcome() && ro.State == store.RolloutRunning {
			_, err = e.evaluate(ctx, ro) // ro as read with the row, not read again
		}
		return err
	}
	return fmt.Errorf("%w: device %s changed concurrently %d times", store.ErrConflict, d.ID, MaxCASRetries)
}
