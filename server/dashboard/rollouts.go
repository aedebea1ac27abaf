package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

// The actions that guard the rollout pages: the admin API's.
const (
	rolloutReadAction  = auth.ActionRolloutRead
	rolloutWriteAction = auth.ActionRolloutWrite
)

// rolloutVerbs are the operator actions the rollout page offers, as URL
// path elements.
var rolloutVerbs = []string{string(rollout.ActionStart), string(rollout.ActionPause), string(rollout.ActionResume), string(rollout.ActionCancel)}

// dashRollout is what the dashboard shows of a rollout.
type dashRollout struct {
	ID        string
	Release   string // "product@version"
	ReleaseID string
	State     rollout.State
	Reason    string // reason of the last transition
	UpdatedAt time.Time
	CreatedAt time.Time
	Filter    string
	Success   string
	Failure   string
	Forced    bool
	Window    string
	Stage     int // index of the current stage
	Eligible  int
	Blocked   string // why no device is being assigned now, or ""
	Stages    []dashStage
	Failures  []reasonCount // failure reasons, most frequent first
}

// dashStage is one stage of a rollout with its devices by outcome.
type dashStage struct {
	Label  string
	Spec   string // as ParseStages accepts it, e.g. "canary:10"
	Target int    // cumulative device target
	rollout.Counts
}

type reasonCount struct {
	Reason string
	Count  int
}

