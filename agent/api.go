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
)

// Device API limits and timeouts.
const (
	// MaxResponseSize bounds a device API response body.
	MaxResponseSize = 1 << 20
	// MaxMessageLength bounds the message of a status report (longer
	// messages are cut).
	MaxMessageLength = 4 << 10
	// APITimeout bounds one device API request.
	APITimeout = 30 * time.Second
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound
	// every connection, to the API and to the repository.
	DialTimeout           = 30 * time.Second
	TLSHandshakeTimeout   = 15 * time.Second
	ResponseHeaderTimeout = 30 * time.Second
)

// Device API paths (docs/server.md).
const (
	PathEnroll  = "/api/v1/enroll"
	PathCheckin = "/api/v1/checkin"
	PathStatus  = "/api/v1/status"
)

// Status report kinds, in the order a successful update reports them.
const (
	StatusDownloading = "downloading"
	StatusVerified    = "verified"
	StatusInstalled   = "installed"
	StatusRebooted    = "rebooted"
	StatusCommitted   = "committed"
	StatusRolledBack  = "rolled_back"
	StatusFailed      = "failed"
)

var (
	// ErrAPI is wrapped by every device API failure.
	ErrAPI = errors.New("device API request failed")
	// ErrResponse is wrapped when a device API response does not parse
	// or carries out-of-range values.
	ErrResponse = fmt.Errorf("%w: invalid response", ErrAPI)
)

// EnrollRequest is the body of POST /api/v1/enroll. The CSR carries the
// device's public key; the private key never leaves the device.
type EnrollRequest struct {
	Token          string `json:"token"`
	CSR            string `json:"csr"`
	Model          string `json:"model"`
	HWRev          uint32 `json:"hw_rev"`
	Product        string `json:"product"`
	Channel        string `json:"channel"`
	CurrentVersion string `json:"current_version"`
}

// EnrollResponse is the 201 answer to an enrollment.
type EnrollResponse struct {
	DeviceID            string `json:"device_id"`
	Certificate         string `json:"certificate"`
	CAChain             string `json:"ca_chain"`
	PollIntervalSeconds int64  `json:"poll_interval_seconds"`
}

// CheckinRequest is the body of POST /api/v1/checkin (mTLS).
type CheckinRequest struct {
	CurrentVersion  string `json:"current_version"`
	SecurityCounter uint64 `json:"security_counter"`
	State           string `json:"state"` // one of the State* constants
	Slot            string `json:"slot,omitempty"`
	LastError       string `json:"last_error,omitempty"`
}

// Repository locates the TUF repository.
type Repository struct {
	MetadataURL string `json:"metadata_url"`
	TargetsURL  string `json:"targets_url"`
}

// CheckinResponse is the answer to a check-in.
type CheckinResponse struct {
	PollIntervalSeconds int64      `json:"poll_interval_seconds"`
	Repository          Repository `json:"repository"`
	ServerTime          time.Time  `json:"server_time"`
	// Assignment names the release a staged rollout assigned to this
	// device. It is informational (logged): in director mode the signed
	// director metadata decides, and without it the agent installs the
	// newest release the vendor-signed repository offers.
	Assignment *Assignment `json:"assignment,omitempty"`
}

// Assignment is the informational assignment of a check-in response.
type Assignment struct {
	RolloutID  string `json:"rollout_id"`
	Release    string `json:"release"` // "product@version"
	TargetPath string `json:"target_path"`
}

// UnmarshalJSON decodes an assignment leniently (unknown fields are
// ignored): it is informational, never acted on, so a newer server may add
// fields without breaking older agents. Its size is bounded by the check-in
// response (MaxResponseSize).
func (as *Assignment) UnmarshalJSON(data []byte) error {
	type plain Assignment
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*as = Assignment(p)
	return nil
}

// StatusReport is the body of POST /api/v1/status (mTLS).
type StatusReport struct {
	Kind    string `json:"kind"`
	Version string `json:"version,omitempty"`
	Message string `json:"message,omitempty"`
}

// DecodeResponse decodes a device API response strictly: exactly one JSON
// object within MaxResponseSize, no unknown fields, no trailing data.
func DecodeResponse(data []byte, v any) error {
	if len(data) > MaxResponseSize {
		return fmt.Errorf("%w: body is larger than MaxResponseSize %d", ErrResponse, MaxResponseSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrResponse, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrResponse)
	}
	return nil
}

// pollInterval validates a server's poll interval (0: none sent).
func pollInterval(secs int64) (time.Duration, error) {
	if secs == 0 {
		return 0, nil
	}
	if secs < int64(MinPollInterval/time.Second) || secs > int64(MaxPollInterval/time.Second) {
		return 0, fmt.Errorf("%w: poll_interval_seconds %d out of range [%d, %d]", ErrResponse, secs,
			int64(MinPollInterval/time.Second), int64(MaxPollInterval/time.Second))
	}
	return time.Duration(secs) * time.Second, nil
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return fmt.Errorf("%w: POST %s: reading response: %w", ErrAPI, path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%w: POST %s: HTTP status %d: %q", ErrAPI, path, resp.StatusCode, truncate(string(data), 200))
	}
	if out == nil {
		return nil
	}
	if err := DecodeResponse(data, out); err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	return nil
}

func (a *apiClient) checkin(ctx context.Context, req CheckinRequest) (*CheckinResponse, time.Duration, error) {
	var resp CheckinResponse
	if err := a.post(ctx, PathCheckin, req, http.StatusOK, &resp); err != nil {
		return nil, 0, err
	}
	iv, err := pollInterval(resp.PollIntervalSeconds)
	if err != nil {
		return nil, 0, err
	}
	return &resp, iv, nil
}

func (a *apiClient) status(ctx context.Context, r StatusReport) error {
	if len(r.Message) > MaxMessageLength {
		r.Message = r.Message[:MaxMessageLength]
	}
	return a.post(ctx, PathStatus, r, http.StatusNoContent, nil)
}

// repositoryURLs resolves the repository URLs of a check-in (absolute, or
// relative to the server) and checks them.
func (a *apiClient) repositoryURLs(r Repository) (meta, targets string, err error) {
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
