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

// New returns an Engine; Refresh it before use.
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
//
// The devices are listed first and the held devices read after them, so
// a device assigned meanwhile (by this server or another) is counted once
// whatever it reported in between: listed as eligible and then held by
// this rollout, or listed already running the release and held by it.
// Read the other way round, a device assigned and updated between the two
// reads was neither held nor eligible: the count fell short, and the last
// stage could complete with devices never assigned (seen with 100,000
// devices: 98 left on the old release).
func (e *Engine) computeEligible(ctx context.Context, rec store.Rollout, r rollout.Rollout) (int, error) {
	var candidates []string // IDs of the devices that are eligible unless held by another rollout
	listed := map[string]bool{}
	after := ""
	for {
		devs, err := e.db.ListDevices(ctx, store.DeviceFilter{Product: rec.Product, After: after, Limit: store.MaxListLimit})
		if err != nil {
			return 0, err
		}
		for _, d := range devs {
			listed[d.ID] = true
			if eligibleDevice(rec, r, d) {
				candidates = append(candidates, d.ID)
			}
		}
		if len(devs) < store.MaxListLimit {
			break
		}
		after = devs[len(devs)-1].ID
	}
	held, err := e.db.HeldDevices(ctx, rec.Product)
	if err != nil {
		return 0, err
	}
	n := 0
	for id, ro := range held {
		if ro == rec.ID && listed[id] {
			n++
		}
	}
	for _, id := range candidates {
		if held[id] == "" {
			n++
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
	ctx = store.WithAudit(ctx) // the transitions' events commit with the update
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
	}
	if err := e.db.UpdateRollout(ctx, rec.ID, rec.State, rec.Stage, to, now); err != nil {
		return rec, err
	}
	to.UpdatedAt = now
	for _, st := range steps {
		e.log.Info("rollout transition", "rollout", rec.ID, "from", st.From, "to", st.To, "stage", st.ToStage, "reason", st.Reason)
	}
	e.put(to, next)
	if next.State.Final() {
		e.devices.DeletePartialMatch(prometheus.Labels{"rollout": rec.ID})
	}
	return to, nil
}

// evaluate applies the health gates to rec (as read, in this request or
// tick) with its counts read now. A concurrent transition elsewhere
// (ErrConflict on rec's state and stage) is not an error: that server
// evaluated the same numbers, or the rollout moved on.
func (e *Engine) evaluate(ctx context.Context, rec store.Rollout) (rollout.Status, error) {
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

// ErrInput is wrapped by errors about a rollout request's fields.
var ErrInput = errors.New("invalid rollout request")

// ErrApprovalsMissing: a production rollout cannot start before its
// release has the approvals production needs.
var ErrApprovalsMissing = fmt.Errorf("%w: the release lacks the approvals its environment needs", store.ErrConflict)
