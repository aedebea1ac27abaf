package rollouts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

// MaxOverduePerTick bounds the devices timed out per rollout and tick.
const MaxOverduePerTick = store.MaxListLimit

// Engine settings.
const (
	// TickerLease is the name of the store lease whose holder runs the
	// periodic rollout work (time-outs, eligible counts, health gates).
	TickerLease = "rollout-ticker"
	// DefaultLeaseTTL is the ticker lease's time to live; its holder renews
	// it every third of it, and another server takes over at most this
	// long after the holder died.
	DefaultLeaseTTL = 15 * time.Second
	// MinLeaseTTL and MaxLeaseTTL bound Config.LeaseTTL.
	MinLeaseTTL = 30 * time.Millisecond
	MaxLeaseTTL = store.MaxLeaseTTL
	// DefaultRefreshInterval is how often a server reloads the running and
	// paused rollouts from the store: a rollout created, started, paused
	// or advanced through another server is acted on here within it.
	DefaultRefreshInterval = time.Second
	// MinRefreshInterval and MaxRefreshInterval bound
	// Config.RefreshInterval.
	MinRefreshInterval = 10 * time.Millisecond
	MaxRefreshInterval = time.Minute
	// MaxCASRetries bounds the re-reads of a device's rollout row when a
	// concurrent change wins the compare-and-swap.
	MaxCASRetries = 3
)

// Audit actions of rollouts.
const (
	AuditRolloutCreated    = "rollout.created"
	AuditRolloutTransition = "rollout.transition"
	AuditRolloutAssigned   = "rollout.assigned"
	AuditRolloutReconciled = "rollout.reconciled"
	AuditDeviceTags        = "device.tags"
)

// systemActor is the actor of automatic transitions in the audit log.
const systemActor = "airlock"

// Engine applies the state machine of package rollout to the rollouts in
// the store. Every number it decides on lives in the database, so several
// servers on one database act as one:
//
//   - The store admits each assignment with a conditional update of the
//     rollout's counters (stage target, max_parallel) in the transaction
//     of the insert, so concurrent check-ins on any server never overshoot
//     a stage; the health gates read the counters the store keeps with
//     every device change.
//   - Each server caches the running and paused rollouts (their settings,
//     state and stage) and reloads them every RefreshInterval; the cache
//     only picks candidate rollouts for a check-in, the store admits.
//   - The periodic work that writes (time-outs, the eligible count and the
//     stage target, health gates) runs in the holder of the TickerLease.
//     Every transition is compare-and-swap on (state, stage), so a brief
//     overlap of two holders, or a report evaluated on another server,
//     changes nothing twice.
//   - A check-in reconciles the device's rollout row with what the device
//     states: running the assigned release is a success, whatever reports
//     were lost (a time-out included).
type Engine struct {
	db                store.Store
	now               func() time.Time
	log               *slog.Logger
	auditFn           func(ctx context.Context, actor, action string, details map[string]string)
	requiredApprovals func(env string) int
	holder            string
	leaseTTL          time.Duration
	refreshEvery      time.Duration
	devices           *prometheus.GaugeVec

	mu         sync.Mutex
	live       map[string]*cached // running and paused rollouts by ID
	refreshed  time.Time          // when live was last loaded
	leaseUntil time.Time          // the ticker lease is ours until then (zero: not held)
	refreshing atomic.Bool
}

// cached is a running or paused rollout as last read from the store.
type cached struct {
	rec store.Rollout
	r   rollout.Rollout
}

// Config configures an Engine.
type Config struct {
	// DB holds rollouts, their devices and releases. Required.
	DB store.Store
	// RequiredApprovals is how many approvals a release for an environment
	// needs before it can be deployed. Required.
	RequiredApprovals func(env string) int
	// Now returns the current time; nil means time.Now. The ticker lease's
	// expiry is judged by it: the servers' clocks must agree to well
	// within LeaseTTL.
	Now func() time.Time
	// Log receives transitions and errors; nil means discard.
	Log *slog.Logger
	// Audit, when set, receives rollout, tag and deployment events. It
	// must not block.
	Audit func(ctx context.Context, actor, action string, details map[string]string)
	// Metrics, when set, registers airlock_rollout_devices.
	Metrics prometheus.Registerer
	// Holder names this server in the ticker lease; "" means a random ID.
	Holder string
	// LeaseTTL is the ticker lease's time to live; zero means
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
	// RefreshInterval is how often the cached rollouts are reloaded; zero
	// means DefaultRefreshInterval.
	RefreshInterval time.Duration
}

