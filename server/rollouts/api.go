package rollouts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

func stageCounts(c rollout.Counts) adminapi.StageCounts {
	return adminapi.StageCounts{Assigned: c.Assigned, Succeeded: c.Succeeded, Failed: c.Failed, InProgress: c.InProgress()}
}

// view builds the read model of rec with status and reasons.
func (e *Engine) view(rec store.Rollout, r rollout.Rollout, st rollout.Status, reasons map[string]int) adminapi.RolloutView {
	v := adminapi.RolloutView{
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
		v.StageViews = append(v.StageViews, adminapi.StageView{Label: stg.Label(i), Spec: stg.String(),
			Target: rollout.Target(r.Stages, i, st.Eligible), StageCounts: stageCounts(c)})
	}
	for k, n := range reasons {
		v.FailureReasons[k] = n
	}
	_, v.AssignBlocked = rollout.Assignable(r, st, e.now())
	return v
}

// RolloutView returns the read model of a rollout as stored
// (store.ErrNotFound if there is none).
func (e *Engine) RolloutView(ctx context.Context, id string) (adminapi.RolloutView, error) {
	rec, err := e.db.GetRollout(ctx, id)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	return e.storedView(ctx, rec)
}

// storedView builds the read model of rec with its counts from the store.
func (e *Engine) storedView(ctx context.Context, rec store.Rollout) (adminapi.RolloutView, error) {
	r, err := specOf(rec)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	st, reasons, err := e.status(ctx, rec, r)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	if !rec.Active() {
		st.Eligible = st.Total().Assigned
	}
	return e.view(rec, r, st, reasons), nil
}

