package rollouts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// MaxOverduePerTick bounds the devices timed out per rollout and tick.
const MaxOverduePerTick = store.MaxListLimit

// Audit actions of rollouts.
const (
	AuditRolloutCreated    = "rollout.created"
	AuditRolloutTransition = "rollout.transition"
	AuditDeviceTags        = "device.tags"
)

// systemActor is the actor of automatic transitions in the audit log.
const systemActor = "airlock"

// Engine keeps the running and paused rollouts in memory, with
// their device counts, and applies the state machine of package rollout.
// All changes of rollout devices go through it, so the counts stay exact
// between the periodic re-counts from the store. The store's unique index
// keeps a device in one active rollout per product even across processes.
type Engine struct {
	db                store.Store
	now               func() time.Time
	log               *slog.Logger
	auditFn           func(ctx context.Context, actor, action string, details map[string]string)
	requiredApprovals func(env string) int
	mu                sync.Mutex
	live              map[string]*liveRollout
	devices           *prometheus.GaugeVec
}

// liveRollout is one tracked rollout; mu serializes its changes.
type liveRollout struct {
	mu       sync.Mutex
	rec      store.Rollout
	r        rollout.Rollout
	status   rollout.Status
	reasons  map[string]int
	eligible time.Time // when status.Eligible was computed
	gone     bool      // no longer tracked (final state)
}

// Config configures an Engine.
type Config struct {
	// DB holds rollouts, their devices and releases. Required.
	DB store.Store
	// RequiredApprovals is how many approvals a release for an environment
	// needs before it can be deployed. Required.
	RequiredApprovals func(env string) int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives transitions and errors; nil means discard.
	Log *slog.Logger
	// Audit, when set, receives rollout, tag and deployment events. It
	// must not block.
	Audit func(ctx context.Context, actor, action string, details map[string]string)
	// Metrics, when set, registers airlock_rollout_devices.
	Metrics prometheus.Registerer
}

