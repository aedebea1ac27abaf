package adminapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of the client.
const (
	// MaxResponseSize bounds one admin API response.
	MaxResponseSize = 16 << 20
	// RequestTimeout bounds one request.
	RequestTimeout = 60 * time.Second
)

// Credentials supplies the bearer token of each request and, for a
// state-changing one (write), the TOTP code to send in TOTPHeader. An error
// aborts the request before anything is sent.
type Credentials interface {
	Credentials(ctx context.Context, write bool) (token, totp string, err error)
}

// ErrTOTPRequired: a state-changing request has no TOTP code.
var ErrTOTPRequired = errors.New("this change needs a TOTP code")

// Static is one user's token and current TOTP code. A state-changing request
// without a TOTP code fails with ErrTOTPRequired.
type Static struct {
	Token, TOTP string
}

// Credentials implements Credentials.
func (s Static) Credentials(_ context.Context, write bool) (string, string, error) {
	if write && s.TOTP == "" {
		return "", "", ErrTOTPRequired
	}
	return s.Token, s.TOTP, nil
}

// Session is a session credential from Login (LoginResponse.Session), with
// an optional TOTP code for the few changes that need a fresh code even
// under a session (approving a release, managing users).
type Session struct {
	Secret, TOTP string
}

// Credentials implements Credentials: the session stands in for the TOTP
// code, which is sent only when set.
func (s Session) Credentials(context.Context, bool) (string, string, error) {
	return s.Secret, s.TOTP, nil
}

// HTTPError is a non-2xx answer of the server.
type HTTPError struct {
	Method, Path string
	StatusCode   int
	// Message is the server's "error" field ("" when it sent none).
	Message string
}

func (e *HTTPError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.StatusCode, e.Message)
	}
	return fmt.Sprintf("%s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
}

// Client calls the admin API of one server.
type Client struct {
	base  string
	creds Credentials
	http  *http.Client
}

// New returns a client of the server at baseURL (https://HOST[:PORT]) that
// trusts roots (nil: the system roots) and authenticates with creds.
func New(baseURL string, roots *x509.CertPool, creds Credentials) *Client {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), creds: creds, http: &http.Client{
		Timeout:   RequestTimeout,
		Transport: &http.Transport{TLSClientConfig: conf},
	}}
}

// Do sends a request with body as JSON (nil: no body) and decodes a 2xx
// JSON answer into out (nil: discarded). Any method but GET is
// state-changing and carries a TOTP code. Typed methods are built on it.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	token, totp, err := c.creds.Credentials(ctx, method != http.MethodGet)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method != http.MethodGet && totp != "" {
		req.Header.Set(TOTPHeader, totp)
	}
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
		return fmt.Errorf("%s %s: response exceeds %d bytes", method, path, MaxResponseSize)
	}
	if resp.StatusCode/100 != 2 {
		he := &HTTPError{Method: method, Path: path, StatusCode: resp.StatusCode}
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil {
			he.Message = eb.Error
		}
		return he
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: bad response: %w", method, path, err)
		}
	}
	return nil
}

