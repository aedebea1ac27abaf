package trust

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
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

// HTTP client defaults of NewHTTPSource. There is no overall request
// timeout on the client: every response is under the minimum-throughput
// rule (Throughput) and every metadata file under HTTPOptions.MetadataTimeout;
// target downloads may be long, so callers bound them with the context.
const (
	HTTPDialTimeout           = 30 * time.Second
	HTTPTLSHandshakeTimeout   = 10 * time.Second
	HTTPResponseHeaderTimeout = 30 * time.Second
	HTTPIdleConnTimeout       = 90 * time.Second
)

// HTTPOptions configure NewHTTPSourceWithOptions. The zero value is what
// NewHTTPSource uses.
type HTTPOptions struct {
	// Client sends the requests (nil: a new client with the HTTP*
	// connection timeouts above and TLS 1.2 or later; the process-wide
	// http.DefaultClient is never used or modified).
	Client *http.Client
	// MetadataTimeout bounds the retrieval of one metadata file, from the
	// request to its last byte (0: DefaultMetadataTimeout).
	MetadataTimeout time.Duration
	// Throughput is the minimum-throughput rule of every response,
	// metadata and targets (the zero value is the default rule).
	Throughput Throughput
}

type httpSource struct {
	metadataURL, targetsURL string
	client                  *http.Client
	opts                    HTTPOptions
}

// NewHTTPSource returns a Source fetching "<metadataURL>/[<version>.]<role>.json"
// and "<targetsURL>/<target path>" with the default HTTPOptions and client
// (nil: a new client, see HTTPOptions.Client).
func NewHTTPSource(metadataURL, targetsURL string, client *http.Client) Source {
	s, err := NewHTTPSourceWithOptions(metadataURL, targetsURL, HTTPOptions{Client: client})
	if err != nil {
		panic("internal error: default HTTP options refused: " + err.Error())
	}
	return s
}

// NewHTTPSourceWithOptions returns a Source like NewHTTPSource's, whose
// reads are bounded as opts says: each metadata file by a deadline, every
// response by a minimum-throughput rule. A file that breaks either fails
// with an error wrapping ErrSlowRetrieval.
func NewHTTPSourceWithOptions(metadataURL, targetsURL string, opts HTTPOptions) (Source, error) {
	if opts.MetadataTimeout < 0 || opts.Throughput.Window < 0 {
		return nil, fmt.Errorf("invalid HTTP options: negative metadata timeout %v or throughput window %v", opts.MetadataTimeout, opts.Throughput.Window)
	}
	if opts.MetadataTimeout == 0 {
		opts.MetadataTimeout = DefaultMetadataTimeout
	}
	client := opts.Client
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
	return &httpSource{metadataURL: withSlash(metadataURL), targetsURL: withSlash(targetsURL), client: client, opts: opts}, nil
}

func withSlash(u string) string {
	if u == "" || strings.HasSuffix(u, "/") {
		return u
	}
	return u + "/"
}

// watchedBody is one response read under a Watchdog (whose clock runs only
// inside Read) and, for metadata, a deadline.
type watchedBody struct {
	parent context.Context // the caller's context
	ctx    context.Context // parent with the file's deadline, if any
	stop   context.CancelFunc
	wd     *Watchdog
	body   io.ReadCloser

	contentLength int64 // the server's claim, -1 if unknown
}

// byteRange is the n bytes from off of a length-byte file (ValidRange).
type byteRange struct{ off, n, length int64 }

// open GETs u, or the range rng of it if rng is not nil, with the
// throughput rule and, if timeout > 0, a deadline for the whole file. The
// returned body must be closed.
func (s *httpSource) open(ctx context.Context, u string, timeout time.Duration, rng *byteRange) (*watchedBody, error) {
	b := &watchedBody{parent: ctx, ctx: ctx, stop: func() {}}
	if timeout > 0 {
		b.ctx, b.stop = context.WithTimeoutCause(ctx, timeout,
			fmt.Errorf("%w: %q took longer than %v: %w", ErrSlowRetrieval, u, timeout, context.DeadlineExceeded))
	}
	rctx, wd := NewWatchdog(b.ctx, s.opts.Throughput)
	b.wd = wd
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u, nil)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("failed to build request: %w", err)
	}
	if rng != nil {
		req.Header.Set("Range", RangeHeader(rng.off, rng.n))
	}
	resp, err := s.client.Do(req)
	wd.Pause()
	if err != nil {
		err = b.why(err)
		b.Close()
		return nil, fmt.Errorf("failed to fetch %q: %w", u, err)
	}
	b.body = resp.Body
	switch {
	case rng != nil:
		if err := CheckRangeResponse(resp, rng.off, rng.n, rng.length); err != nil {
			b.Close()
			return nil, fmt.Errorf("failed to fetch %q: %w", u, err)
		}
	case resp.StatusCode == http.StatusNotFound:
		b.Close()
		return nil, fmt.Errorf("failed to fetch %q: %w (HTTP 404)", u, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		b.Close()
		return nil, fmt.Errorf("failed to fetch %q: HTTP status %d", u, resp.StatusCode)
	}
	b.contentLength = resp.ContentLength
	return b, nil
}