// New returns an Engine; Load it before use.
func New(cfg Config) *Engine {
	e := &Engine{db: cfg.DB, now: cfg.Now, log: cfg.Log, auditFn: cfg.Audit, requiredApprovals: cfg.RequiredApprovals,
		live: map[string]*liveRollout{},
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
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(e.devices)
	}
	return e
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

// Load tracks the store's running and paused rollouts (at start).
func (e *Engine) Load(ctx context.Context) error {
	recs, err := e.db.ListRollouts(ctx, "", true, store.MaxListLimit)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.State == store.RolloutRunning || rec.State == store.RolloutPaused {
			if _, err := e.track(ctx, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// track starts tracking rec (or returns the tracked copy).
func (e *Engine) track(ctx context.Context, rec store.Rollout) (*liveRollout, error) {
	e.mu.Lock()
	if lr := e.live[rec.ID]; lr != nil {
		e.mu.Unlock()
		return lr, nil
	}
	e.mu.Unlock()
	r, err := specOf(rec)
	if err != nil {
		return nil, err
	}
	lr := &liveRollout{rec: rec, r: r}
	if err := e.recount(ctx, lr); err != nil {
		return nil, err
	}
	if err := e.computeEligible(ctx, lr); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if cur := e.live[rec.ID]; cur != nil {
		return cur, nil
	}
	e.live[rec.ID] = lr
	return lr, nil
}

func (e *Engine) get(id string) *liveRollout {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.live[id]
}

func (e *Engine) untrack(lr *liveRollout) {
	lr.gone = true
	e.mu.Lock()
	delete(e.live, lr.rec.ID)
	e.mu.Unlock()
}

// running returns the tracked running rollouts of product, oldest first.
func (e *Engine) running(product string) []*liveRollout {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*liveRollout
	for _, lr := range e.live {
		if lr.rec.Product == product || product == "" {
			out = append(out, lr)
		}
	}
	slices.SortFunc(out, func(a, b *liveRollout) int { return a.rec.CreatedAt.Compare(b.rec.CreatedAt) })
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

// recount reloads lr's counts from the store. lr.mu must be held or lr
// not yet shared.
func (e *Engine) recount(ctx context.Context, lr *liveRollout) error {
	cs, err := e.db.RolloutCounts(ctx, lr.rec.ID)
	if err != nil {
		return err
	}
	lr.status.Stages, lr.reasons = countsFrom(len(lr.r.Stages), cs)
	e.observe(lr)
	return nil
}

// observe exports lr's counts as airlock_rollout_devices.
func (e *Engine) observe(lr *liveRollout) {
	t := lr.status.Total()
	e.devices.WithLabelValues(lr.rec.ID, store.RolloutDeviceAssigned).Set(float64(t.Assigned))
	e.devices.WithLabelValues(lr.rec.ID, store.RolloutDeviceInProgress).Set(float64(t.InProgress()))
	e.devices.WithLabelValues(lr.rec.ID, store.RolloutDeviceSucceeded).Set(float64(t.Succeeded))
	e.devices.WithLabelValues(lr.rec.ID, store.RolloutDeviceFailed).Set(float64(t.Failed))
}

// filterDevice is what a rollout filter sees of a device.
func filterDevice(d store.Device) rollout.Device {
	return rollout.Device{Model: d.Model, HWRev: d.HWRev, Channel: d.Channel, Product: d.Product,
		Version: d.CurrentVersion, Tags: d.Tags}
}

// eligibleDevice reports whether d may be assigned to lr: the product
// matches, the filter holds, and it does not already run the release.
func eligibleDevice(lr *liveRollout, d store.Device) bool {
	return d.Product == lr.rec.Product && d.CurrentVersion != lr.rec.Version && lr.r.Filter.Match(filterDevice(d))
}

// computeEligible counts the devices lr may reach: its own devices plus
// the eligible devices no other active rollout holds.
func (e *Engine) computeEligible(ctx context.Context, lr *liveRollout) error {
	held, err := e.db.HeldDevices(ctx, lr.rec.Product)
	if err != nil {
		return err
	}
	n := 0
	for off := 0; off <= store.MaxListOffset; off += store.MaxListLimit {
		devs, err := e.db.ListDevices(ctx, store.DeviceFilter{Product: lr.rec.Product, Limit: store.MaxListLimit, Offset: off})
		if err != nil {
			return err
		}
		for _, d := range devs {
			switch h := held[d.ID]; {
			case h == lr.rec.ID:
				n++
			case h == "" && eligibleDevice(lr, d):
				n++
			}
		}
		if len(devs) < store.MaxListLimit {
			break
		}
	}
	lr.status.Eligible = max(n, lr.status.Total().Assigned)
	lr.eligible = e.now()
	return nil
}

// persist stores the transitions from (fromState, fromStage) that led to
// lr.r, audits each, and stops tracking a rollout that reached a final
// state. lr.mu must be held.
func (e *Engine) persist(ctx context.Context, lr *liveRollout, fromState rollout.State, fromStage int, steps []rollout.Transition, actor string) error {
	if len(steps) == 0 {
		return nil
	}
	to := lr.rec
	to.State, to.Stage, to.AckFailed, to.Reason = string(lr.r.State), lr.r.Stage, lr.r.AckFailed, steps[len(steps)-1].Reason
	now := e.now().UTC()
	ctx = store.WithAudit(ctx) // the transitions' events commit with the update
	for _, st := range steps {
		details := map[string]string{
			"rollout": lr.rec.ID, "release": lr.rec.Product + "@" + lr.rec.Version, "from": string(st.From), "to": string(st.To),
			"from_stage": lr.r.Stages[st.FromStage].Label(st.FromStage), "to_stage": lr.r.Stages[st.ToStage].Label(st.ToStage),
			"reason": st.Reason,
		}
		if st.Action != "" {
			details["operator_action"] = string(st.Action)
		}
		e.audit(ctx, actor, AuditRolloutTransition, details)
	}
	if err := e.db.UpdateRollout(ctx, lr.rec.ID, string(fromState), fromStage, to, now); err != nil {
		return err
	}
	to.UpdatedAt = now
	lr.rec = to
	for _, st := range steps {
		e.log.Info("rollout transition", "rollout", lr.rec.ID, "from", st.From, "to", st.To, "stage", st.ToStage, "reason", st.Reason)
	}
	if lr.r.State.Final() {
		e.untrack(lr)
	}
	return nil
}

// evaluate applies the health gates to lr. lr.mu must be held.
func (e *Engine) evaluate(ctx context.Context, lr *liveRollout) error {
	if lr.gone || lr.r.State != rollout.Running {
		return nil
	}
	fromState, fromStage := lr.r.State, lr.r.Stage
	next, steps := rollout.Evaluate(lr.r, lr.status, e.now())
	if len(steps) == 0 {
		return nil
	}
	prev := lr.r
	lr.r = next
	if err := e.persist(ctx, lr, fromState, fromStage, steps, systemActor); err != nil {
		lr.r = prev
		return err
	}
	return nil
}

// Checkin assigns device d to a running rollout if it is eligible and not
// held by one, and returns its current assignment (nil if none).
func (e *Engine) Checkin(ctx context.Context, d store.Device) (*deviceapi.Assignment, error) {
	rd, ro, err := e.db.DeviceAssignment(ctx, d.ID)
	switch {
	case err == nil && ro.Active():
		return assignmentOf(ro), nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	_ = rd
	for _, lr := range e.running(d.Product) {
		a, err := e.tryAssign(ctx, lr, d)
		if err != nil || a != nil {
			return a, err
		}
	}
	if err == nil && ro.State == store.RolloutCompleted {
		return assignmentOf(ro), nil
	}
	return nil, nil
}

func (e *Engine) tryAssign(ctx context.Context, lr *liveRollout, d store.Device) (*deviceapi.Assignment, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.gone || lr.r.State != rollout.Running || !eligibleDevice(lr, d) {
		return nil, nil
	}
	if n, _ := rollout.Assignable(lr.r, lr.status, e.now()); n <= 0 {
		return nil, nil
	}
	now := e.now().UTC()
	err := e.db.AssignRolloutDevice(e.assignAudit(ctx, lr, d), store.RolloutDevice{RolloutID: lr.rec.ID, DeviceID: d.ID, Stage: lr.r.Stage,
		State: store.RolloutDeviceAssigned, AssignedAt: now})
	if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) {
		return nil, nil // another rollout (or process) was faster
	}
	if err != nil {
		return nil, err
	}
	lr.status.Stages[lr.r.Stage].Assigned++
	lr.status.Eligible = max(lr.status.Eligible, lr.status.Total().Assigned)
	e.observe(lr)
	e.log.Info("rollout assigned a device", "rollout", lr.rec.ID, "device_id", d.ID, "stage", lr.r.Stage)
	return assignmentOf(lr.rec), e.evaluate(ctx, lr)
}

func assignmentOf(ro store.Rollout) *deviceapi.Assignment {
	return &deviceapi.Assignment{RolloutID: ro.ID, Release: ro.Product + "@" + ro.Version, TargetPath: ro.TargetPath}
}

// Report applies a device's status report to its rollout.
func (e *Engine) Report(ctx context.Context, d store.Device, kind, version, msg string) error {
	state, reason, ok := rollout.Classify(kind, msg)
	if !ok {
		return nil
	}
	_, ro, err := e.db.DeviceAssignment(ctx, d.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// Only reports about the assigned release count; a report without a
	// version (the agent failed before choosing a release) says nothing
	// certain about this rollout.
	if version != ro.Version {
		return nil
	}
	lr := e.get(ro.ID)
	if lr != nil {
		lr.mu.Lock()
		defer lr.mu.Unlock()
	}
	rd, ro, err := e.db.DeviceAssignment(ctx, d.ID) // re-read under the lock
	if err != nil {
		return err
	}
	cur := rollout.DeviceState(rd.State)
	next := rollout.Next(cur, state)
	if cur.Outcome() {
		return nil
	}
	r := ""
	if next == rollout.DeviceFailed {
		r = string(reason)
	}
	if err := e.db.UpdateRolloutDevice(ctx, ro.ID, d.ID, string(next), r, e.now().UTC()); err != nil {
		return err
	}
	if lr == nil || lr.gone || lr.rec.ID != ro.ID || next == cur {
		return nil
	}
	if rd.Stage >= 0 && rd.Stage < len(lr.status.Stages) {
		switch next {
		case rollout.DeviceSucceeded:
			lr.status.Stages[rd.Stage].Succeeded++
		case rollout.DeviceFailed:
			lr.status.Stages[rd.Stage].Failed++
			lr.reasons[r]++
		}
	}
	e.observe(lr)
	return e.evaluate(ctx, lr)
}

// Tick re-counts every tracked rollout, recomputes the eligible fleet,
// times out silent devices and applies the health gates.
func (e *Engine) Tick(ctx context.Context) {
	for _, lr := range e.running("") {
		if err := e.tickOne(ctx, lr); err != nil && ctx.Err() == nil {
			e.log.Error("rollout evaluation failed", "rollout", lr.rec.ID, "err", err)
		}
	}
}

func (e *Engine) tickOne(ctx context.Context, lr *liveRollout) error {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.gone {
		return nil
	}
	now := e.now().UTC()
	if lr.r.State == rollout.Running {
		over, err := e.db.OverdueRolloutDevices(ctx, lr.rec.ID, now.Add(-lr.r.ReportDeadline), MaxOverduePerTick)
		if err != nil {
			return err
		}
		for _, d := range over {
			if !rollout.TimedOut(rollout.DeviceState(d.State), d.UpdatedAt, lr.r.ReportDeadline, now) {
				continue
			}
			if err := e.db.UpdateRolloutDevice(ctx, lr.rec.ID, d.DeviceID, store.RolloutDeviceFailed, string(rollout.ReasonTimedOut), now); err != nil {
				return err
			}
			e.log.Info("rollout device timed out", "rollout", lr.rec.ID, "device_id", d.DeviceID, "silent_since", d.UpdatedAt)
		}
	}
	if err := e.recount(ctx, lr); err != nil {
		return err
	}
	if err := e.computeEligible(ctx, lr); err != nil {
		return err
	}
	return e.evaluate(ctx, lr)
}

// Run ticks until ctx is done.
func (e *Engine) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.Tick(ctx)
		}
	}
}

// ErrInput is wrapped by errors about a rollout request's fields.
var ErrInput = errors.New("invalid rollout request")

// ErrApprovalsMissing: a production rollout cannot start before its
// release has the approvals production needs.
var ErrApprovalsMissing = fmt.Errorf("%w: the release lacks the approvals its environment needs", store.ErrConflict)