func get[T any](ctx context.Context, c *Client, path string) (T, error) {
	var out T
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

func post[T any](ctx context.Context, c *Client, path string, body any) (T, error) {
	var out T
	err := c.Do(ctx, http.MethodPost, path, body, &out)
	return out, err
}

func item(base, id string, sub ...string) string {
	p := base + "/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}

// DeviceQuery filters GET PathDevices; zero fields do not filter.
type DeviceQuery struct {
	Product, Model, Channel, State, Version string
	Limit, Offset                           int
}

// ListDevices lists devices (GET PathDevices).
func (c *Client) ListDevices(ctx context.Context, q DeviceQuery) (DeviceList, error) {
	v := url.Values{}
	for k, s := range map[string]string{"product": q.Product, "model": q.Model, "channel": q.Channel, "state": q.State, "version": q.Version} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	p := PathDevices
	if len(v) != 0 {
		p += "?" + v.Encode()
	}
	return get[DeviceList](ctx, c, p)
}

// GetDevice returns one device.
func (c *Client) GetDevice(ctx context.Context, id string) (Device, error) {
	return get[Device](ctx, c, item(PathDevices, id))
}

// ListEvents returns a device's latest events (limit 0: the server's default).
func (c *Client) ListEvents(ctx context.Context, deviceID string, limit int) (EventList, error) {
	p := item(PathDevices, deviceID, "events")
	if limit != 0 {
		p += "?limit=" + strconv.Itoa(limit)
	}
	return get[EventList](ctx, c, p)
}

// SetDeviceTags replaces a device's tags and returns the device.
func (c *Client) SetDeviceTags(ctx context.Context, deviceID string, req TagsRequest) (Device, error) {
	return post[Device](ctx, c, item(PathDevices, deviceID, "tags"), req)
}

// CreateEnrollmentToken creates a device enrollment token.
func (c *Client) CreateEnrollmentToken(ctx context.Context, req CreateEnrollmentTokenRequest) (CreateEnrollmentTokenResponse, error) {
	return post[CreateEnrollmentTokenResponse](ctx, c, PathEnrollmentTokens, req)
}

// Stats returns fleet statistics, for one product when product is not "".
func (c *Client) Stats(ctx context.Context, product string) (StatsResponse, error) {
	p := PathStats
	if product != "" {
		p += "?product=" + url.QueryEscape(product)
	}
	return get[StatsResponse](ctx, c, p)
}

// ListReleases lists the releases registered for deployment.
func (c *Client) ListReleases(ctx context.Context) (ReleaseList, error) {
	return get[ReleaseList](ctx, c, PathReleases)
}

// GetRelease returns one registered release.
func (c *Client) GetRelease(ctx context.Context, id string) (Release, error) {
	return get[Release](ctx, c, item(PathReleases, id))
}

// CreateRelease registers a published release for deployment.
func (c *Client) CreateRelease(ctx context.Context, req CreateReleaseRequest) (Release, error) {
	return post[Release](ctx, c, PathReleases, req)
}

// ApproveRelease approves a release as the client's user.
func (c *Client) ApproveRelease(ctx context.Context, id string) (Release, error) {
	return post[Release](ctx, c, item(PathReleases, id, "approve"), nil)
}

// DeployRelease marks an approved release deployed.
func (c *Client) DeployRelease(ctx context.Context, id string) (Release, error) {
	return post[Release](ctx, c, item(PathReleases, id, "deploy"), nil)
}

// ListUsers lists the admin users.
func (c *Client) ListUsers(ctx context.Context) (UserList, error) {
	return get[UserList](ctx, c, PathUsers)
}

// CreateUser creates a user and its first token.
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (CreateUserResponse, error) {
	return post[CreateUserResponse](ctx, c, PathUsers, req)
}

// CreateUserToken creates another token for a user.
func (c *Client) CreateUserToken(ctx context.Context, userID string, req CreateTokenRequest) (TokenResponse, error) {
	return post[TokenResponse](ctx, c, item(PathUsers, userID, "tokens"), req)
}

// DisableUser disables a user.
func (c *Client) DisableUser(ctx context.Context, userID string) (User, error) {
	return post[User](ctx, c, item(PathUsers, userID, "disable"), nil)
}

// ListRollouts lists rollouts, newest first.
func (c *Client) ListRollouts(ctx context.Context) (RolloutList, error) {
	return get[RolloutList](ctx, c, PathRollouts)
}

// GetRollout returns one rollout's view.
func (c *Client) GetRollout(ctx context.Context, id string) (RolloutView, error) {
	return get[RolloutView](ctx, c, item(PathRollouts, id))
}

// CreateRollout creates a draft rollout.
func (c *Client) CreateRollout(ctx context.Context, req CreateRolloutRequest) (RolloutView, error) {
	return post[RolloutView](ctx, c, PathRollouts, req)
}

// RolloutAction applies action (RolloutStart, RolloutPause, RolloutResume or
// RolloutCancel) to a rollout.
func (c *Client) RolloutAction(ctx context.Context, id, action string, req RolloutActionRequest) (RolloutView, error) {
	if !slices.Contains([]string{RolloutStart, RolloutPause, RolloutResume, RolloutCancel}, action) {
		return RolloutView{}, fmt.Errorf("unknown rollout action %q", action)
	}
	return post[RolloutView](ctx, c, item(PathRollouts, id, action), req)
}

// Login exchanges the client's admin token and TOTP code (a Static
// credential) for a session of ttl (0: the server's lifetime, which is
// also the longest it grants). The returned Session is a secret.
func (c *Client) Login(ctx context.Context, ttl time.Duration) (LoginResponse, error) {
	if ttl < 0 || ttl%time.Second != 0 {
		return LoginResponse{}, fmt.Errorf("session lifetime %v must be whole seconds", ttl)
	}
	return post[LoginResponse](ctx, c, PathLogin, LoginRequest{TTLSeconds: int64(ttl / time.Second)})
}

// Logout ends the client's session (a Session credential).
func (c *Client) Logout(ctx context.Context) (LogoutResponse, error) {
	return post[LogoutResponse](ctx, c, PathLogout, nil)
}