// why says that a read failed because it was too slow, if it was.
func (b *watchedBody) why(err error) error {
	if werr := b.wd.Err(); werr != nil {
		return werr
	}
	if perr := b.parent.Err(); perr == nil {
		if c := context.Cause(b.ctx); errors.Is(c, ErrSlowRetrieval) {
			return c
		}
	} else if err == io.EOF {
		// The transport can end a cancelled response with io.EOF: the
		// caller's cancellation or deadline is the real reason.
		return fmt.Errorf("response cut short: %w", perr)
	}
	return err
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.wd.Resume()
	n, err := b.body.Read(p)
	b.wd.Add(n)
	b.wd.Pause()
	if err != nil {
		// A response cut by the watchdog or the deadline can end in what
		// looks like a clean io.EOF: ask why for every error.
		err = b.why(err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	var err error
	if b.body != nil {
		err = b.body.Close()
	}
	b.wd.Stop()
	b.stop()
	return err
}

func (s *httpSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	if s.metadataURL == "" {
		return nil, fmt.Errorf("no metadata URL configured")
	}
	name := roleFileName(role)
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	b, err := s.open(ctx, s.metadataURL+name, s.opts.MetadataTimeout, nil)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if cl := b.contentLength; cl > maxLength {
		return nil, fmt.Errorf("%s: %w: Content-Length %d > %d", name, ErrTooLarge, cl, maxLength)
	}
	return readLimited(name, b, maxLength)
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
	return s.open(ctx, s.targetsURL+p, 0, nil)
}

// OpenTargetRange implements RangeSource with one Range request, which must
// be answered as CheckRangeResponse says (a server that ignores Range is
// refused, not read to the range). It does not resume a dropped response:
// the agent's HTTPSource does.
func (s *httpSource) OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error) {
	if err := ValidRange(length, off, n); err != nil {
		return nil, err
	}
	if s.targetsURL == "" {
		return nil, fmt.Errorf("no targets URL configured")
	}
	p, err := targetURLPath(targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	b, err := s.open(ctx, s.targetsURL+p, 0, &byteRange{off, n, length})
	if err != nil {
		return nil, err
	}
	return &rangeBody{ReadCloser: b, left: n}, nil
}

// MapSource serves metadata and targets from memory, e.g. an offline bundle.
// Roots holds root metadata by version; Metadata holds every other role by
// role name ("timestamp", "snapshot", "targets", delegated names) whatever
// version is asked for (the client checks versions); Target opens a target
// by path (nil: no targets). Ranges (RangeSource) are served from targets
// whose reader is an io.Seeker, and refused with ErrRange from others.
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

// OpenTargetRange implements RangeSource.
func (m *MapSource) OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error) {
	if err := ValidRange(length, off, n); err != nil {
		return nil, err
	}
	rc, err := m.OpenTarget(ctx, targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	return seekRange(rc, targetPath, length, off, n)
}

// trustedSource serves the top-level metadata a store already trusts
// (Store names, see Client), and the delegated roles and targets of
// another source.
type trustedSource struct {
	store Store
	src   Source
}

// TrustedSource returns a Source that offers the root, timestamp, snapshot
// and targets metadata already in store (a client refreshing from it
// re-verifies what it trusts and finds nothing newer), and the delegated
// roles and targets of src, which the client verifies against the trusted
// snapshot as always. It lets an offline bundle whose metadata is older
// than the device's be installed when the metadata the device trusts still
// lists the bundle's release: the release is looked up in the trusted
// metadata, and the payload comes from the bundle.
//
// The returned source is a RangeSource when src is one.
func TrustedSource(store Store, src Source) Source {
	t := &trustedSource{store: store, src: src}
	if rs, ok := src.(RangeSource); ok {
		return &trustedRangeSource{trustedSource: t, rs: rs}
	}
	return t
}

// trustedRangeSource is a trustedSource whose source serves ranges.
type trustedRangeSource struct {
	*trustedSource
	rs RangeSource
}

func (t *trustedRangeSource) OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error) {
	return t.rs.OpenTargetRange(ctx, targetPath, hashPrefix, length, off, n)
}

func (t *trustedSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	name := roleFileName(role)
	switch role {
	case RoleRoot:
		name = rootHistoryName(version)
	case RoleTimestamp, RoleSnapshot, RoleTargets:
	default:
		return t.src.FetchMetadata(ctx, role, version, maxLength)
	}
	data, err := t.store.Get(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err == nil && int64(len(data)) > maxLength {
		err = fmt.Errorf("%s: %w: %d > %d bytes", name, ErrTooLarge, len(data), maxLength)
	}
	return data, err
}

func (t *trustedSource) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	return t.src.OpenTarget(ctx, targetPath, hashPrefix)
}
