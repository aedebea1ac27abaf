package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
)

// Token limits.
const (
	// TokenBytes is the entropy of admin and enrollment tokens.
	TokenBytes = 32
	// MaxEnrollmentTokenTTL bounds an enrollment token's lifetime.
	MaxEnrollmentTokenTTL = 365 * 24 * time.Hour
	// AdminTouchInterval: an admin token's LastUsed is written at most this often.
	AdminTouchInterval = time.Minute
)

// ErrToken: a token failed a format check.
var ErrToken = errors.New("malformed token")

// newToken returns a random token (TokenBytes, unpadded base64url) and the
// SHA-256 hash the store keeps.
func newToken() (string, []byte, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("failed to generate token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	return tok, h[:], nil
}

// tokenHash checks a presented token's format (EnrollmentTokenLen
// characters of strict unpadded base64url) and returns its SHA-256.
func tokenHash(tok string) ([]byte, error) {
	if len(tok) != EnrollmentTokenLen {
		return nil, ErrToken
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(tok); err != nil {
		return nil, ErrToken
	}
	h := sha256.Sum256([]byte(tok))
	return h[:], nil
}

func randomID(prefix string) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("failed to generate id: %w", err)
	}
	return prefix + hex.EncodeToString(b), nil
}

// EnrollmentTokenOptions describe a new enrollment token.
type EnrollmentTokenOptions struct {
	Product, Model string        // optional restrictions; empty allows any
	Uses           int           // 1..store.MaxTokenUses; 0 means 1
	TTL            time.Duration // 1s..MaxEnrollmentTokenTTL; 0 means 24h
}

// CreateEnrollmentToken creates an enrollment token in st and returns the
// secret (shown once; only its hash is stored) and the stored record.
func CreateEnrollmentToken(ctx context.Context, st store.Store, o EnrollmentTokenOptions, now time.Time) (string, store.EnrollmentToken, error) {
	if o.Uses == 0 {
		o.Uses = 1
	}
	if o.TTL == 0 {
		o.TTL = 24 * time.Hour
	}
	if o.Uses < 1 || o.Uses > store.MaxTokenUses {
		return "", store.EnrollmentToken{}, fmt.Errorf("%w: uses %d outside 1..%d", store.ErrInvalid, o.Uses, store.MaxTokenUses)
	}
	if o.TTL < time.Second || o.TTL > MaxEnrollmentTokenTTL {
		return "", store.EnrollmentToken{}, fmt.Errorf("%w: ttl %v outside 1s..%v", store.ErrInvalid, o.TTL, MaxEnrollmentTokenTTL)
	}
	secret, hash, err := newToken()
	if err != nil {
		return "", store.EnrollmentToken{}, err
	}
	id, err := randomID("et-")
	if err != nil {
		return "", store.EnrollmentToken{}, err
	}
	rec := store.EnrollmentToken{
		ID: id, Hash: hash, Product: o.Product, Model: o.Model, UsesLeft: o.Uses,
		ExpiresAt: now.Add(o.TTL).UTC(), CreatedAt: now.UTC(),
	}
	if err := st.CreateEnrollmentToken(ctx, rec); err != nil {
		return "", store.EnrollmentToken{}, fmt.Errorf("failed to store enrollment token: %w", err)
	}
	return secret, rec, nil
}

func (s *Server) authAdmin(r *http.Request) (store.AdminToken, error) {
	const prefix = "Bearer "
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "admin token required (Authorization: Bearer …)")
	}
	if len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "authorization scheme must be Bearer")
	}
	hash, err := tokenHash(auth[len(prefix):])
	if err != nil {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	tok, err := s.db.GetAdminTokenByHash(r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	if err != nil {
		return store.AdminToken{}, err
	}
	if subtle.ConstantTimeCompare(tok.Hash, hash) != 1 {
		return store.AdminToken{}, httpx.Status(http.StatusUnauthorized, "invalid admin token")
	}
	if now := s.now(); now.Sub(tok.LastUsed) > AdminTouchInterval {
		if err := s.db.TouchAdminToken(r.Context(), tok.ID, now); err != nil {
			s.log.Warn("failed to update admin token last use", "admin_token_id", tok.ID, "err", err)
		}
	}
	return tok, nil
}

func (s *Server) handleListDevices(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "product", "model", "channel", "state", "version", "limit", "offset"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := store.DeviceFilter{
		Product: q.Get("product"), Model: q.Get("model"), Channel: q.Get("channel"),
		State: q.Get("state"), Version: q.Get("version"),
	}
	var err error
	if f.Limit, err = httpx.IntParam(r, "limit", store.MaxListLimit); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if f.Offset, err = httpx.IntParam(r, "offset", store.MaxListOffset); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	devs, err := s.db.ListDevices(r.Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := DeviceList{Devices: make([]Device, 0, len(devs)), Limit: f.Limit, Offset: f.Offset}
	if out.Limit == 0 {
		out.Limit = store.DefaultListLimit
	}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceJSON(d))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleAdminDevice(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	d, err := s.db.GetDevice(r.Context(), r.PathValue("id"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "device"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, deviceJSON(d))
}

func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "limit"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	limit, err := httpx.IntParam(r, "limit", store.MaxListLimit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	evs, err := s.db.ListEvents(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "device"))
		return
	}
	out := EventList{Events: make([]Event, 0, len(evs))}
	for _, e := range evs {
		out.Events = append(out.Events, Event{ID: e.ID, DeviceID: e.DeviceID, Time: e.Time, Kind: e.Kind, Version: e.Version, Message: e.Message})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) handleCreateEnrollmentToken(w http.ResponseWriter, r *http.Request) {
	var req CreateEnrollmentTokenRequest
	if err := httpx.ReadJSON(w, r, MaxAdminBodySize, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.Uses < 1 || req.Uses > store.MaxTokenUses {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "uses must be in 1..%d", store.MaxTokenUses))
		return
	}
	if maxTTL := int64(MaxEnrollmentTokenTTL / time.Second); req.TTLSeconds < 1 || req.TTLSeconds > maxTTL {
		httpx.WriteError(w, r, httpx.Status(http.StatusBadRequest, "ttl_seconds must be in 1..%d", maxTTL))
		return
	}
	secret, rec, err := CreateEnrollmentToken(r.Context(), s.db, EnrollmentTokenOptions{
		Product: req.Product, Model: req.Model, Uses: req.Uses, TTL: time.Duration(req.TTLSeconds) * time.Second,
	}, s.now())
	if errors.Is(err, store.ErrInvalid) {
		err = httpx.Status(http.StatusBadRequest, "%w", err)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, CreateEnrollmentTokenResponse{
		Token: secret, ID: rec.ID, ExpiresAt: rec.ExpiresAt, Uses: rec.UsesLeft, Product: rec.Product, Model: rec.Model,
	})
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if err := httpx.QueryParams(r, "product"); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	st, err := s.db.Stats(r.Context())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	vers, err := s.db.CountDevicesByVersion(r.Context(), r.URL.Query().Get("product"))
	if err != nil {
		httpx.WriteError(w, r, httpx.LookupError(err, "product"))
		return
	}
	if vers == nil {
		vers = map[string]int{}
	}
	httpx.WriteJSON(w, http.StatusOK, StatsResponse{Devices: st.Devices, Events: st.Events, DBSizeBytes: st.SizeBytes, Versions: vers})
}
