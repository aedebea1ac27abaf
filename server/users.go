package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/releases"
	"github.com/airlockfw/airlock/server/store"
)

// governanceRoutes mounts the release registry and user management.
func (s *Server) governanceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/admin/releases", s.auth.Admin(ActionReleaseRead, s.releases.HandleList))
	mux.HandleFunc("GET /api/v1/admin/releases/{id}", s.auth.Admin(ActionReleaseRead, s.releases.HandleGet))
	mux.HandleFunc("POST /api/v1/admin/releases", s.auth.Admin(ActionReleaseRegister, s.releases.HandleCreate))
	mux.HandleFunc("POST /api/v1/admin/releases/{id}/approve", s.auth.Admin(ActionReleaseApprove, s.releases.HandleApprove))
	mux.HandleFunc("POST /api/v1/admin/releases/{id}/deploy", s.auth.Admin(ActionReleaseDeploy, s.releases.HandleDeploy))
	mux.HandleFunc("GET /api/v1/admin/users", s.auth.Admin(ActionUserRead, s.handleListUsers))
	mux.HandleFunc("POST /api/v1/admin/users", s.auth.Admin(ActionUserWrite, s.handleCreateUser))
	mux.HandleFunc("POST /api/v1/admin/users/{id}/tokens", s.auth.Admin(ActionUserWrite, s.handleCreateUserToken))
	mux.HandleFunc("POST /api/v1/admin/users/{id}/disable", s.auth.Admin(ActionUserWrite, s.handleDisableUser))
}

// handleLogin exchanges an admin token and a TOTP code for a session
// (airlock login).
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req adminapi.LoginRequest
	if r.ContentLength != 0 {
		if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
			httpx.WriteError(w, r, err)
			return
		}
	}
	if req.TTLSeconds < 0 || req.TTLSeconds > int64(auth.MaxSessionTTL/time.Second) {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "ttl_seconds %d outside 0..%d", req.TTLSeconds, int64(auth.MaxSessionTTL/time.Second)))
		return
	}
	cred, sess, u, err := s.auth.StartSession(r, r.Header.Get(TOTPHeader), time.Duration(req.TTLSeconds)*time.Second)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, adminapi.LoginResponse{Session: cred, ID: sess.ID, User: u.Name, Role: sess.Role, ExpiresAt: sess.ExpiresAt})
}

// handleLogout ends the session that authenticates the request.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, u, err := s.auth.EndSession(r)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, adminapi.LogoutResponse{ID: sess.ID, User: u.Name})
}

// initGovernance loads the KEK (checking it against the database) and
// prepares authentication state and the approval threshold.
func (s *Server) initGovernance() error {
	if s.cfg.ProdApprovals == 0 {
		s.cfg.ProdApprovals = DefaultProdApprovals
	}
	if s.cfg.ProdApprovals < 1 || s.cfg.ProdApprovals > MaxProdApprovals {
		return fmt.Errorf("%w: prod approvals %d outside 1..%d", ErrConfig, s.cfg.ProdApprovals, MaxProdApprovals)
	}
	if s.kek == nil {
		if err := s.loadKEK(); err != nil {
			return err
		}
	}
	// Every change made under an admin session says so in its audit event.
	s.cfg.Audit = auth.AuditWithSession(s.cfg.Audit)
	var err error
	if s.releases, err = releases.New(releases.Config{DB: s.db, Metadata: s.metaFS, ProdApprovals: s.cfg.ProdApprovals,
		Now: s.now, Audit: s.cfg.Audit}); err != nil {
		return err
	}
	if s.auth, err = auth.New(auth.Config{DB: s.db, KEK: s.kek, Now: s.now, Log: s.log, Audit: s.cfg.Audit,
		SessionTTL: s.cfg.SessionTTL}); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.metrics.Reg.MustRegister(s.auth.Collector())
	return nil
}

func userJSON(u store.User) User {
	out := User{ID: u.ID, Name: u.Name, Role: u.Role, CreatedAt: u.CreatedAt, TOTPEnrolled: u.TOTPSecret != nil}
	if u.Disabled() {
		t := u.DisabledAt
		out.DisabledAt = &t
	}
	return out
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	users, err := s.db.ListUsers(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := UserList{Users: make([]User, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, userJSON(u))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	var req CreateUserRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if !ValidRole(req.Role) {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "role must be one of %q", Roles))
		return
	}
	ctx := store.WithAudit(r.Context())
	s.audit(ctx, auth.UserFrom(r).Name, AuditUserCreated, map[string]string{"user": req.Name, "role": req.Role})
	u, tok, rec, err := CreateUser(ctx, s.db, req.Name, req.Role, s.now())
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, CreateUserResponse{
		User: userJSON(u), Token: TokenResponse{Token: tok, ID: rec.ID, UserID: u.ID, Name: rec.Name},
	})
}

func (s *Server) handleCreateUserToken(w http.ResponseWriter, r *http.Request) {
	var req CreateTokenRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u, err := s.db.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "user"))
		return
	}
	if u.Disabled() {
		httpx.WriteError(w, r, httpx.Status(http.StatusConflict, "user %q is disabled", u.Name))
		return
	}
	ctx := store.WithAudit(r.Context())
	s.audit(ctx, auth.UserFrom(r).Name, AuditUserToken, map[string]string{"user": u.Name}) // CreateUserToken adds token_id
	tok, rec, err := CreateUserToken(ctx, s.db, u.ID, req.Name, s.now())
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, TokenResponse{Token: tok, ID: rec.ID, UserID: u.ID, Name: rec.Name})
}

func (s *Server) handleDisableUser(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	id := r.PathValue("id")
	u, err := s.db.GetUser(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "user"))
		return
	}
	ctx := store.WithAudit(r.Context())
	s.audit(ctx, auth.UserFrom(r).Name, AuditUserDisabled, map[string]string{"user": u.Name})
	if err := s.db.DisableUser(ctx, id, s.now()); err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "user"))
		return
	}
	if u, err = s.db.GetUser(r.Context(), id); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, userJSON(u))
}

// loadKEK loads (or creates) the key-encryption key and checks it against
// the database: a wrong KEK fails closed before anything is served.
func (s *Server) loadKEK() error {
	path := s.cfg.KEKFile
	if path == "" {
		path = filepath.Join(s.cfg.DataDir, KEKFile)
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("failed to create data directory: %w", err)
	}
	kek, created, err := LoadOrCreateKEK(path)
	if err != nil {
		return err
	}
	if created {
		s.log.Warn("created a new key-encryption key; back it up and keep it off the database's volume in production", "path", path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	if err := CheckKEK(ctx, s.db, kek, s.now()); err != nil {
		return err
	}
	s.kek = kek
	return nil
}
