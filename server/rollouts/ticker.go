package rollouts

import (
	"context"
	"errors"
	"time"

	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// Holder returns this engine's name in the ticker lease.
func (e *Engine) Holder() string { return e.holder }

// Leading reports whether this engine holds the ticker lease now.
func (e *Engine) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now().Before(e.leaseUntil)
}

// renewLease acquires or renews the ticker lease. On failure (refused or
// an error) the engine stops acting as the ticker at once.
func (e *Engine) renewLease(ctx context.Context) bool {
	now := e.now()
	ok, err := e.db.AcquireLease(ctx, TickerLease, e.holder, e.leaseTTL, now)
	e.mu.Lock()
	was := e.now().Before(e.leaseUntil)
	if ok && err == nil {
		e.leaseUntil = now.Add(e.leaseTTL)
	} else {
		e.leaseUntil = time.Time{}
	}
	e.mu.Unlock()
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Error("rollout ticker lease renewal failed", "holder", e.holder, "err", err)
	case ok && !was:
		e.log.Info("rollout ticker lease acquired", "holder", e.holder, "ttl", e.leaseTTL.String())
	case !ok && was:
		e.log.Warn("rollout ticker lease lost", "holder", e.holder)
	}
	return ok && err == nil
}

// Tick runs the periodic rollout work if this engine holds (or can take)
// the ticker lease: time out silent devices, recompute the eligible fleet
// and stage target, and apply the health gates. Without the lease it only
// refreshes its metrics.
func (e *Engine) Tick(ctx context.Context) {
	if !e.Leading() && !e.renewLease(ctx) {
		e.observeAll(ctx)
		return
	}
	recs, err := e.db.ListRollouts(ctx, "", true, store.MaxListLimit)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("rollout tick failed", "err", err)
		}
		return
	}
	for _, rec := range recs {
		if !e.Leading() {
			return // the lease expired or was lost mid-tick
		}
		if rec.State != store.RolloutRunning && rec.State != store.RolloutPaused {
			continue
		}
		if err := e.tickOne(ctx, rec); err != nil && ctx.Err() == nil {
			e.log.Error("rollout evaluation failed", "rollout", rec.ID, "err", err)
		}
	}
}

// observeAll exports the cached rollouts' counts.
func (e *Engine) observeAll(ctx context.Context) {
	e.mu.Lock()
	var cs []*cached
	for _, c := range e.live {
		cs = append(cs, c)
	}
	e.mu.Unlock()
	for _, c := range cs {
		if st, _, err := e.status(ctx, c.rec, c.r); err == nil {
			e.observe(c.rec.ID, st)
		}
	}
}

func (e *Engine) tickOne(ctx context.Context, rec store.Rollout) error {
	r, err := specOf(rec)
	if err != nil {
		return err
	}
	now := e.now().UTC()
	if r.State == rollout.Running {
		over, err := e.db.OverdueRolloutDevices(ctx, rec.ID, now.Add(-r.ReportDeadline), MaxOverduePerTick)
		if err != nil {
			return err
		}
		for _, d := range over {
			if !rollout.TimedOut(rollout.DeviceState(d.State), d.UpdatedAt, r.ReportDeadline, now) {
				continue
			}
			err := e.db.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: rec.ID, DeviceID: d.DeviceID,
				FromState: d.State, FromReason: d.Reason, UpdatedBefore: d.UpdatedAt, State: store.RolloutDeviceFailed,
				Reason: string(rollout.ReasonTimedOut), Now: now})
			if errors.Is(err, store.ErrConflict) {
				continue // it reported meanwhile
			}
			if err != nil {
				return err
			}
			e.log.Info("rollout device timed out", "rollout", rec.ID, "device_id", d.DeviceID, "silent_since", d.UpdatedAt)
		}
	}
	eligible, err := e.computeEligible(ctx, rec, r)
	if err != nil {
		return err
	}
	if target := rollout.Target(r.Stages, rec.Stage, eligible); eligible != rec.Eligible || target != rec.Target {
		err := e.db.SetRolloutEligible(ctx, rec.ID, rec.Stage, eligible, target)
		if errors.Is(err, store.ErrConflict) {
			return nil // moved meanwhile; the next tick counts again
		}
		if err != nil {
			return err
		}
		rec.Eligible, rec.Target = eligible, target
	}
	st, err := e.evaluate(ctx, rec)
	if err != nil {
		return err
	}
	e.observe(rec.ID, st)
	return nil
}

// Run refreshes the cached rollouts every refresh interval, renews the
// ticker lease every third of its TTL and ticks every every, until ctx is
// done; it then gives the lease up so another server takes over at once.
func (e *Engine) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	renew := time.NewTicker(e.leaseTTL / 3)
	defer renew.Stop()
	refresh := time.NewTicker(e.refreshEvery)
	defer refresh.Stop()
	e.renewLease(ctx)
	defer func() {
		if e.Leading() {
			e.mu.Lock()
			e.leaseUntil = time.Time{}
			e.mu.Unlock()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if err := e.db.ReleaseLease(rctx, TickerLease, e.holder); err != nil {
				e.log.Error("rollout ticker lease release failed", "err", err)
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("rollout refresh failed", "err", err)
			}
		case <-renew.C:
			e.renewLease(ctx)
		case <-tick.C:
			e.Tick(ctx)
		}
	}
}