// New returns an Engine; Load it before use.
func New(cfg Config) (*Engine, error) {
	e := &Engine{db: cfg.DB, now: cfg.Now, log: cfg.Log, auditFn: cfg.Audit, requiredApprovals: cfg.RequiredApprovals,
		holder: cfg.Holder, leaseTTL: cfg.LeaseTTL, refreshEvery: cfg.RefreshInterval,
		live: map[string]*cached{},
		devices: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "airlock_rollout_devices",
			Help: "Devices of running and paused rollouts by state (assigned, in_progress, succeeded, failed).",
		}, []string{"rollout", "state"})}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.leaseTTL == 0 {
		e.leaseTTL = DefaultLeaseTTL
	}
	if e.leaseTTL < MinLeaseTTL || e.leaseTTL > MaxLeaseTTL {
		return nil, fmt.Errorf("rollout lease ttl %v outside %v..%v", e.leaseTTL, MinLeaseTTL, MaxLeaseTTL)
	}
	if e.refreshEvery == 0 {
		e.refreshEvery = DefaultRefreshInterval
	}
	if e.refreshEvery < MinRefreshInterval || e.refreshEvery > MaxRefreshInterval {
		return nil, fmt.Errorf("rollout refresh interval %v outside %v..%v", e.refreshEvery, MinRefreshInterval, MaxRefreshInterval)
	}
	if e.holder == "" {
		id, err := auth.RandomID("srv-")
		if err != nil {
			return nil, err
		}
		e.holder = id
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(e.devices)
	}
	return e, nil
}

func (e *Engine) audit(ctx context.Context, actor, action string, details map[string]string) {
	if e.auditFn != nil {
		e.auditFn(ctx, actor, action, details)
	}
}

// specOf parses a stored rollout's settings.
func specOf(rec store.Rollout) (rollout.Rollout, error) {
	stages, err := rollout.ParseStages(rec.Stages)
	if err != nil {
		return rollout.Rollout{}, err
	}
	filter, err := rollout.ParseFilter(rec.Filter)
	if err != nil {
		return rollout.Rollout{}, err
	}
	window, err := rollout.ParseWindow(rec.Window)
	if err != nil {
		return rollout.Rollout{}, err
	}
	r := rollout.Rollout{
		Spec: rollout.Spec{Stages: stages, Filter: filter, Success: rollout.Threshold(rec.SuccessThreshold),
			Failure: rollout.Threshold(rec.FailureThreshold), MaxParallel: rec.MaxParallel, Window: window,
			ReportDeadline: rec.ReportDeadline, Forced: rec.Forced},
		State: rollout.State(rec.State), Stage: rec.Stage, AckFailed: rec.AckFailed,
	}
	if r.Stage >= len(stages) {
		return rollout.Rollout{}, fmt.Errorf("internal error: rollout %s is at stage %d of %d", rec.ID, r.Stage, len(stages))
	}
	return r, nil
}

// Load reads the store's running and paused rollouts (at start).
func (e *Engine) Load(ctx context.Context) error { return e.Refresh(ctx) }

// Refresh reloads the running and paused rollouts from the store.
func (e *Engine) Refresh(ctx context.Context) error {
	recs, err := e.db.ListRollouts(ctx, "", true, store.MaxListLimit)
	if err != nil {
		return err
	}
	e.mu.Lock()
	old := e.live
	e.mu.Unlock()
	live := make(map[string]*cached, len(recs))
	for _, rec := range recs {
		if rec.State != store.RolloutRunning && rec.State != store.RolloutPaused {
			continue
		}
		if c := old[rec.ID]; c != nil && c.rec.UpdatedAt.Equal(rec.UpdatedAt) && c.rec.State == rec.State && c.rec.Stage == rec.Stage {
			live[rec.ID] = &cached{rec: rec, r: c.r}
			continue
		}
		r, err := specOf(rec)
		if err != nil {
			e.log.Error("rollout settings unreadable", "rollout", rec.ID, "err", err)
			continue
		}
		live[rec.ID] = &cached{rec: rec, r: r}
	}
	e.mu.Lock()
	e.live, e.refreshed = live, e.now()
	e.mu.Unlock()
	for id := range old {
		if live[id] == nil {
			e.devices.DeletePartialMatch(prometheus.Labels{"rollout": id})
		}
	}
	return nil
}

// maybeRefresh reloads the cache if it is older than the refresh interval
// and no other caller is reloading it.
func (e *Engine) maybeRefresh(ctx context.Context) {
	e.mu.Lock()
	stale := e.now().Sub(e.refreshed) >= e.refreshEvery
	e.mu.Unlock()
	if !stale || !e.refreshing.CompareAndSwap(false, true) {
		return
	}
	defer e.refreshing.Store(false)
	if err := e.Refresh(ctx); err != nil && ctx.Err() == nil {
		e.log.Error("rollout refresh failed", "err", err)
	}
}

