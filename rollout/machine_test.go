package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustStages(t *testing.T, s string) []Stage {
	t.Helper()
	st, err := ParseStages(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustWindow(t *testing.T, s string) Window {
	t.Helper()
	w, err := ParseWindow(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// rollout returns a rollout with stages canary:10,5%,25%,100%, 95% success
// and 2% failure thresholds.
func testRollout(t *testing.T, state State, stage int) Rollout {
	return Rollout{
		Spec: Spec{
			Stages:         mustStages(t, "canary:10,5%,25%,100%"),
			Success:        DefaultSuccessThreshold,
			Failure:        DefaultFailureThreshold,
			ReportDeadline: time.Hour,
		},
		State: state,
		Stage: stage,
	}
}

func status(eligible int, stages ...Counts) Status { return Status{Eligible: eligible, Stages: stages} }

// TestTransitions is the rollout state machine's transition table: every
// operator action from every state, and every automatic transition of
// Evaluate (the health gates).
func TestTransitions(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	type row struct {
		name      string
		r         Rollout
		action    Action // "" runs Evaluate
		st        Status
		wantState State
		wantStage int
		wantErr   error
		wantSteps int    // transitions returned
		wantWhy   string // substring of the last transition's reason
		wantAck   int
	}
	rows := []row{
		// Operator actions.
		{name: "draft start runs", r: testRollout(t, Draft, 0), action: ActionStart, wantState: Running, wantSteps: 1, wantWhy: "operator start"},
		{name: "running pause pauses", r: testRollout(t, Running, 1), action: ActionPause, wantState: Paused, wantStage: 1, wantSteps: 1, wantWhy: "operator pause"},
		{name: "paused resume runs and acknowledges failures", r: testRollout(t, Paused, 0), action: ActionResume,
			st: status(1000, Counts{Assigned: 10, Succeeded: 7, Failed: 2}), wantState: Running, wantSteps: 1, wantAck: 2, wantWhy: "acknowledging 2 failed"},
		{name: "draft cancel", r: testRollout(t, Draft, 0), action: ActionCancel, wantState: Cancelled, wantSteps: 1},
		{name: "running cancel", r: testRollout(t, Running, 2), action: ActionCancel, wantState: Cancelled, wantStage: 2, wantSteps: 1},
		{name: "paused cancel", r: testRollout(t, Paused, 0), action: ActionCancel, wantState: Cancelled, wantSteps: 1},
		{name: "running start refused", r: testRollout(t, Running, 0), action: ActionStart, wantState: Running, wantErr: ErrInvalidTransition},
		{name: "draft pause refused", r: testRollout(t, Draft, 0), action: ActionPause, wantState: Draft, wantErr: ErrInvalidTransition},
		{name: "draft resume refused", r: testRollout(t, Draft, 0), action: ActionResume, wantState: Draft, wantErr: ErrInvalidTransition},
		{name: "running resume refused", r: testRollout(t, Running, 0), action: ActionResume, wantState: Running, wantErr: ErrInvalidTransition},
		{name: "paused pause refused", r: testRollout(t, Paused, 0), action: ActionPause, wantState: Paused, wantErr: ErrInvalidTransition},
		{name: "paused start refused", r: testRollout(t, Paused, 0), action: ActionStart, wantState: Paused, wantErr: ErrInvalidTransition},
		{name: "completed cancel refused", r: testRollout(t, Completed, 3), action: ActionCancel, wantState: Completed, wantStage: 3, wantErr: ErrInvalidTransition},
		{name: "completed resume refused", r: testRollout(t, Completed, 3), action: ActionResume, wantState: Completed, wantStage: 3, wantErr: ErrInvalidTransition},
		{name: "cancelled start refused", r: testRollout(t, Cancelled, 0), action: ActionStart, wantState: Cancelled, wantErr: ErrInvalidTransition},
		{name: "cancelled resume refused", r: testRollout(t, Cancelled, 0), action: ActionResume, wantState: Cancelled, wantErr: ErrInvalidTransition},
		{name: "unknown action refused", r: testRollout(t, Running, 0), action: "explode", wantState: Running, wantErr: ErrInvalidTransition},

		// Success gate.
		{name: "canary succeeded opens next stage", r: testRollout(t, Running, 0),
			st: status(1000, Counts{Assigned: 10, Succeeded: 10}), wantState: Running, wantStage: 1, wantSteps: 1, wantWhy: "opening stage stage 2 (5%)"},
		{name: "canary below success threshold stays", r: testRollout(t, Running, 0),
			st: status(1000, Counts{Assigned: 10, Succeeded: 9}), wantState: Running, wantStage: 0},
		{name: "canary not fully assigned stays", r: testRollout(t, Running, 0),
			st: status(1000, Counts{Assigned: 9, Succeeded: 9}), wantState: Running, wantStage: 0},
		{name: "stage 2 succeeded cumulatively opens stage 3", r: testRollout(t, Running, 1),
			st: status(1000, Counts{Assigned: 10, Succeeded: 10}, Counts{Assigned: 40, Succeeded: 38}), wantState: Running, wantStage: 2, wantSteps: 1},
		{name: "last stage succeeded completes", r: testRollout(t, Running, 3),
			st:        status(1000, Counts{Assigned: 10, Succeeded: 10}, Counts{Assigned: 40, Succeeded: 40}, Counts{Assigned: 200, Succeeded: 200}, Counts{Assigned: 750, Succeeded: 700}),
			wantState: Completed, wantStage: 3, wantSteps: 1, wantWhy: "rollout completed"},
		{name: "small fleet opens several stages at once", r: testRollout(t, Running, 0),
			st: status(10, Counts{Assigned: 10, Succeeded: 10}), wantState: Completed, wantStage: 3, wantSteps: 4},
		{name: "no eligible devices waits", r: testRollout(t, Running, 0),
			st: status(0), wantState: Running, wantStage: 0},

		// Failure gate.
		{name: "failure threshold crossed pauses", r: testRollout(t, Running, 0),
			st: status(1000, Counts{Assigned: 10, Succeeded: 7, Failed: 2}), wantState: Paused, wantStage: 0, wantSteps: 1, wantWhy: "2 of 10 devices failed (20%), more than 2%"},
		{name: "first failure in canary pauses before all are assigned", r: testRollout(t, Running, 0),
			st: status(1000, Counts{Assigned: 3, Failed: 1}), wantState: Paused, wantSteps: 1, wantWhy: "1 of 10 devices failed"},
		{name: "failures at the threshold do not pause", r: func() Rollout { r := testRollout(t, Running, 3); r.Failure = 1000; return r }(),
			st: status(100, Counts{Assigned: 10, Succeeded: 10}, Counts{}, Counts{Assigned: 15, Succeeded: 15}, Counts{Assigned: 20, Failed: 10}), wantState: Running, wantStage: 3},
		{name: "late failure of an earlier stage still pauses", r: testRollout(t, Running, 1),
			st: status(1000, Counts{Assigned: 10, Succeeded: 8, Failed: 2}, Counts{Assigned: 5}), wantState: Paused, wantStage: 1, wantSteps: 1},
		{name: "acknowledged failures do not pause again", r: func() Rollout { r := testRollout(t, Running, 0); r.AckFailed = 2; return r }(),
			st: status(1000, Counts{Assigned: 10, Succeeded: 8, Failed: 2}), wantState: Running, wantStage: 0},
		{name: "new failure after resume pauses", r: func() Rollout { r := testRollout(t, Running, 0); r.AckFailed = 2; return r }(),
			st: status(1000, Counts{Assigned: 10, Succeeded: 7, Failed: 3}), wantState: Paused, wantSteps: 1},
		{name: "zero failure threshold pauses on any failure", r: func() Rollout { r := testRollout(t, Running, 3); r.Failure = 0; return r }(),
			st: status(1_000_000, Counts{Assigned: 10, Succeeded: 10}, Counts{}, Counts{}, Counts{Assigned: 999_990, Failed: 1}), wantState: Paused, wantStage: 3, wantSteps: 1},
		{name: "failure gate wins over success gate", r: func() Rollout { r := testRollout(t, Running, 0); r.Success = 5000; return r }(),
			st: status(1000, Counts{Assigned: 10, Succeeded: 8, Failed: 2}), wantState: Paused, wantSteps: 1},

		// Evaluate never moves a rollout that is not running.
		{name: "paused stays paused", r: testRollout(t, Paused, 0), st: status(1000, Counts{Assigned: 10, Succeeded: 10}), wantState: Paused},
		{name: "draft stays draft", r: testRollout(t, Draft, 0), st: status(1000, Counts{Assigned: 10, Succeeded: 10}), wantState: Draft},
		{name: "cancelled stays cancelled", r: testRollout(t, Cancelled, 0), st: status(1000, Counts{Assigned: 10, Failed: 10}), wantState: Cancelled},
		{name: "completed stays completed", r: testRollout(t, Completed, 3), st: status(1000, Counts{Assigned: 10, Failed: 10}), wantState: Completed, wantStage: 3},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			var got Rollout
			var steps []Transition
			if tc.action != "" {
				r, tr, err := Apply(tc.r, tc.action, tc.st, "")
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Apply error = %v, want %v", err, tc.wantErr)
				}
				got = r
				if err == nil {
					steps = []Transition{tr}
					if tr.Action != tc.action || tr.From != tc.r.State || tr.To != tc.wantState {
						t.Errorf("transition = %+v", tr)
					}
				}
			} else {
				got, steps = Evaluate(tc.r, tc.st, now)
			}
			if got.State != tc.wantState || got.Stage != tc.wantStage {
				t.Errorf("state, stage = %s, %d; want %s, %d", got.State, got.Stage, tc.wantState, tc.wantStage)
			}
			if len(steps) != tc.wantSteps {
				t.Fatalf("%d transitions, want %d: %+v", len(steps), tc.wantSteps, steps)
			}
			if tc.wantWhy != "" && !strings.Contains(steps[len(steps)-1].Reason, tc.wantWhy) {
				t.Errorf("reason %q does not contain %q", steps[len(steps)-1].Reason, tc.wantWhy)
			}
			if got.AckFailed != tc.wantAck && tc.action == ActionResume {
				t.Errorf("AckFailed = %d, want %d", got.AckFailed, tc.wantAck)
			}
			for i, s := range steps {
				if s.Reason == "" {
					t.Errorf("transition %d has no reason", i)
				}
				if i > 0 && (s.From != steps[i-1].To || s.FromStage != steps[i-1].ToStage) {
					t.Errorf("transition %d does not continue from %d: %+v", i, i-1, steps)
				}
			}
		})
	}
}

// TestAssignable proves the assignment gates: only running rollouts
// assign, never beyond the stage's cumulative target, never while the
// maintenance window is closed, never beyond max_parallel devices in
// progress.
func TestAssignable(t *testing.T) {
	// Saturday 1 March 2025 12:00 UTC = 13:00 in Berlin.
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	with := func(f func(*Rollout)) Rollout { r := testRollout(t, Running, 0); f(&r); return r }
	rows := []struct {
		name    string
		r       Rollout
		st      Status
		want    int
		wantWhy string
	}{
		{"fresh canary assigns its size", testRollout(t, Running, 0), status(1000), 10, ""},
		{"partly assigned canary assigns the rest", testRollout(t, Running, 0), status(1000, Counts{Assigned: 4}), 6, ""},
		{"full canary assigns none", testRollout(t, Running, 0), status(1000, Counts{Assigned: 10}), 0, "fully assigned"},
		{"canary larger than the fleet", testRollout(t, Running, 0), status(3), 3, ""},
		{"percent stage is cumulative", testRollout(t, Running, 2), status(1000, Counts{Assigned: 10}, Counts{Assigned: 40}), 200, ""},
		{"later devices join a running stage", testRollout(t, Running, 3), status(1200, Counts{Assigned: 10}, Counts{Assigned: 40}, Counts{Assigned: 200}, Counts{Assigned: 750}), 200, ""},
		{"draft assigns none", testRollout(t, Draft, 0), status(1000), 0, "rollout is draft"},
		{"paused assigns none", testRollout(t, Paused, 0), status(1000), 0, "rollout is paused"},
		{"completed assigns none", testRollout(t, Completed, 3), status(1000), 0, "rollout is completed"},
		{"cancelled assigns none", testRollout(t, Cancelled, 0), status(1000), 0, "rollout is cancelled"},
		{"max_parallel bounds new assignments", with(func(r *Rollout) { r.MaxParallel = 3 }), status(1000), 3, ""},
		{"max_parallel counts devices in progress", with(func(r *Rollout) { r.MaxParallel = 3 }), status(1000, Counts{Assigned: 4, Succeeded: 2}), 1, ""},
		{"max_parallel reached assigns none", with(func(r *Rollout) { r.MaxParallel = 3 }), status(1000, Counts{Assigned: 5, Succeeded: 1, Failed: 1}), 0, "max_parallel reached"},
		{"window open assigns", with(func(r *Rollout) { r.Window = mustWindow(t, "0 12 * * *,2h,Europe/Berlin") }), status(1000), 10, ""},
		{"window closed assigns none", with(func(r *Rollout) { r.Window = mustWindow(t, "0 2 * * *,4h,Europe/Berlin") }), status(1000), 0, "opens at 2025-03-02T02:00:00+01:00"},
		{"window on weekdays only is closed on saturday", with(func(r *Rollout) { r.Window = mustWindow(t, "0 0 * * 1-5,24h,UTC") }), status(1000), 0, "window is closed"},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			n, why := Assignable(tc.r, tc.st, now)
			if n != tc.want {
				t.Errorf("Assignable = %d (%q), want %d", n, why, tc.want)
			}
			if (why == "") != (tc.wantWhy == "") || !strings.Contains(why, tc.wantWhy) {
				t.Errorf("reason %q, want one containing %q", why, tc.wantWhy)
			}
		})
	}
}