// sortedReasons turns a histogram into reasonCounts, most frequent first.
func sortedReasons[K ~string](h map[K]int) []reasonCount {
	out := make([]reasonCount, 0, len(h))
	for k, n := range h {
		out = append(out, reasonCount{string(k), n})
	}
	slices.SortFunc(out, func(a, b reasonCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// rolloutView is what the dashboard needs of the rollout engine: the same
// read model and operator actions the admin API uses.
type rolloutView interface {
	// list returns up to limit rollouts, newest first.
	list(ctx context.Context, limit int) ([]dashRollout, error)
	// get returns a rollout, or an error wrapping store.ErrNotFound.
	get(ctx context.Context, id string) (dashRollout, error)
	// apply performs an operator action as actor; an action the state does
	// not allow wraps rollout.ErrInvalidTransition.
	apply(ctx context.Context, id string, a rollout.Action, actor store.User) error
}

// engineRollouts is the rolloutView of the server's rollout engine.
type engineRollouts struct{ s Rollouts }

func (v engineRollouts) list(ctx context.Context, limit int) ([]dashRollout, error) {
	views, err := v.s.ListRolloutViews(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]dashRollout, 0, len(views))
	for _, rv := range views {
		out = append(out, dashView(rv))
	}
	return out, nil
}

func (v engineRollouts) get(ctx context.Context, id string) (dashRollout, error) {
	rv, err := v.s.RolloutView(ctx, id)
	if err != nil {
		return dashRollout{}, err
	}
	return dashView(rv), nil
}

func (v engineRollouts) apply(ctx context.Context, id string, a rollout.Action, actor store.User) error {
	_, err := v.s.ApplyRollout(ctx, id, a, actor, "")
	return err
}

// dashView converts the admin API's read model.
func dashView(rv adminapi.RolloutView) dashRollout {
	dr := dashRollout{
		ID: rv.ID, Release: rv.Release, ReleaseID: rv.ReleaseID, State: rollout.State(rv.State), Reason: rv.Reason,
		UpdatedAt: rv.UpdatedAt, CreatedAt: rv.CreatedAt, Filter: rv.Filter, Success: rv.SuccessThreshold,
		Failure: rv.FailureThreshold, Forced: rv.Forced, Window: rv.Window, Stage: rv.Stage, Eligible: rv.Eligible,
		Blocked: rv.AssignBlocked, Failures: sortedReasons(rv.FailureReasons),
	}
	for _, st := range rv.StageViews {
		dr.Stages = append(dr.Stages, dashStage{Label: st.Label, Spec: st.Spec, Target: st.Target,
			Counts: rollout.Counts{Assigned: st.Assigned, Succeeded: st.Succeeded, Failed: st.Failed}})
	}
	return dr
}

// rolloutsPage is the body of the rollouts list.
type rolloutsPage struct {
	Available bool
	Rollouts  []dashRollout
}

func (d *dashboard) handleRollouts(w http.ResponseWriter, r *http.Request, pd *pageData) {
	pd.Title, pd.Nav = "Rollouts", "rollouts"
	body := rolloutsPage{Available: d.rollouts != nil}
	if d.rollouts != nil {
		var err error
		if body.Rollouts, err = d.rollouts.list(r.Context(), ListLimit); err != nil {
			d.internalError(w, r, pd, err)
			return
		}
	}
	pd.Body = body
	d.render(w, r, http.StatusOK, "rollouts", pd)
}

// rolloutPage is the body of a rollout's page.
type rolloutPage struct {
	R     dashRollout
	Total rollout.Counts
	Verbs []string // actions the rollout's state allows
}

func (d *dashboard) handleRollout(w http.ResponseWriter, r *http.Request, pd *pageData) {
	pd.Nav = "rollouts"
	if d.rollouts == nil {
		d.renderError(w, r, pd, http.StatusNotFound, "this server has no rollouts")
		return
	}
	ro, err := d.rollouts.get(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		d.renderError(w, r, pd, http.StatusNotFound, "no such rollout")
		return
	}
	if err != nil {
		d.internalError(w, r, pd, err)
		return
	}
	body := rolloutPage{R: ro}
	for _, st := range ro.Stages {
		body.Total = body.Total.Add(st.Counts)
	}
	for _, v := range rolloutVerbs {
		if _, _, err := rollout.Apply(rollout.Rollout{State: ro.State}, rollout.Action(v), rollout.Status{}, ""); err == nil {
			body.Verbs = append(body.Verbs, v)
		}
	}
	pd.Title, pd.Body = "Rollout of "+ro.Release, body
	d.render(w, r, http.StatusOK, "rollout", pd)
}

func (d *dashboard) handleRolloutVerb(verb string) func(http.ResponseWriter, *http.Request, *pageData) {
	return func(w http.ResponseWriter, r *http.Request, pd *pageData) {
		dr := reqFrom(r)
		id := r.PathValue("id")
		back := dashboardPrefix + "rollouts/" + id
		if d.rollouts == nil {
			d.renderError(w, r, pd, http.StatusNotFound, "this server has no rollouts")
			return
		}
		err := d.rollouts.apply(r.Context(), id, rollout.Action(verb), dr.user)
		switch {
		case err == nil:
			d.sessions.setFlash(r, dr.sess, fmt.Sprintf("rollout %s: done", verb))
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
			d.renderError(w, r, pd, http.StatusNotFound, "no such rollout")
			return
		case errors.Is(err, rollout.ErrInvalidTransition), errors.Is(err, store.ErrConflict):
			d.sessions.setFlash(r, dr.sess, "not done: "+err.Error())
		default:
			d.internalError(w, r, pd, err)
			return
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// StageLabel is the current stage's label, or "" when out of range.
func (r dashRollout) StageLabel() string {
	if r.Stage < 0 || r.Stage >= len(r.Stages) {
		return ""
	}
	return r.Stages[r.Stage].Label
}

// progressBar is a stacked bar: succeeded, failed and in-progress shares
// of a target, in percent, with the x offsets of the later segments.
type progressBar struct {
	OK, Bad, Run int
	BadX, RunX   int
}

// progress computes the bar of succeeded, failed and assigned devices out
// of target (at least assigned).
func progress(succeeded, failed, assigned, target int) progressBar {
	target = max(target, assigned)
	if target <= 0 {
		return progressBar{}
	}
	run := max(0, assigned-succeeded-failed)
	p := progressBar{OK: succeeded * 100 / target, Bad: failed * 100 / target, Run: run * 100 / target}
	p.BadX, p.RunX = p.OK, p.OK+p.Bad
	return p
}