// put records rec (as just written or read) in the cache.
func (e *Engine) put(rec store.Rollout, r rollout.Rollout) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rec.State == store.RolloutRunning || rec.State == store.RolloutPaused {
		e.live[rec.ID] = &cached{rec: rec, r: r}
	} else {
		delete(e.live, rec.ID)
	}
}

// running returns the cached running rollouts of product ("" for all),
// oldest first.
func (e *Engine) running(product string) []*cached {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*cached
	for _, c := range e.live {
		if c.rec.State == store.RolloutRunning && (c.rec.Product == product || product == "") {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b *cached) int { return a.rec.CreatedAt.Compare(b.rec.CreatedAt) })
	return out
}

// countsFrom turns store counts into per-stage counts and a failure
// reason histogram.
func countsFrom(n int, cs []store.RolloutCount) ([]rollout.Counts, map[string]int) {
	stages := make([]rollout.Counts, n)
	reasons := map[string]int{}
	for _, c := range cs {
		if c.Stage < 0 || c.Stage >= n {
			continue
		}
		st := &stages[c.Stage]
		st.Assigned += c.N
		switch c.State {
		case store.RolloutDeviceSucceeded:
			st.Succeeded += c.N
		case store.RolloutDeviceFailed:
			st.Failed += c.N
			reasons[c.Reason] += c.N
		}
	}
	return stages, reasons
}

// status reads rec's counts from the store: the counters the store keeps
// with every device change, and the eligible count the ticker stored.
func (e *Engine) status(ctx context.Context, rec store.Rollout, r rollout.Rollout) (rollout.Status, map[string]int, error) {
	cs, err := e.db.RolloutCounts(ctx, rec.ID)
	if err != nil {
		return rollout.Status{}, nil, err
	}
	var st rollout.Status
	var reasons map[string]int
	st.Stages, reasons = countsFrom(len(r.Stages), cs)
	st.Eligible = max(rec.Eligible, st.Total().Assigned)
	return st, reasons, nil
}

// observe exports st as airlock_rollout_devices.
func (e *Engine) observe(id string, st rollout.Status) {
	t := st.Total()
	e.devices.WithLabelValues(id, store.RolloutDeviceAssigned).Set(float64(t.Assigned))
	e.devices.WithLabelValues(id, store.RolloutDeviceInProgress).Set(float64(t.InProgress()))
	e.devices.WithLabelValues(id, store.RolloutDeviceSucceeded).Set(float64(t.Succeeded))
	e.devices.WithLabelValues(id, store.RolloutDeviceFailed).Set(float64(t.Failed))
}

// filterDevice is what a rollout filter sees of a device.
func filterDevice(d store.Device) rollout.Device {
	return rollout.Device{Model: d.Model, HWRev: d.HWRev, Channel: d.Channel, Product: d.Product,
		Version: d.CurrentVersion, Tags: d.Tags}
}

// eligibleDevice reports whether d may be assigned to the rollout: the
// product matches, the filter holds, and it does not already run the
// release.
func eligibleDevice(rec store.Rollout, r rollout.Rollout, d store.Device) bool {
	return d.Product == rec.Product && d.CurrentVersion != rec.Version && r.Filter.Match(filterDevice(d))
}

// computeEligible counts the devices the rollout may reach: its own
// devices plus the eligible devices no other active rollout holds.
func (e *Engine) computeEligible(ctx context.Context, rec store.Rollout, r rollout.Rollout) (int, error) {
	held, err := e.db.HeldDevices(ctx, rec.Product)
	if err != nil {
		return 0, err
	}
	n := 0
	for off := 0; off <= store.MaxListOffset; off += store.MaxListLimit {
		devs, err := e.db.ListDevices(ctx, store.DeviceFilter{Product: rec.Product, Limit: store.MaxListLimit, Offset: off})
		if err != nil {
			return 0, err
		}
		for _, d := range devs {
			switch h := held[d.ID]; {
			case h == rec.ID:
				n++
			case h == "" && eligibleDevice(rec, r, d):
				n++
			}
		}
		if len(devs) < store.MaxListLimit {
			break
		}
	}
	return max(n, rec.Assigned), nil
}

