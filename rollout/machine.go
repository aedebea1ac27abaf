package rollout

import (
	"errors"
	"fmt"
	"time"
)

// State is the state of a rollout:
//
//	draft ──start──▶ running ──pause / failure threshold──▶ paused
//	                 running ◀──────────resume────────────── paused
//	                 running ──last stage succeeded──▶ completed
//	draft, running, paused ──cancel──▶ cancelled
//
// Completed and cancelled are final.
type State string

// Rollout states.
const (
	Draft     State = "draft"
	Running   State = "running"
	Paused    State = "paused"
	Completed State = "completed"
	Cancelled State = "cancelled"
)

// Active reports whether a rollout in state s holds its devices: a device
// is in at most one active rollout per product.
func (s State) Active() bool { return s == Draft || s == Running || s == Paused }

// Final reports whether no transition leaves s.
func (s State) Final() bool { return s == Completed || s == Cancelled }

// Valid reports whether s is one of the State constants.
func (s State) Valid() bool { return s.Active() || s.Final() }

// Action is an operator's request to change a rollout's state.
type Action string

// Operator actions.
const (
	ActionStart  Action = "start"
	ActionPause  Action = "pause"
	ActionResume Action = "resume"
	ActionCancel Action = "cancel"
)

// ErrInvalidTransition is returned by Apply for an action the rollout's
// state does not allow.
var ErrInvalidTransition = errors.New("invalid rollout transition")

// ErrInvalidSpec is wrapped by the errors of Spec.Validate.
var ErrInvalidSpec = errors.New("invalid rollout")

// Defaults and limits of rollout settings.
const (
	// DefaultSuccessThreshold is the share of a stage's devices that must
	// have committed the release before the next stage opens.
	DefaultSuccessThreshold Threshold = 9500
	// DefaultFailureThreshold is the share of failed devices above which
	// the rollout pauses itself.
	DefaultFailureThreshold Threshold = 200
	// DefaultReportDeadline is how long an assigned device may stay
	// silent before it counts as failed (timed out).
	DefaultReportDeadline = 2 * time.Hour
	// MaxReportDeadline is the longest report deadline.
	MaxReportDeadline = 30 * 24 * time.Hour
	// MinReportDeadline is the shortest report deadline.
	MinReportDeadline = time.Second
	// MaxParallelLimit is the largest max_parallel setting.
	MaxParallelLimit = MaxStageCount
)

// Spec is what an operator chooses when creating a rollout.
type Spec struct {
	Stages  []Stage
	Filter  Filter
	Success Threshold // a stage succeeds when this share of it committed
	Failure Threshold // the rollout pauses when more than this share failed
	// MaxParallel bounds the devices in progress (assigned, no outcome
	// yet) at any time; 0 means no bound.
	MaxParallel int
	// Window restricts new assignments to a recurring maintenance window;
	// the zero Window is always open.
	Window Window
	// ReportDeadline: a device in progress that has not reported for this
	// long counts as failed (timed out).
	ReportDeadline time.Duration
	// Forced asks devices to install even if the operator's device-side
	// policy would defer the install. It never bypasses a signature, the
	// device's firmware policy or its security version.
	Forced bool
}

// Validate checks the settings that the parsers do not already guarantee.
func (s *Spec) Validate() error {
	switch {
	case len(s.Stages) == 0 || len(s.Stages) > MaxStages:
		return fmt.Errorf("%w: %d stages, want 1 to %d", ErrInvalidSpec, len(s.Stages), MaxStages)
	case s.Success <= 0 || s.Success > Full:
		return fmt.Errorf("%w: success threshold %s, want above 0%% and at most 100%%", ErrInvalidSpec, s.Success)
	case s.Failure < 0 || s.Failure >= Full:
		return fmt.Errorf("%w: failure threshold %s, want 0%% to below 100%%", ErrInvalidSpec, s.Failure)
	case s.MaxParallel < 0 || s.MaxParallel > MaxParallelLimit:
		return fmt.Errorf("%w: max_parallel %d, want 0 (no limit) to %d", ErrInvalidSpec, s.MaxParallel, MaxParallelLimit)
	case s.ReportDeadline < MinReportDeadline || s.ReportDeadline > MaxReportDeadline:
		return fmt.Errorf("%w: report deadline %s, want %s to %s", ErrInvalidSpec, s.ReportDeadline, MinReportDeadline, MaxReportDeadline)
	}
	return nil
}

// Rollout is a rollout's settings and progress, as the state machine sees
// it.
type Rollout struct {
	Spec
	State State
	Stage int // index of the current stage in Spec.Stages
	// AckFailed is the number of failed devices the operator acknowledged
	// by resuming the rollout: only failures beyond it count against the
	// failure threshold.
	AckFailed int
}

// Counts are the devices of one stage by outcome. A device counts in the
// stage it was assigned in.
type Counts struct {
	Assigned  int // every device assigned in the stage, whatever its outcome
	Succeeded int // committed the release after a healthy boot
	Failed    int // install or verification failed, rolled back, health check failed or timed out
}

// InProgress returns the devices with no outcome yet.
func (c Counts) InProgress() int { return c.Assigned - c.Succeeded - c.Failed }

// Add returns the sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{Assigned: c.Assigned + o.Assigned, Succeeded: c.Succeeded + o.Succeeded, Failed: c.Failed + o.Failed}
}

// Status is the fleet's view of a rollout.
type Status struct {
	// Eligible is the number of devices the rollout may reach: those that
	// match the filter and are not held by another active rollout of the
	// product, including the ones already assigned.
	Eligible int
	// Stages holds the counts by the stage devices were assigned in.
	Stages []Counts
}

