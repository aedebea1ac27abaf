package server

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/rollouts"
	"github.com/airlockfw/airlock/server/store"
)

// Rollout engine settings.
const (
	// DefaultRolloutTick is how often the engine re-counts running
	// rollouts from the store, recomputes their eligible fleet, times out
	// silent devices and applies the health gates (they are also applied
	// after every report).
	DefaultRolloutTick = 10 * time.Second
	// MinRolloutTick and MaxRolloutTick bound Config.RolloutTick.
	MinRolloutTick = 10 * time.Millisecond
	MaxRolloutTick = time.Hour
	// MaxOverduePerTick bounds the devices timed out per rollout and tick.
	MaxOverduePerTick = rollouts.MaxOverduePerTick
)

// Audit actions of rollouts.
const (
	AuditRolloutTransition = rollouts.AuditRolloutTransition
)

// Errors of rollout requests (see package server/rollouts).
var (
	ErrRolloutInput     = rollouts.ErrInput
	ErrApprovalsMissing = rollouts.ErrApprovalsMissing
)

// RolloutView returns the read model of a rollout (store.ErrNotFound if
// there is none).
func (s *Server) RolloutView(ctx context.Context, id string) (RolloutView, error) {
	return s.rollouts.RolloutView(ctx, id)
}

// ListRolloutViews returns up to limit rollouts (0: store.DefaultListLimit),
// newest first.
func (s *Server) ListRolloutViews(ctx context.Context, limit int) ([]RolloutView, error) {
	return s.rollouts.ListRolloutViews(ctx, limit)
}

// CreateRollout creates a draft rollout of a registered release as actor
// (see rollouts.Engine.CreateRollout).
func (s *Server) CreateRollout(ctx context.Context, actor store.User, req CreateRolloutRequest) (RolloutView, error) {
	return s.rollouts.CreateRollout(ctx, actor, req)
}

// ApplyRollout performs an operator action on a rollout as actor (see
// rollouts.Engine.ApplyRollout).
func (s *Server) ApplyRollout(ctx context.Context, id string, a rollout.Action, actor store.User, reason string) (RolloutView, error) {
	return s.rollouts.ApplyRollout(ctx, id, a, actor, reason)
}

// EvaluateRollouts runs one round of the rollout engine now: re-count,
// time out silent devices, apply the health gates (it also runs every
// Config.RolloutTick).
func (s *Server) EvaluateRollouts(ctx context.Context) { s.rollouts.Tick(ctx) }

// SetDeviceTags replaces a device's tags (rollout filters select on them).
func (s *Server) SetDeviceTags(ctx context.Context, actor store.User, deviceID string, tags []string) error {
	return s.rollouts.SetDeviceTags(ctx, actor, deviceID, tags)
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
	mux.HandleFunc("GET "+DirectorPath+"{file}", s.device(s.director.ServeMetadata))
}

func (s *Server) handleListRollouts(w http.ResponseWriter, r *http.Request) {
	limit, err := httpx.ListLimit(r)
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
