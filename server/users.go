package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// CreateUser creates a user with a role and its first API token, and
// returns the user, the token secret (shown once; only its hash is stored)
// and the token record. The name is 1..store.MaxIDLen of [A-Za-z0-9._-].
func CreateUser(ctx context.Context, st store.Store, name, role string, now time.Time) (store.User, string, store.AdminToken, error) {
	if !ValidRole(role) {
		return store.User{}, "", store.AdminToken{}, fmt.Errorf("%w: role %q is not one of %q", store.ErrInvalid, role, Roles)
	}
	id, err := randomID("u-")
	if err != nil {
		return store.User{}, "", store.AdminToken{}, err
	}
	u := store.User{ID: id, Name: name, Role: role, CreatedAt: now.UTC()}
	if err := st.CreateUser(ctx, u); err != nil {
		return store.User{}, "", store.AdminToken{}, err
	}
	tok, rec, err := CreateUserToken(ctx, st, u.ID, "initial", now)
	if err != nil {
		return store.User{}, "", store.AdminToken{}, err
	}
	return u, tok, rec, nil
}

// CreateUserToken creates another API token for an existing user and
// returns the secret (shown once) and the stored record. label names the
// token (e.g. "laptop", "ci").
func CreateUserToken(ctx context.Context, st store.Store, userID, label string, now time.Time) (string, store.AdminToken, error) {
	u, err := st.GetUser(ctx, userID)
	if err != nil {
		return "", store.AdminToken{}, err
	}
	secret, hash, err := newToken()
	if err != nil {
		return "", store.AdminToken{}, err
	}
	id, err := randomID("at-")
	if err != nil {
		return "", store.AdminToken{}, err
	}
	rec := store.AdminToken{ID: id, UserID: u.ID, Name: label, Role: u.Role, Hash: hash, CreatedAt: now.UTC()}
	if err := st.CreateAdminToken(ctx, rec); err != nil {
		return "", store.AdminToken{}, fmt.Errorf("failed to store admin token: %w", err)
	}
	return secret, rec, nil
}

// CreateAdminToken creates an API token for the user called name, creating
// the user with role if it does not exist (an existing user must have that
// role). It returns the secret (shown once) and the stored record.
func CreateAdminToken(ctx context.Context, st store.Store, name, role string, now time.Time) (string, store.AdminToken, error) {
	u, err := st.GetUserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		_, tok, rec, err := CreateUser(ctx, st, name, role, now)
		return tok, rec, err
	}
	if err != nil {
		return "", store.AdminToken{}, err
	}
	if u.Role != role {
		return "", store.AdminToken{}, fmt.Errorf("%w: user %q has role %q, not %q", store.ErrConflict, name, u.Role, role)
	}
	if u.Disabled() {
		return "", store.AdminToken{}, fmt.Errorf("%w: user %q is disabled", store.ErrConflict, name)
	}
	return CreateUserToken(ctx, st, u.ID, "token", now)
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
	s.auth = newAuthState()
	s.metrics.reg.MustRegister(s.auth.results)
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
	u, tok, rec, err := CreateUser(r.Context(), s.db, req.Name, req.Role, s.now())
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	s.audit(r.Context(), userFrom(r).Name, AuditUserCreated, map[string]string{"user": u.Name, "role": u.Role})
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
	tok, rec, err := CreateUserToken(r.Context(), s.db, u.ID, req.Name, s.now())
	if err != nil {
		httpx.WriteError(w, r, httpx.InputError(err))
		return
	}
	s.audit(r.Context(), userFrom(r).Name, AuditUserToken, map[string]string{"user": u.Name, "token_id": rec.ID})
	httpx.WriteJSON(w, http.StatusCreated, TokenResponse{Token: tok, ID: rec.ID, UserID: u.ID, Name: rec.Name})
}

func (s *Server) handleDisableUser(w http.ResponseWriter, r *http.Request) {
	if err := httpx.ReadEmpty(w, r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if err := s.db.DisableUser(r.Context(), id, s.now()); err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "user"))
		return
	}
	u, err := s.db.GetUser(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	s.audit(r.Context(), userFrom(r).Name, AuditUserDisabled, map[string]string{"user": u.Name})
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
