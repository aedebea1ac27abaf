package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/airlockfw/airlock/server/store"
)

// Token limits.
const (
	// EnrollmentTokenLen is the length of an encoded token (32 random bytes,
	// unpadded base64url).
	EnrollmentTokenLen = 43
	// TokenBytes is the entropy of admin and enrollment tokens.
	TokenBytes = 32
	// MaxEnrollmentTokenTTL bounds an enrollment token's lifetime.
	MaxEnrollmentTokenTTL = 365 * 24 * time.Hour
	// AdminTouchInterval: an admin token's LastUsed is written at most this often.
	AdminTouchInterval = time.Minute
)

// ErrToken: a token failed a format check.
var ErrToken = errors.New("malformed token")

// NewToken returns a random token (TokenBytes, unpadded base64url) and the
// SHA-256 hash the store keeps.
func NewToken() (string, []byte, error) {
	b := make([]byte, TokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("failed to generate token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	return tok, h[:], nil
}

// TokenHash checks a presented token's format (EnrollmentTokenLen
// characters of strict unpadded base64url) and returns its SHA-256.
func TokenHash(tok string) ([]byte, error) {
	if len(tok) != EnrollmentTokenLen || !canonical256(tok) {
		return nil, ErrToken
	}
	h := sha256.Sum256([]byte(tok))
	return h[:], nil
}

// canonical256 reports whether s is the one unpadded base64url encoding of
// 256 bits: only alphabet characters (the decoder alone skips CR and LF),
// and zero trailing bits (Strict).
func canonical256(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil && len(raw) == TokenBytes
}

// RandomID returns prefix and 128 random bits in hex, for record IDs.
func RandomID(prefix string) (string, error) {
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
	secret, hash, err := NewToken()
	if err != nil {
		return "", store.EnrollmentToken{}, err
	}
	id, err := RandomID("et-")
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

// CreateUser creates a user with a role and its first API token, and
// returns the user, the token secret (shown once; only its hash is stored)
// and the token record. The name is 1..store.MaxIDLen of [A-Za-z0-9._-].
func CreateUser(ctx context.Context, st store.Store, name, role string, now time.Time) (store.User, string, store.AdminToken, error) {
	if !ValidRole(role) {
		return store.User{}, "", store.AdminToken{}, fmt.Errorf("%w: role %q is not one of %q", store.ErrInvalid, role, Roles)
	}
	id, err := RandomID("u-")
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
	secret, hash, err := NewToken()
	if err != nil {
		return "", store.AdminToken{}, err
	}
	id, err := RandomID("at-")
	if err != nil {
		return "", store.AdminToken{}, err
	}
	rec := store.AdminToken{ID: id, UserID: u.ID, Name: label, Role: u.Role, Hash: hash, CreatedAt: now.UTC()}
	store.SetAuditDetail(ctx, "token_id", id) // the caller's audit event, committed with the token
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
