package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// ErrRolloutInput is wrapped by errors about a rollout request's fields.
var ErrRolloutInput = errors.New("invalid rollout request")

// ErrApprovalsMissing: a production rollout cannot start before its
// release has the approvals production needs.
var ErrApprovalsMissing = fmt.Errorf("%w: the release lacks the approvals its environment needs", store.ErrConflict)

func stageCounts(c rollout.Counts) StageCounts {
	return StageCounts{Assigned: c.Assigned, Succeeded: c.Succeeded, Failed: c.Failed, InProgress: c.InProgress()}
}

// view builds the read model of rec with status and reasons.
func (s *Server) view(rec store.Rollout, r rollout.Rollout, st rollout.Status, reasons map[string]int) RolloutView {
	v := RolloutView{
		ID: rec.ID, Release: rec.Product + "@" + rec.Version, ReleaseID: rec.ReleaseID, TargetPath: rec.TargetPath,
		Filter: rec.Filter, Stages: rec.Stages, SuccessThreshold: r.Success.String(), FailureThreshold: r.Failure.String(),
		MaxParallel: rec.MaxParallel, Window: rec.Window, Forced: rec.Forced, ReportDeadline: rec.ReportDeadline.String(),
		State: rec.State, Stage: rec.Stage, Reason: rec.Reason, CreatedBy: rec.CreatedBy, CreatedAt: rec.CreatedAt,
		UpdatedAt: rec.UpdatedAt, Eligible: st.Eligible, Total: stageCounts(st.Total()), FailureReasons: map[string]int{},
	}
	for i, stg := range r.Stages {
		var c rollout.Counts
		if i < len(st.Stages) {
			c = st.Stages[i]
		}
		v.StageViews = append(v.StageViews, StageView{Label: stg.Label(i), Spec: stg.String(),
			Target: rollout.Target(r.Stages, i, st.Eligible), StageCounts: stageCounts(c)})
	}
	for k, n := range reasons {
		v.FailureReasons[k] = n
	}
	_, v.AssignBlocked = rollout.Assignable(r, st, s.now())
	return v
}

// RolloutView returns the read model of a rollout (store.ErrNotFound if
// there is none).
func (s *Server) RolloutView(ctx context.Context, id string) (RolloutView, error) {
	if lr := s.rollouts.get(id); lr != nil {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if !lr.gone {
			return s.view(lr.rec, lr.r, lr.status, lr.reasons), nil
		}
	}
	rec, err := s.db.GetRollout(ctx, id)
	if err != nil {
		return RolloutView{}, err
	}
	return s.storedView(ctx, rec)
}

// storedView builds the read model of an untracked rollout from the store.
func (s *Server) storedView(ctx context.Context, rec store.Rollout) (RolloutView, error) {
	r, err := specOf(rec)
	if err != nil {
		return RolloutView{}, err
	}
	cs, err := s.db.RolloutCounts(ctx, rec.ID)
	if err != nil {
		return RolloutView{}, err
	}
	stages, reasons := countsFrom(len(r.Stages), cs)
	st := rollout.Status{Stages: stages}
	st.Eligible = st.Total().Assigned
	return s.view(rec, r, st, reasons), nil
}

