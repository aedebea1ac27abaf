package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
)

// Device API timeouts (its size limits are in package deviceapi).
const (
	// APITimeout bounds one device API request.
	APITimeout = 30 * time.Second
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound
	// every connection, to the API and to the repository.
	DialTimeout           = 30 * time.Second
	TLSHandshakeTimeout   = 15 * time.Second
	ResponseHeaderTimeout = 30 * time.Second
)

var (
	// ErrAPI is wrapped by every device API failure.
	ErrAPI = errors.New("device API request failed")
	// ErrResponse is wrapped when a device API response does not parse
	// or carries out-of-range values.
	ErrResponse = fmt.Errorf("%w: invalid response", ErrAPI)
)

// DecodeResponse decodes a device API response with
// deviceapi.DecodeResponse (one JSON object within
// deviceapi.MaxResponseSize, no unknown or duplicate keys, no trailing
// data). Errors wrap ErrResponse.
func DecodeResponse(data []byte, v any) error {
	if err := deviceapi.DecodeResponse(data, v); err != nil {
		return fmt.Errorf("%w: %w", ErrResponse, err)
	}
	return nil
}

// pollInterval validates a server's poll interval (0: none sent) with
// deviceapi.PollInterval. Errors wrap ErrResponse.
func pollInterval(secs int64) (time.Duration, error) {
	iv, err := deviceapi.PollInterval(secs)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrResponse, err)
	}
	return iv, nil
}

// newHTTPClient returns the client for the API and the repository: TLS 1.2
// or later, roots = pool (nil: system roots), the pinned CA enforced, the
// client certificate cert (nil: none) and connection timeouts. The
// process-wide default client is never touched.
//
// sessions, if not nil, caches TLS sessions for resumption; it must be used
// with one client certificate only (a session resumed from another
// identity would authenticate as that identity).
func newHTTPClient(pool *x509.CertPool, pin string, cert *tls.Certificate, sessions tls.ClientSessionCache) *http.Client {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ClientSessionCache: sessions}
	if pin != "" {
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, c := range chain {
					sum := sha256.Sum256(c.Raw)
					if hex.EncodeToString(sum[:]) == pin {
						return nil
					}
				}
			}
			return errors.New("server certificate does not chain to the CA pinned by server_ca_sha256")
		}
	}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       tc,
			TLSHandshakeTimeout:   TLSHandshakeTimeout,
			ResponseHeaderTimeout: ResponseHeaderTimeout,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		// Redirects could leave the pinned server: refuse them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpStatusError is a device API answer with an unexpected status code;
// it wraps ErrAPI.
type httpStatusError struct {
	path string
	code int
	body string // truncated
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("%v: POST %s: HTTP status %d: %q", ErrAPI, e.path, e.code, e.body)
}

func (e *httpStatusError) Unwrap() error { return ErrAPI }

// apiClient talks to the device API.
type apiClient struct {
	base   *url.URL
	client *http.Client
}

// post sends v as JSON to path and decodes the answer into out (nil: no
// body expected). want is the expected status code.
func (a *apiClient) post(ctx context.Context, path string, v any, want int, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("internal error: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	u := a.base.JoinPath(path)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrAPI, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: POST %s: %w", ErrAPI, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, deviceapi.MaxResponseSize+1))
	if err != nil {
		return fmt.Errorf("%w: POST %s: reading response: %w", ErrAPI, path, err)
	}
	if resp.StatusCode != want {
		return &httpStatusError{path, resp.StatusCode, truncate(string(data), 200)}
	}
	if out == nil {
		return nil
	}
	if err := DecodeResponse(data, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}

// checkin sends a check-in (its last error cleaned with
// deviceapi.CleanMessage) after checking it as the server will.
func (a *apiClient) checkin(ctx context.Context, req deviceapi.CheckinRequest) (*deviceapi.CheckinResponse, time.Duration, error) {
	req.LastError = deviceapi.CleanMessage(req.LastError)
	if err := req.Validate(); err != nil {
		return nil, 0, fmt.Errorf("%w: refusing to send a check-in the server would refuse: %w", ErrAPI, err)
	}
	var resp deviceapi.CheckinResponse
	if err := a.post(ctx, deviceapi.PathCheckin, req, http.StatusOK, &resp); err != nil {
		return nil, 0, err
	}
	iv, err := pollInterval(resp.PollIntervalSeconds)
	if err != nil {
		return nil, 0, err
	}
	return &resp, iv, nil
}

// status sends a status report: its message, often a command's output, is
// cleaned with deviceapi.CleanMessage (control characters, invalid UTF-8,
// cut at a character boundary) so that the server does not refuse it.
func (a *apiClient) status(ctx context.Context, r deviceapi.StatusReport) error {
	r.Message = deviceapi.CleanMessage(r.Message)
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w: refusing to send a status report the server would refuse: %w", ErrAPI, err)
	}
	return a.post(ctx, deviceapi.PathStatus, r, http.StatusNoContent, nil)
}

// repositoryURLs resolves the repository URLs of a check-in (absolute, or
// relative to the server) and checks them.
func (a *apiClient) repositoryURLs(r deviceapi.Repository) (meta, targets string, err error) {
	resolve := func(key, s string) (string, error) {
		if s == "" {
			return "", nil
		}
		if len(s) > MaxURLLength {
			return "", fmt.Errorf("%w: repository.%s is longer than %d bytes", ErrResponse, key, MaxURLLength)
		}
		ref, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%w: repository.%s: %v", ErrResponse, key, err)
		}
		u := a.base.ResolveReference(ref)
		if _, err := checkHTTPSURL(u.String()); err != nil {
			return "", fmt.Errorf("%w: repository.%s: %v", ErrResponse, key, err)
		}
		return u.String(), nil
	}
	if meta, err = resolve("metadata_url", r.MetadataURL); err != nil {
		return "", "", err
	}
	if targets, err = resolve("targets_url", r.TargetsURL); err != nil {
		return "", "", err
	}
	return meta, targets, nil
}