// ListRolloutViews returns up to limit rollouts (0: store.DefaultListLimit),
// newest first.
func (e *Engine) ListRolloutViews(ctx context.Context, limit int) ([]adminapi.RolloutView, error) {
	recs, err := e.db.ListRollouts(ctx, "", false, limit)
	if err != nil {
		return nil, err
	}
	out := make([]adminapi.RolloutView, 0, len(recs))
	for _, rec := range recs {
		v, err := e.RolloutView(ctx, rec.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// CreateRollout creates a draft rollout of a registered release as actor.
// Errors wrap ErrInput or a rollout parser's sentinel for bad
// fields, and store.ErrNotFound for an unregistered release.
func (e *Engine) CreateRollout(ctx context.Context, actor store.User, req adminapi.CreateRolloutRequest) (adminapi.RolloutView, error) {
	rel, err := e.findRelease(ctx, req.Release, req.Environment)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	spec := rollout.Spec{Success: rollout.DefaultSuccessThreshold, Failure: rollout.DefaultFailureThreshold,
		ReportDeadline: rollout.DefaultReportDeadline, MaxParallel: req.MaxParallel, Forced: req.Forced}
	if spec.Stages, err = rollout.ParseStages(req.Stages); err != nil {
		return adminapi.RolloutView{}, err
	}
	if spec.Filter, err = rollout.ParseFilter(req.Filter); err != nil {
		return adminapi.RolloutView{}, err
	}
	if spec.Window, err = rollout.ParseWindow(req.Window); err != nil {
		return adminapi.RolloutView{}, err
	}
	if req.SuccessThreshold != "" {
		if spec.Success, err = rollout.ParseThreshold(req.SuccessThreshold); err != nil {
			return adminapi.RolloutView{}, fmt.Errorf("success_threshold: %w", err)
		}
	}
	if req.FailureThreshold != "" {
		if spec.Failure, err = rollout.ParseThreshold(req.FailureThreshold); err != nil {
			return adminapi.RolloutView{}, fmt.Errorf("failure_threshold: %w", err)
		}
	}
	if req.ReportDeadline != "" {
		if spec.ReportDeadline, err = time.ParseDuration(req.ReportDeadline); err != nil {
			return adminapi.RolloutView{}, fmt.Errorf("%w: report_deadline: %w", ErrInput, err)
		}
	}
	if err := spec.Validate(); err != nil {
		return adminapi.RolloutView{}, err
	}
	id, err := auth.RandomID("ro-")
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	now := e.now().UTC()
	rec := store.Rollout{ID: id, ReleaseID: rel.ID, Product: rel.Product, Version: rel.Version, TargetPath: rel.TargetPath,
		Filter: spec.Filter.String(), Stages: rollout.FormatStages(spec.Stages), SuccessThreshold: int(spec.Success),
		FailureThreshold: int(spec.Failure), MaxParallel: spec.MaxParallel, Window: spec.Window.String(), Forced: spec.Forced,
		ReportDeadline: spec.ReportDeadline, State: store.RolloutDraft, Reason: "created by " + actor.Name,
		CreatedBy: actor.ID, CreatedAt: now, UpdatedAt: now}
	actx := store.WithAudit(ctx) // the event commits with the rollout
	e.audit(actx, actor.Name, AuditRolloutCreated, map[string]string{"rollout": id, "release": rec.Product + "@" + rec.Version,
		"environment": rel.Environment, "filter": rec.Filter, "stages": rec.Stages, "success_threshold": spec.Success.String(),
		"failure_threshold": spec.Failure.String(), "forced": fmt.Sprint(rec.Forced)})
	if err := e.db.CreateRollout(actx, rec); err != nil {
		return adminapi.RolloutView{}, err
	}
	return e.RolloutView(ctx, id)
}

// ApplyRollout performs an operator action (start, pause, resume, cancel)
// on a rollout as actor; reason is recorded with the transition. Starting
// a rollout deploys its release, which for production needs the release's
// approvals (ErrApprovalsMissing). An action the state does not allow
// wraps rollout.ErrInvalidTransition.
func (e *Engine) ApplyRollout(ctx context.Context, id string, a rollout.Action, actor store.User, reason string) (adminapi.RolloutView, error) {
	rec, err := e.db.GetRollout(ctx, id)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	r, err := specOf(rec)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	// Count before the state machine decides (resume acknowledges the
	// failures so far).
	st, _, err := e.status(ctx, rec, r)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	next, step, err := rollout.Apply(r, a, st, reason)
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	if a == rollout.ActionStart {
		if err := e.deployForRollout(ctx, rec, actor); err != nil {
			return adminapi.RolloutView{}, err
		}
		// The first stage's target is known before the first check-in.
		if rec.Eligible, err = e.computeEligible(ctx, rec, r); err != nil {
			return adminapi.RolloutView{}, err
		}
	}
	rec, err = e.persist(ctx, rec, next, []rollout.Transition{step}, actor.Name)
	if errors.Is(err, store.ErrConflict) {
		return adminapi.RolloutView{}, fmt.Errorf("%w: rollout %s changed concurrently; retry", store.ErrConflict, id)
	}
	if err != nil {
		return adminapi.RolloutView{}, err
	}
	if rec.State == store.RolloutRunning {
		if _, err := e.evaluate(ctx, rec); err != nil {
			return adminapi.RolloutView{}, err
		}
	}
	return e.RolloutView(ctx, id)
}

// deployForRollout deploys the rollout's release (governance): a release
// for an environment that needs approvals must have them.
func (e *Engine) deployForRollout(ctx context.Context, rec store.Rollout, actor store.User) error {
	rel, err := e.db.GetRelease(ctx, rec.ReleaseID)
	if err != nil {
		return err
	}
	need := e.requiredApprovals(rel.Environment)
	if !rel.DeployedAt.IsZero() {
		if rel.ActiveApprovals() < need {
			return fmt.Errorf("%w: %s release %s@%s has %d of %d approvals (an approver was disabled since its deployment)",
				ErrApprovalsMissing, rel.Environment, rel.Product, rel.Version, rel.ActiveApprovals(), need)
		}
		return nil
	}
	actx := store.WithAudit(ctx) // the event commits with the deployment
	e.audit(actx, actor.Name, auth.AuditReleaseDeployed, map[string]string{
		"release_id": rel.ID, "release": rel.Product + "@" + rel.Version, "environment": rel.Environment,
		"approvals": fmt.Sprint(rel.ActiveApprovals()), "rollout": rec.ID})
	rel, err = e.db.DeployRelease(actx, rel.ID, actor.ID, need, e.now())
	if errors.Is(err, store.ErrNotEnoughApprovals) {
		return fmt.Errorf("%w: %s release %s@%s needs %d approvals from distinct approvers: %w",
			ErrApprovalsMissing, rel.Environment, rec.Product, rec.Version, need, err)
	}
	return err
}

// SetDeviceTags replaces a device's tags (rollout filters select on them).
func (e *Engine) SetDeviceTags(ctx context.Context, actor store.User, deviceID string, tags []string) error {
	for _, t := range tags {
		if !rollout.ValidTag(t) {
			return fmt.Errorf("%w: tag %q does not match ^[a-z0-9][a-z0-9-]{0,63}$", ErrInput, httpx.Truncate(t))
		}
	}
	actx := store.WithAudit(ctx) // the event commits with the tags
	e.audit(actx, actor.Name, AuditDeviceTags, map[string]string{"device": deviceID, "tags": fmt.Sprint(tags)})
	return e.db.SetDeviceTags(actx, deviceID, tags)
}

// findRelease resolves "product@version" (and an optional environment) to
// the registered release.
func (e *Engine) findRelease(ctx context.Context, name, env string) (store.Release, error) {
	p, v, ok := strings.Cut(name, "@")
	if !ok {
		return store.Release{}, fmt.Errorf("%w: release %q: want PRODUCT@VERSION", ErrInput, name)
	}
	prod, err := release.ParseProduct(p)
	if err != nil {
		return store.Release{}, fmt.Errorf("%w: release: %w", ErrInput, err)
	}
	ver, err := release.ParseVersion(v)
	if err != nil {
		return store.Release{}, fmt.Errorf("%w: release: %w", ErrInput, err)
	}
	rels, err := e.db.ListReleases(ctx, store.MaxListLimit)
	if err != nil {
		return store.Release{}, err
	}
	var found []store.Release
	for _, r := range rels {
		if r.Product == prod.String() && r.Version == ver.String() && (env == "" || r.Environment == env) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return store.Release{}, fmt.Errorf("release %s (environment %q) is not registered: %w", name, env, store.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return store.Release{}, fmt.Errorf("%w: release %s is registered for several environments; give the environment", ErrInput, name)
}