// ListRolloutViews returns up to limit rollouts (0: store.DefaultListLimit),
// newest first.
func (s *Server) ListRolloutViews(ctx context.Context, limit int) ([]RolloutView, error) {
	recs, err := s.db.ListRollouts(ctx, "", false, limit)
	if err != nil {
		return nil, err
	}
	out := make([]RolloutView, 0, len(recs))
	for _, rec := range recs {
		v, err := s.RolloutView(ctx, rec.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// CreateRollout creates a draft rollout of a registered release as actor.
// Errors wrap ErrRolloutInput or a rollout parser's sentinel for bad
// fields, and store.ErrNotFound for an unregistered release.
func (s *Server) CreateRollout(ctx context.Context, actor store.User, req CreateRolloutRequest) (RolloutView, error) {
	rel, err := s.findRelease(ctx, req.Release, req.Environment)
	if err != nil {
		return RolloutView{}, err
	}
	spec := rollout.Spec{Success: rollout.DefaultSuccessThreshold, Failure: rollout.DefaultFailureThreshold,
		ReportDeadline: rollout.DefaultReportDeadline, MaxParallel: req.MaxParallel, Forced: req.Forced}
	if spec.Stages, err = rollout.ParseStages(req.Stages); err != nil {
		return RolloutView{}, err
	}
	if spec.Filter, err = rollout.ParseFilter(req.Filter); err != nil {
		return RolloutView{}, err
	}
	if spec.Window, err = rollout.ParseWindow(req.Window); err != nil {
		return RolloutView{}, err
	}
	if req.SuccessThreshold != "" {
		if spec.Success, err = rollout.ParseThreshold(req.SuccessThreshold); err != nil {
			return RolloutView{}, fmt.Errorf("success_threshold: %w", err)
		}
	}
	if req.FailureThreshold != "" {
		if spec.Failure, err = rollout.ParseThreshold(req.FailureThreshold); err != nil {
			return RolloutView{}, fmt.Errorf("failure_threshold: %w", err)
		}
	}
	if req.ReportDeadline != "" {
		if spec.ReportDeadline, err = time.ParseDuration(req.ReportDeadline); err != nil {
			return RolloutView{}, fmt.Errorf("%w: report_deadline: %w", ErrRolloutInput, err)
		}
	}
	if err := spec.Validate(); err != nil {
		return RolloutView{}, err
	}
	id, err := auth.RandomID("ro-")
	if err != nil {
		return RolloutView{}, err
	}
	now := s.now().UTC()
	rec := store.Rollout{ID: id, ReleaseID: rel.ID, Product: rel.Product, Version: rel.Version, TargetPath: rel.TargetPath,
		Filter: spec.Filter.String(), Stages: rollout.FormatStages(spec.Stages), SuccessThreshold: int(spec.Success),
		FailureThreshold: int(spec.Failure), MaxParallel: spec.MaxParallel, Window: spec.Window.String(), Forced: spec.Forced,
		ReportDeadline: spec.ReportDeadline, State: store.RolloutDraft, Reason: "created by " + actor.Name,
		CreatedBy: actor.ID, CreatedAt: now, UpdatedAt: now}
	if err := s.db.CreateRollout(ctx, rec); err != nil {
		return RolloutView{}, err
	}
	s.audit(ctx, actor.Name, AuditRolloutCreated, map[string]string{"rollout": id, "release": rec.Product + "@" + rec.Version,
		"environment": rel.Environment, "filter": rec.Filter, "stages": rec.Stages, "success_threshold": spec.Success.String(),
		"failure_threshold": spec.Failure.String(), "forced": fmt.Sprint(rec.Forced)})
	return s.RolloutView(ctx, id)
}

// ApplyRollout performs an operator action (start, pause, resume, cancel)
// on a rollout as actor; reason is recorded with the transition. Starting
// a rollout deploys its release, which for production needs the release's
// approvals (ErrApprovalsMissing). An action the state does not allow
// wraps rollout.ErrInvalidTransition.
func (s *Server) ApplyRollout(ctx context.Context, id string, a rollout.Action, actor store.User, reason string) (RolloutView, error) {
	e := s.rollouts
	lr := e.get(id)
	if lr == nil {
		rec, err := s.db.GetRollout(ctx, id)
		if err != nil {
			return RolloutView{}, err
		}
		r, err := specOf(rec)
		if err != nil {
			return RolloutView{}, err
		}
		lr = &liveRollout{rec: rec, r: r, status: rollout.Status{Stages: make([]rollout.Counts, len(r.Stages))}, reasons: map[string]int{}}
		if rec.Active() && a != rollout.ActionCancel {
			// Count before the state machine decides (resume acknowledges
			// the failures so far).
			if err := e.recount(ctx, lr); err != nil {
				return RolloutView{}, err
			}
		}
	}
	lr.mu.Lock()
	err := s.applyLocked(ctx, lr, a, actor, reason)
	lr.mu.Unlock()
	if err != nil {
		return RolloutView{}, err
	}
	if lr.r.State == rollout.Running || lr.r.State == rollout.Paused {
		tracked, err := e.track(ctx, lr.rec)
		if err != nil {
			return RolloutView{}, err
		}
		tracked.mu.Lock()
		tracked.rec, tracked.r = lr.rec, lr.r
		err = e.evaluate(ctx, tracked)
		tracked.mu.Unlock()
		if err != nil {
			return RolloutView{}, err
		}
	}
	return s.RolloutView(ctx, id)
}

func (s *Server) applyLocked(ctx context.Context, lr *liveRollout, a rollout.Action, actor store.User, reason string) error {
	if lr.gone {
		return fmt.Errorf("%w: rollout %s changed concurrently; retry", store.ErrConflict, lr.rec.ID)
	}
	fromState, fromStage := lr.r.State, lr.r.Stage
	next, step, err := rollout.Apply(lr.r, a, lr.status, reason)
	if err != nil {
		return err
	}
	if a == rollout.ActionStart {
		if err := s.deployForRollout(ctx, lr.rec, actor); err != nil {
			return err
		}
	}
	prev := lr.r
	lr.r = next
	if err := s.rollouts.persist(ctx, lr, fromState, fromStage, []rollout.Transition{step}, actor.Name); err != nil {
		lr.r = prev
		return err
	}
	return nil
}

// deployForRollout deploys the rollout's release (governance): a release
// for an environment that needs approvals must have them.
func (s *Server) deployForRollout(ctx context.Context, rec store.Rollout, actor store.User) error {
	rel, err := s.db.GetRelease(ctx, rec.ReleaseID)
	if err != nil {
		return err
	}
	need := s.requiredApprovals(rel.Environment)
	if !rel.DeployedAt.IsZero() {
		if rel.ActiveApprovals() < need {
			return fmt.Errorf("%w: %s release %s@%s has %d of %d approvals (an approver was disabled since its deployment)",
				ErrApprovalsMissing, rel.Environment, rel.Product, rel.Version, rel.ActiveApprovals(), need)
		}
		return nil
	}
	rel, err = s.db.DeployRelease(ctx, rel.ID, actor.ID, need, s.now())
	if errors.Is(err, store.ErrNotEnoughApprovals) {
		return fmt.Errorf("%w: %s release %s@%s needs %d approvals from distinct approvers: %w",
			ErrApprovalsMissing, rel.Environment, rec.Product, rec.Version, need, err)
	}
	if err != nil {
		return err
	}
	s.audit(ctx, actor.Name, AuditReleaseDeployed, map[string]string{
		"release_id": rel.ID, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment,
		"approvals": fmt.Sprint(rel.ActiveApprovals()), "rollout": rec.ID})
	return nil
}

// EvaluateRollouts runs one round of the rollout engine now: re-count,
// time out silent devices, apply the health gates (it also runs every
// Config.RolloutTick).
func (s *Server) EvaluateRollouts(ctx context.Context) { s.rollouts.tick(ctx) }

// SetDeviceTags replaces a device's tags (rollout filters select on them).
func (s *Server) SetDeviceTags(ctx context.Context, actor store.User, deviceID string, tags []string) error {
	for _, t := range tags {
		if !rollout.ValidTag(t) {
			return fmt.Errorf("%w: tag %q does not match ^[a-z0-9][a-z0-9-]{0,63}$", ErrRolloutInput, httpx.Truncate(t))
		}
	}
	if err := s.db.SetDeviceTags(ctx, deviceID, tags); err != nil {
		return err
	}
	s.audit(ctx, actor.Name, AuditDeviceTags, map[string]string{"device": deviceID, "tags": fmt.Sprint(tags)})
	return nil
}

// rolloutHTTPErr maps the errors of the rollout functions to statuses.
func rolloutHTTPErr(err error) error {
	switch {
	case errors.Is(err, ErrRolloutInput), errors.Is(err, rollout.ErrInvalidStages), errors.Is(err, rollout.ErrInvalidFilter),
		errors.Is(err, rollout.ErrInvalidThreshold), errors.Is(err, rollout.ErrInvalidWindow), errors.Is(err, rollout.ErrInvalidSpec),
		errors.Is(err, store.ErrInvalid):
		return httpx.Status(http.StatusBadRequest, "%w", err)
	case errors.Is(err, store.ErrNotFound):
		return httpx.Status(http.StatusNotFound, "%w", err)
	case errors.Is(err, rollout.ErrInvalidTransition), errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrExists):
		return httpx.Status(http.StatusConflict, "%w", err)
	}
	return err
}

// MaxRolloutReasonLen bounds an operator's reason for an action.
const MaxRolloutReasonLen = 512

func (s *Server) rolloutRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/rollouts", s.auth.Admin(ActionRolloutRead, s.handleListRollouts))
	mux.HandleFunc("GET /api/v1/admin/rollouts/{id}", s.auth.Admin(ActionRolloutRead, s.handleGetRollout))
	mux.HandleFunc("POST /api/v1/admin/rollouts", s.auth.Admin(ActionRolloutWrite, s.handleCreateRollout))
	for _, a := range []rollout.Action{rollout.ActionStart, rollout.ActionPause, rollout.ActionResume, rollout.ActionCancel} {
		mux.HandleFunc("POST /api/v1/admin/rollouts/{id}/"+string(a), s.auth.Admin(ActionRolloutWrite, s.handleRolloutAction(a)))
	}
	mux.HandleFunc("POST /api/v1/admin/devices/{id}/tags", s.auth.Admin(ActionDeviceTagWrite, s.handleSetTags))
	mux.HandleFunc("GET "+DirectorPath+"{file}", s.device(s.handleDirector))
}

func (s *Server) handleListRollouts(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "limit"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	limit, err := httpx.IntParam(r, "limit", store.MaxListLimit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	views, err := s.ListRolloutViews(r.Context(), limit)
	if err != nil {
		httpx.WriteError(w, r, rolloutHTTPErr(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, RolloutList{Rollouts: views})
}

func (s *Server) handleGetRollout(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := s.RolloutView(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, rolloutHTTPErr(err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) handleCreateRollout(w http.ResponseWriter, r *http.Request) {
	var req CreateRolloutRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := s.CreateRollout(r.Context(), auth.UserFrom(r), req)
	if err != nil {
		httpx.WriteError(w, r, rolloutHTTPErr(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, v)
}

func (s *Server) handleRolloutAction(a rollout.Action) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req RolloutActionRequest
		if r.ContentLength != 0 {
			if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
				httpx.WriteError(w, r, err)
				return
			}
		}
		if err := checkField("reason", req.Reason, MaxRolloutReasonLen, false); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
		v, err := s.ApplyRollout(r.Context(), r.PathValue("id"), a, auth.UserFrom(r), req.Reason)
		if errors.Is(err, ErrApprovalsMissing) {
			httpx.WriteError(w, r, httpx.Status(http.StatusConflict, "%w", err))
			return
		}
		if err != nil {
			httpx.WriteError(w, r, rolloutHTTPErr(err))
			return
		}
		httpx.WriteJSON(w, http.StatusOK, v)
	}
}

func (s *Server) handleSetTags(w http.ResponseWriter, r *http.Request) {
	var req TagsRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	id := r.PathValue("id")
	var tags []string
	if req.Tags != "" {
		tags = strings.Split(req.Tags, ",")
	}
	if err := s.SetDeviceTags(r.Context(), auth.UserFrom(r), id, tags); err != nil {
		httpx.WriteError(w, r, rolloutHTTPErr(err))
		return
	}
	d, err := s.db.GetDevice(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "device"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, deviceJSON(d))
}