// Total returns the counts of every stage together.
func (s Status) Total() Counts {
	var t Counts
	for _, c := range s.Stages {
		t = t.Add(c)
	}
	return t
}

// Transition is one change of a rollout's state or stage, with the reason
// the audit log records.
type Transition struct {
	Action    Action // the operator's action; "" for an automatic transition
	From, To  State
	FromStage int
	ToStage   int
	Reason    string
}

// Apply performs an operator's action: start (draft to running), pause
// (running to paused), resume (paused to running, acknowledging the
// failures seen so far) or cancel (draft, running or paused to cancelled).
// reason, if not empty, is appended to the transition's reason. Any other
// combination returns an error wrapping ErrInvalidTransition and r
// unchanged.
func Apply(r Rollout, a Action, st Status, reason string) (Rollout, Transition, error) {
	from := r.State
	var to State
	switch {
	case a == ActionStart && from == Draft:
		to = Running
	case a == ActionPause && from == Running:
		to = Paused
	case a == ActionResume && from == Paused:
		to = Running
		r.AckFailed = st.Total().Failed
	case a == ActionCancel && from.Active():
		to = Cancelled
	default:
		return r, Transition{}, fmt.Errorf("%w: cannot %s a %s rollout", ErrInvalidTransition, a, from)
	}
	msg := fmt.Sprintf("operator %s", a)
	if a == ActionResume && r.AckFailed > 0 {
		msg += fmt.Sprintf(", acknowledging %d failed devices", r.AckFailed)
	}
	if reason != "" {
		msg += ": " + reason
	}
	r.State = to
	return r, Transition{Action: a, From: from, To: to, FromStage: r.Stage, ToStage: r.Stage, Reason: msg}, nil
}

// Evaluate applies the health gates to a running rollout and returns it
// with the automatic transitions taken, in order (none if nothing
// changed; rollouts that are not running never change here):
//
//   - Failure gate: if the failed devices (beyond AckFailed) are more than
//     the failure threshold of the current stage's size, the rollout
//     pauses. The stage's size is its cumulative target or the devices
//     assigned so far, whichever is larger, so a single early failure in a
//     small canary pauses it as soon as it is reported.
//   - Success gate: once every device of the current stage's cumulative
//     target is assigned and at least the success threshold of that target
//     has succeeded, the next stage opens; after the last stage the
//     rollout is completed. A stage with no eligible device never
//     succeeds: the rollout waits for devices to enroll or match.
//
// Several stages may open at once when their targets are equal (a small
// fleet). Devices that timed out must already be counted as failed (see
// TimedOut).
func Evaluate(r Rollout, st Status, now time.Time) (Rollout, []Transition) {
	var out []Transition
	for r.State == Running && r.Stage >= 0 && r.Stage < len(r.Stages) {
		total := st.Total()
		target := Target(r.Stages, r.Stage, st.Eligible)
		label := r.Stages[r.Stage].Label(r.Stage)
		failed := max(total.Failed-r.AckFailed, 0)
		size := max(total.Assigned, target)
		if failed > 0 && r.Failure.Exceeded(failed, size) {
			out = append(out, Transition{From: Running, To: Paused, FromStage: r.Stage, ToStage: r.Stage,
				Reason: fmt.Sprintf("failure threshold crossed in stage %s: %d of %d devices failed (%s), more than %s",
					label, failed, size, share(failed, size), r.Failure)})
			r.State = Paused
			break
		}
		if target == 0 || total.Assigned < target || !r.Success.Reached(total.Succeeded, target) {
			break
		}
		why := fmt.Sprintf("stage %s reached the success threshold: %d of %d devices succeeded (%s), at least %s",
			label, total.Succeeded, target, share(total.Succeeded, target), r.Success)
		if r.Stage == len(r.Stages)-1 {
			out = append(out, Transition{From: Running, To: Completed, FromStage: r.Stage, ToStage: r.Stage,
				Reason: why + "; last stage, rollout completed"})
			r.State = Completed
			break
		}
		next := r.Stage + 1
		out = append(out, Transition{From: Running, To: Running, FromStage: r.Stage, ToStage: next,
			Reason: fmt.Sprintf("%s; opening stage %s (%s)", why, r.Stages[next].Label(next), r.Stages[next])})
		r.Stage = next
	}
	return r, out
}

// Assignable returns how many more devices may be assigned to the rollout
// now, and when none, why not: the rollout is not running, the maintenance
// window is closed, the current stage's target is reached, or max_parallel
// devices are in progress.
func Assignable(r Rollout, st Status, now time.Time) (int, string) {
	if r.State != Running {
		return 0, fmt.Sprintf("rollout is %s", r.State)
	}
	if !r.Window.Open(now) {
		why := "maintenance window is closed"
		if next := r.Window.Next(now); !next.IsZero() {
			why += "; it opens at " + next.Format(time.RFC3339)
		}
		return 0, why
	}
	total := st.Total()
	n := Target(r.Stages, r.Stage, st.Eligible) - total.Assigned
	if n <= 0 {
		return 0, fmt.Sprintf("stage %s is fully assigned", r.Stages[r.Stage].Label(r.Stage))
	}
	if r.MaxParallel > 0 {
		room := r.MaxParallel - total.InProgress()
		if room <= 0 {
			return 0, fmt.Sprintf("max_parallel reached: %d devices in progress", total.InProgress())
		}
		n = min(n, room)
	}
	return n, ""
}

// share formats part of whole as a percentage, rounded down to 0.01%.
func share(part, whole int) string {
	if whole <= 0 {
		return "0%"
	}
	return Threshold(int64(part) * int64(Full) / int64(whole)).String()
}
