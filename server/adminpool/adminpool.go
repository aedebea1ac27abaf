// Package adminpool is an admin API client for programs that own an update
// server's database — the demo, the fleet simulator's tests and the
// benchmarks — and drive it as operators would: a bearer token and a fresh
// TOTP code on every state-changing request.
//
// The server refuses a replayed TOTP time step per user (RFC 6238 §5.2), so
// one user can make one state-changing request per 30-second step. A Client
// therefore holds a pool of users and spends one per state-changing request;
// reads use a reader user without TOTP.
//
// Threat model: this is tooling for trusted, local setups. It creates admin
// users directly in the store (bypassing the admin API) and keeps their
// tokens and TOTP secrets in memory; never point it at a production
// database.
package adminpool

import (
	"context"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
)

// Limits.
const (
	// MaxResponseSize bounds one admin API response.
	MaxResponseSize = adminapi.MaxResponseSize
	// RequestTimeout bounds one request.
	RequestTimeout = adminapi.RequestTimeout
)

// ErrNoUsers means the pool has no user left for a state-changing request.
var ErrNoUsers = errors.New("adminpool: out of users for state-changing requests")

// User is an admin API user: its token and TOTP secret.
type User struct {
	Token  string
	Secret []byte
}

// CreateUsers creates n users named prefix-0 … prefix-(n-1) with role in db,
// each with an enrolled TOTP secret (sealed with kek, as the server does).
func CreateUsers(ctx context.Context, db store.Store, kek *auth.KEK, prefix string, n int, role string) ([]User, error) {
	var out []User
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		_, tok, _, err := auth.CreateUser(ctx, db, name, role, time.Now())
		if err != nil {
			return nil, err
		}
		uri, err := auth.EnrollTOTP(ctx, db, kek, name)
		if err != nil {
			return nil, err
		}
		secret, err := SecretFromURI(uri)
		if err != nil {
			return nil, err
		}
		out = append(out, User{Token: tok, Secret: secret})
	}
	return out, nil
}

// SecretFromURI extracts the TOTP secret of an otpauth:// URI.
func SecretFromURI(uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(u.Query().Get("secret")))
}

// Client calls the admin API of one server: the typed methods of
// [adminapi.Client], with credentials drawn from a pool of users.
type Client struct {
	*adminapi.Client
	pool *pool
}

// New returns a client that trusts caPEM, reads as reader and spends one of
// writers per state-changing request.
func New(base string, caPEM []byte, reader User, writers []User) (*Client, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("adminpool: no CA certificate given")
	}
	p := &pool{reader: reader, users: writers}
	return &Client{Client: adminapi.New(base, roots, p), pool: p}, nil
}

// Left returns how many state-changing requests the pool can still make.
func (c *Client) Left() int {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	return len(c.pool.users)
}

// pool implements adminapi.Credentials: reads as the reader, each
// state-changing request as the next unused writer with its current code.
type pool struct {
	reader User
	mu     sync.Mutex
	users  []User
}

func (p *pool) Credentials(_ context.Context, write bool) (string, string, error) {
	if !write {
		return p.reader.Token, "", nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.users) == 0 {
		return "", "", ErrNoUsers
	}
	u := p.users[0]
	p.users = p.users[1:]
	return u.Token, auth.TOTPCode(u.Secret, time.Now()), nil
}
