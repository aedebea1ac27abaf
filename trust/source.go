package trust

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Source is where untrusted metadata and targets come from.
type Source interface {
	// FetchMetadata returns the bytes of role metadata; version 0 means the
	// unversioned file (timestamp.json, or non-consistent-snapshot names). It
	// must return an error wrapping ErrNotFound when the file does not exist
	// and an error wrapping ErrTooLarge when it is longer than maxLength.
	FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error)
	// OpenTarget opens a target for streaming; hashPrefix is "" unless
	// consistent snapshots are on (then the file is "<dir>/<hashPrefix>.<base>").
	OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error)
}

// HTTP client defaults of NewHTTPSource. There is no overall request timeout:
// target downloads may be long, so callers bound them with the context.
const (
	HTTPDialTimeout           = 30 * time.Second
	HTTPTLSHandshakeTimeout   = 10 * time.Second
	HTTPResponseHeaderTimeout = 30 * time.Second
	HTTPIdleConnTimeout       = 90 * time.Second
)

type httpSource struct {
	metadataURL, targetsURL string
	client                  *http.Client
}

// NewHTTPSource returns a Source fetching "<metadataURL>/[<version>.]<role>.json"
// and "<targetsURL>/<target path>". A nil client means a new client with
// connection timeouts and TLS 1.2 or later; the process-wide
// http.DefaultClient is never modified.
func NewHTTPSource(metadataURL, targetsURL string, client *http.Client) Source {
	if client == nil {
		client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: HTTPDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   HTTPTLSHandshakeTimeout,
			ResponseHeaderTimeout: HTTPResponseHeaderTimeout,
			IdleConnTimeout:       HTTPIdleConnTimeout,
			ForceAttemptHTTP2:     true,
		}}
	}
	return &httpSource{metadataURL: withSlash(metadataURL), targetsURL: withSlash(targetsURL), client: client}
}

func withSlash(u string) string {
	if u == "" || strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}

func (s *httpSource) get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to build request: %w", err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch %q: %w", u, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, fmt.Errorf("failed to fetch %q: %w (HTTP 404)", u, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, fmt.Errorf("failed to fetch %q: HTTP status %d", u, resp.StatusCode)
	}
	return resp, nil
}

func (s *httpSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	if s.metadataURL == "" {
		return nil, fmt.Errorf("no metadata URL configured")
	}
	name := roleFileName(role)
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	resp, err := s.get(ctx, s.metadataURL+name)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxLength {
		return nil, fmt.Errorf("%s: %w: Content-Length %d > %d", name, ErrTooLarge, resp.ContentLength, maxLength)
	}
	return readLimited(name, resp.Body, maxLength)
}

// readLimited reads at most maxLength bytes, failing with ErrTooLarge when r
// has more (13: io.LimitReader(r, max+1)).
func readLimited(name string, r io.Reader, maxLength int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", name, err)
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", name, ErrTooLarge, maxLength)
	}
	return data, nil
}

// targetURLPath builds the escaped URL path of a target, inserting the hash
// prefix before the base name. It refuses empty, "." and ".." segments.
func targetURLPath(targetPath, hashPrefix string) (string, error) {
	segs := strings.Split(targetPath, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("%w: target path %q", ErrInvalidName, targetPath)
		}
	}
	if hashPrefix != "" {
		segs[len(segs)-1] = hashPrefix + "." + segs[len(segs)-1]
	}
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/"), nil
}

func (s *httpSource) OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error) {
	if s.targetsURL == "" {
		return nil, fmt.Errorf("no targets URL configured")
	}
	p, err := targetURLPath(targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	resp, err := s.get(ctx, s.targetsURL+p)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// MapSource serves metadata and targets from memory, e.g. an offline bundle.
// Roots holds root metadata by version; Metadata holds every other role by
// role name ("timestamp", "snapshot", "targets", delegated names) whatever
// version is asked for (the client checks versions); Target opens a target
// by path (nil: no targets).
type MapSource struct {
	Roots    map[int64][]byte
	Metadata map[string][]byte
	Target   func(path string) (io.ReadCloser, error)
}

func (m *MapSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var data []byte
	var ok bool
	if role == "root" {
		data, ok = m.Roots[version]
	} else {
		data, ok = m.Metadata[role]
	}
	if !ok {
		return nil, fmt.Errorf("%s version %d: %w", role, version, ErrNotFound)
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: %w: %d > %d bytes", role, ErrTooLarge, len(data), maxLength)
	}
	return append([]byte(nil), data...), nil
}

func (m *MapSource) OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.Target == nil {
		return nil, fmt.Errorf("target %q: %w", targetPath, ErrNotFound)
	}
	return m.Target(targetPath)
}