// persist stores the transitions steps that took rec (parsed as from) to
// next, compare-and-swap on rec's state and stage, audits each and
// returns the stored record. The stage target follows the new stage.
func (e *Engine) persist(ctx context.Context, rec store.Rollout, next rollout.Rollout, steps []rollout.Transition, actor string) (store.Rollout, error) {
	if len(steps) == 0 {
		return rec, nil
	}
	to := rec
	to.State, to.Stage, to.AckFailed, to.Reason = string(next.State), next.Stage, next.AckFailed, steps[len(steps)-1].Reason
	to.Target = rollout.Target(next.Stages, next.Stage, to.Eligible)
	now := e.now().UTC()
	if err := e.db.UpdateRollout(ctx, rec.ID, rec.State, rec.Stage, to, now); err != nil {
		return rec, err
	}
	to.UpdatedAt = now
	for _, st := range steps {
		details := map[string]string{
			"rollout": rec.ID, "release": rec.Product + "@" + rec.Version, "from": string(st.From), "to": string(st.To),
			"from_stage": next.Stages[st.FromStage].Label(st.FromStage), "to_stage": next.Stages[st.ToStage].Label(st.ToStage),
			"reason": st.Reason,
		}
		if st.Action != "" {
			details["operator_action"] = string(st.Action)
		}
		e.audit(ctx, actor, AuditRolloutTransition, details)
		e.log.Info("rollout transition", "rollout", rec.ID, "from", st.From, "to", st.To, "stage", st.ToStage, "reason", st.Reason)
	}
	e.put(to, next)
	if next.State.Final() {
		e.devices.DeletePartialMatch(prometheus.Labels{"rollout": rec.ID})
	}
	return to, nil
}

// evaluate applies the health gates to the rollout id as stored. A
// concurrent transition elsewhere (ErrConflict) is not an error: that
// server evaluated the same numbers.
func (e *Engine) evaluate(ctx context.Context, id string) error {
	rec, err := e.db.GetRollout(ctx, id)
	if err != nil {
		return err
	}
	_, err = e.evaluateRec(ctx, rec)
	return err
}

func (e *Engine) evaluateRec(ctx context.Context, rec store.Rollout) (rollout.Status, error) {
	r, err := specOf(rec)
	if err != nil {
		return rollout.Status{}, err
	}
	st, _, err := e.status(ctx, rec, r)
	if err != nil {
		return rollout.Status{}, err
	}
	if r.State != rollout.Running {
		return st, nil
	}
	next, steps := rollout.Evaluate(r, st, e.now())
	if _, err := e.persist(ctx, rec, next, steps, systemActor); err != nil && !errors.Is(err, store.ErrConflict) {
		return st, err
	}
	return st, nil
}

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
		err := e.db.AssignRolloutDevice(ctx, store.RolloutDevice{RolloutID: c.rec.ID, DeviceID: d.ID, Stage: c.rec.Stage,
			State: store.RolloutDeviceAssigned, AssignedAt: now.UTC()})
		switch {
		case err == nil:
			e.audit(ctx, systemActor, AuditRolloutAssigned, map[string]string{"rollout": c.rec.ID, "device": d.ID,
				"release": c.rec.Product + "@" + c.rec.Version, "stage": c.r.Stages[c.rec.Stage].Label(c.rec.Stage)})
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
	err := e.db.UpdateRolloutDevice(ctx, store.RolloutDeviceUpdate{RolloutID: ro.ID, DeviceID: d.ID,
		FromState: rd.State, FromReason: rd.Reason, State: store.RolloutDeviceSucceeded, Now: e.now().UTC()})
	if errors.Is(err, store.ErrConflict) {
		return nil // a concurrent report or time-out; the next check-in looks again
	}
	if err != nil {
		return err
	}
	from := rd.State
	if rd.Reason != "" {
		from += "/" + rd.Reason
	}
	e.audit(ctx, systemActor, AuditRolloutReconciled, map[string]string{"rollout": ro.ID, "device": d.ID,
		"release": ro.Product + "@" + ro.Version, "from": from, "to": store.RolloutDeviceSucceeded})
	e.log.Info("rollout device reconciled from its check-in", "rollout", ro.ID, "device_id", d.ID, "from", from)
	if ro.State == store.RolloutRunning {
		return e.evaluate(ctx, ro.ID)
	}
	return nil
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
			return e.evaluate(ctx, ro.ID)
		}
		return nil
	}
	return fmt.Errorf("%w: device %s changed concurrently %d times", store.ErrConflict, d.ID, MaxCASRetries)
}

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
	st, err := e.evaluateRec(ctx, rec)
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

// ErrInput is wrapped by errors about a rollout request's fields.
var ErrInput = errors.New("invalid rollout request")

// ErrApprovalsMissing: a production rollout cannot start before its
// release has the approvals production needs.
var ErrApprovalsMissing = fmt.Errorf("%w: the release lacks the approvals its environment needs", store.ErrConflict)
