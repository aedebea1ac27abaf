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
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/store"
)

// Limits.
const (
	// MaxResponseSize bounds one admin API response.
	MaxResponseSize = 8 << 20
	// RequestTimeout bounds one request.
	RequestTimeout = 60 * time.Second
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
func CreateUsers(ctx context.Context, db store.Store, kek *server.KEK, prefix string, n int, role string) ([]User, error) {
	var out []User
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		_, tok, _, err := server.CreateUser(ctx, db, name, role, time.Now())
		if err != nil {
			return nil, err
		}
		uri, err := server.EnrollTOTP(ctx, db, kek, name)
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

// Client calls the admin API of the server at base (https://host:port).
type Client struct {
	base   string
	http   *http.Client
	reader User
	mu     sync.Mutex
	users  []User
}

// New returns a client that trusts caPEM, reads as reader and spends one of
// writers per state-changing request.
func New(base string, caPEM []byte, reader User, writers []User) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("adminpool: no CA certificate given")
	}
	return &Client{base: base, reader: reader, users: writers, http: &http.Client{
		Timeout:   RequestTimeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}}, nil
}

// Left returns how many state-changing requests the pool can still make.
func (c *Client) Left() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.users)
}

// Do sends a request with body as JSON (nil: none) and decodes a 2xx JSON
// response into out (nil: discarded).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	u := c.reader
	if method != http.MethodGet {
		c.mu.Lock()
		if len(c.users) == 0 {
			c.mu.Unlock()
			return ErrNoUsers
		}
		u, c.users = c.users[0], c.users[1:]
		c.mu.Unlock()
		req.Header.Set(server.TOTPHeader, server.TOTPCode(u.Secret, time.Now()))
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return err
	}
	if len(data) > MaxResponseSize {
		return fmt.Errorf("%s %s: response exceeds %d bytes (MaxResponseSize)", method, path, MaxResponseSize)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
