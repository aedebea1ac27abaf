package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/server"
)

// adminUser is an admin API user with a token and a TOTP secret. The
// server refuses a replayed TOTP step per user, so one user makes at most
// one state-changing request per 30 s step: the benchmark uses one user
// per state-changing request.
type adminUser struct {
	token  string
	secret []byte
}

// secretFromURI extracts the TOTP secret of an otpauth:// URI.
func secretFromURI(uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, err
	}
	s := u.Query().Get("secret")
	return base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(s))
}

// adminClient talks to the admin API.
type adminClient struct {
	base   string
	client *http.Client
	mu     sync.Mutex
	users  []adminUser // unused users for state-changing requests
	reader adminUser   // for reads
}

func newAdminClient(base string, caPEM []byte) (*adminClient, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no CA certificate in the server CA file")
	}
	return &adminClient{base: base, client: &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}}, nil
}

// do sends a request; write requests use a fresh user (token + TOTP).
func (a *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	u := a.reader
	if method != http.MethodGet {
		a.mu.Lock()
		if len(a.users) == 0 {
			a.mu.Unlock()
			return fmt.Errorf("out of admin users for state-changing requests")
		}
		u, a.users = a.users[0], a.users[1:]
		a.mu.Unlock()
		req.Header.Set(server.TOTPHeader, server.TOTPCode(u.secret, time.Now()))
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