// TestReportDeadline proves that a silent device times out and then
// counts as a failure that pauses the rollout, and that outcomes do not
// time out.
func TestReportDeadline(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := []struct {
		name  string
		s     DeviceState
		since time.Time
		now   time.Time
		d     time.Duration
		want  bool
	}{
		{"assigned device within deadline", DeviceAssigned, t0, t0.Add(59 * time.Minute), time.Hour, false},
		{"assigned device at deadline times out", DeviceAssigned, t0, t0.Add(time.Hour), time.Hour, true},
		{"in progress device past deadline times out", DeviceInProgress, t0, t0.Add(2 * time.Hour), time.Hour, true},
		{"succeeded device never times out", DeviceSucceeded, t0, t0.Add(100 * time.Hour), time.Hour, false},
		{"failed device never times out again", DeviceFailed, t0, t0.Add(100 * time.Hour), time.Hour, false},
		{"zero deadline never expires", DeviceAssigned, t0, t0.Add(100 * time.Hour), 0, false},
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			if got := TimedOut(tc.s, tc.since, tc.d, tc.now); got != tc.want {
				t.Errorf("TimedOut = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("timed out device counts as failure and pauses", func(t *testing.T) {
		r := testRollout(t, Running, 0)
		// 10 canary devices: 9 committed, 1 silent past the deadline.
		failed := 0
		if TimedOut(DeviceInProgress, t0, r.ReportDeadline, t0.Add(r.ReportDeadline)) {
			failed++
		}
		got, steps := Evaluate(r, status(1000, Counts{Assigned: 10, Succeeded: 9, Failed: failed}), t0)
		if got.State != Paused || len(steps) != 1 {
			t.Fatalf("state %s after a timeout, transitions %+v; want paused", got.State, steps)
		}
	})
}

func TestClassify(t *testing.T) {
	rows := []struct {
		kind, msg string
		state     DeviceState
		reason    FailureReason
		ok        bool
	}{
		{"downloading", "downloading x (5 bytes)", DeviceInProgress, "", true},
		{"rebooted", "", DeviceInProgress, "", true},
		{"committed", "health check passed", DeviceSucceeded, "", true},
		{"rolled_back", "health check failed: exit status 1", DeviceFailed, ReasonHealthCheckFailed, true},
		{"rolled_back", "the new release did not boot: bad hash", DeviceFailed, ReasonVerificationFailed, true},
		{"rolled_back", "power lost", DeviceFailed, ReasonRolledBack, true},
		{"failed", "payload: hash mismatch", DeviceFailed, ReasonVerificationFailed, true},
		{"failed", "metadata: director assigns a target the image repository does not list", DeviceFailed, ReasonVerificationFailed, true},
		{"failed", "health: timeout", DeviceFailed, ReasonHealthCheckFailed, true},
		{"failed", "slot: too small", DeviceFailed, ReasonInstallFailed, true},
		{"idle", "", "", "", false},
	}
	for _, tc := range rows {
		t.Run(tc.kind+" "+tc.msg, func(t *testing.T) {
			s, r, ok := Classify(tc.kind, tc.msg)
			if s != tc.state || r != tc.reason || ok != tc.ok {
				t.Errorf("Classify = %s, %s, %v; want %s, %s, %v", s, r, ok, tc.state, tc.reason, tc.ok)
			}
		})
	}
	for _, tc := range []struct{ cur, rep, want DeviceState }{
		{DeviceAssigned, DeviceInProgress, DeviceInProgress},
		{DeviceInProgress, DeviceSucceeded, DeviceSucceeded},
		{DeviceFailed, DeviceSucceeded, DeviceSucceeded}, // a lost or stale report: the release runs
		{DeviceFailed, DeviceInProgress, DeviceFailed},
		{DeviceSucceeded, DeviceFailed, DeviceSucceeded},
		{DeviceInProgress, DeviceAssigned, DeviceInProgress},
	} {
		if got := Next(tc.cur, tc.rep); got != tc.want {
			t.Errorf("Next(%s, %s) = %s, want %s", tc.cur, tc.rep, got, tc.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	good := testRollout(t, Draft, 0).Spec
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(*Spec){
		"no stages":             func(s *Spec) { s.Stages = nil },
		"zero success":          func(s *Spec) { s.Success = 0 },
		"failure 100%":          func(s *Spec) { s.Failure = Full },
		"negative max_parallel": func(s *Spec) { s.MaxParallel = -1 },
		"zero deadline":         func(s *Spec) { s.ReportDeadline = 0 },
		"huge deadline":         func(s *Spec) { s.ReportDeadline = MaxReportDeadline + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			s := good
			f(&s)
			if err := s.Validate(); !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("Validate = %v, want ErrInvalidSpec", err)
			}
		})
	}
}
