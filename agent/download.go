package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/trust"
)

// Download limits and defaults.
const (
	// DefaultMaxResumeAttempts bounds consecutive failed attempts to resume
	// one download (an attempt that delivers bytes resets the count, unless
	// it was cut as too slow without meeting the minimum rate once).
	DefaultMaxResumeAttempts = 5
	// MaxResumes bounds the resumes of one download in total.
	MaxResumes = 100
	// DefaultResumeBackoff is the first wait before a resume; it doubles
	// per consecutive failure up to MaxResumeBackoff.
	DefaultResumeBackoff = time.Second
	MaxResumeBackoff     = time.Minute
)

var (
	// ErrResume is wrapped when a dropped download cannot be resumed safely
	// (the server answered 200 after bytes were received, or a mismatching
	// Content-Range, the file changed, or the resume attempts are
	// exhausted). The install attempt fails; the next poll starts over. A
	// ranged read whose resume is refused by trust.CheckRangeResponse
	// wraps trust.ErrRange too.
	ErrResume = errors.New("download cannot be resumed")
	// ErrStalled is wrapped, together with trust.ErrSlowRetrieval, when a
	// response broke the minimum-throughput rule: no byte, or fewer than
	// MinThroughput×StallTimeout bytes, within a StallTimeout.
	ErrStalled = errors.New("download stalled")
	// ErrDeadline is wrapped, together with context.DeadlineExceeded, when
	// the deadline of the download's context (the agent's
	// download_timeout) passed while the payload was being read.
	ErrDeadline = errors.New("download deadline passed")
)

// DownloadOptions tune the resumable downloads of an HTTPSource and the
// limits of its metadata reads.
type DownloadOptions struct {
	// StallTimeout is the window of the minimum-throughput rule of every
	// response, metadata and payload (trust.Throughput): a response that
	// delivers no byte, or fewer than MinThroughput×StallTimeout bytes,
	// within a StallTimeout is cut; a payload is then resumed (0 or
	// negative: DefaultStallTimeout).
	StallTimeout time.Duration
	// MinThroughput is the minimum rate in bytes per second (0:
	// trust.DefaultMinThroughput; negative: none, only the stall rule).
	MinThroughput int64
	// MetadataTimeout bounds the retrieval of one metadata file (0 or
	// negative: trust.DefaultMetadataTimeout).
	MetadataTimeout time.Duration
	// MaxResumeAttempts bounds consecutive failed resume attempts (0:
	// DefaultMaxResumeAttempts; negative: never resume).
	MaxResumeAttempts int
	// ResumeBackoff is the first wait before a resume (0:
	// DefaultResumeBackoff).
	ResumeBackoff time.Duration
	// Progress, if not nil, is told about every target download.
	Progress Progress
	// Logf, if not nil, receives one line per resume.
	Logf func(format string, args ...any)
}

// HTTPSource is a trust.Source over HTTPS whose target downloads resume
// with Range requests after a dropped connection or a server restart. It
// is a trust.RangeSource: ranged reads resume too, inside their range.
// Metadata is fetched by trust.NewHTTPSourceWithOptions over the same
// client. Every response, metadata and payload, is under the same
// minimum-throughput rule (trust.Watchdog); each metadata file also under
// MetadataTimeout.
type HTTPSource struct {
	meta       trust.Source
	metaErr    error // from trust.NewHTTPSourceWithOptions (cannot happen: opts are normalized)
	targetsURL string
	client     *http.Client
	opts       DownloadOptions

	mu     sync.Mutex
	totals map[string]int64 // announced target lengths, for progress
}

var _ trust.RangeSource = (*HTTPSource)(nil)

// NewHTTPSource returns a source fetching metadata from metadataURL and
// targets from targetsURL with client.
func NewHTTPSource(metadataURL, targetsURL string, client *http.Client, opts DownloadOptions) *HTTPSource {
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.MetadataTimeout <= 0 {
		opts.MetadataTimeout = trust.DefaultMetadataTimeout
	}
	if opts.MaxResumeAttempts == 0 {
		opts.MaxResumeAttempts = DefaultMaxResumeAttempts
	}
	if opts.ResumeBackoff == 0 {
		opts.ResumeBackoff = DefaultResumeBackoff
	}
	if targetsURL != "" && !strings.HasSuffix(targetsURL, "/") {
		targetsURL += "/"
	}
	s := &HTTPSource{targetsURL: targetsURL, client: client, opts: opts, totals: map[string]int64{}}
	s.meta, s.metaErr = s.metadataAt(metadataURL)
	return s
}

// throughput is the minimum-throughput rule of every response: the window
// is the stall timeout, so that a silent response is cut after it, from
// the request on (no grace beyond it).
func (o DownloadOptions) throughput() trust.Throughput {
	return trust.Throughput{MinRate: o.MinThroughput, Window: o.StallTimeout, Grace: -1}
}

// metadataAt returns a source of the metadata at metadataURL (the image
// repository, or the director's) with this source's client, metadata
// deadline and throughput rule.
func (s *HTTPSource) metadataAt(metadataURL string) (trust.Source, error) {
	return trust.NewHTTPSourceWithOptions(metadataURL, s.targetsURL, trust.HTTPOptions{
		Client: s.client, MetadataTimeout: s.opts.MetadataTimeout, Throughput: s.opts.throughput(),
	})
}

// FetchMetadata implements trust.Source.
func (s *HTTPSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	if s.metaErr != nil {
		return nil, s.metaErr
	}
	return s.meta.FetchMetadata(ctx, role, version, maxLength)
}

// FetchLog implements trust.LogSource: the repository's transparency log,
// beside its metadata, with the metadata deadline and throughput rule.
func (s *HTTPSource) FetchLog(ctx context.Context, path string, maxLength int64) ([]byte, error) {
	ls, ok := s.meta.(trust.LogSource)
	if s.metaErr != nil || !ok {
		return nil, fmt.Errorf("log file %s: no log source: %w", path, trust.ErrNotFound)
	}
	return ls.FetchLog(ctx, path, maxLength)
}

// announce records the verified length of a target for progress output.
func (s *HTTPSource) announce(targetPath string, length int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.totals[targetPath] = length
}

// OpenTarget implements trust.Source: the returned stream resumes by itself.
// Bytes it returns are untrusted until the caller's pipeline verified them.
func (s *HTTPSource) OpenTarget(ctx context.Context, targetPath string, hashPrefix string) (io.ReadCloser, error) {
	r, err := s.reader(ctx, targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	r.announced = s.totals[targetPath]
	s.mu.Unlock()
	if err := r.open(); err != nil {
		return nil, err
	}
	if s.opts.Progress != nil {
		total := r.announced
		if total == 0 {
			total = r.total
		}
		s.opts.Progress.Start(targetPath, total)
	}
	return r, nil
}

// OpenTargetRange implements trust.RangeSource: the n bytes from off of the
// target, each response checked by trust.CheckRangeResponse (status 206,
// Content-Range start, end and total, Content-Length). After a dropped
// connection it asks for the rest of the range, bytes=(off+got)-(off+n-1),
// under the same resume limits, backoff and throughput rule as OpenTarget.
// It reports no Progress: the caller, which knows how many ranges it
// reads, does. The bytes are untrusted until the caller verified them (the
// signed hash tree): the reader guarantees their position and number only.
func (s *HTTPSource) OpenTargetRange(ctx context.Context, targetPath, hashPrefix string, length, off, n int64) (io.ReadCloser, error) {
	if err := trust.ValidRange(length, off, n); err != nil {
		return nil, err
	}
	r, err := s.reader(ctx, targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	r.first, r.n, r.total = off, n, length
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (s *HTTPSource) reader(ctx context.Context, targetPath, hashPrefix string) (*resumableReader, error) {
	if s.targetsURL == "" {
		return nil, errors.New("no targets URL configured")
	}
	p, err := targetURLPath(targetPath, hashPrefix)
	if err != nil {
		return nil, err
	}
	return &resumableReader{ctx: ctx, src: s, url: s.targetsURL + p}, nil
}

// targetURLPath builds the escaped URL path of a target (as trust does),
// inserting the consistent-snapshot hash prefix before the base name.
func targetURLPath(targetPath, hashPrefix string) (string, error) {
	segs := strings.Split(targetPath, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("%w: target path %q", trust.ErrInvalidName, targetPath)
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

// resumableReader is one target download, of the whole file or of the n
// bytes from first (a ranged read). off counts the bytes returned to the
// caller; a resume asks for exactly the bytes after them (up to the end of
// the range).
type resumableReader struct {
	ctx       context.Context
	src       *HTTPSource
	url       string
	announced int64
	first, n  int64 // a ranged read; n is 0 for the whole file

	body       io.ReadCloser
	wd         *trust.Watchdog // of the current request
	off        int64
	progressed bool  // the current response delivered bytes
	total      int64 // the first response's Content-Length (-1 if unknown); of a ranged read, the signed length
	validator  string
	resumes    int
	failures   int
	closed     bool
}

// open sends the first request (no Range unless a ranged read).
func (r *resumableReader) open() error {
	resp, err := r.do(0)
	if err != nil {
		if r.ctx.Err() != nil {
			return r.interrupted()
		}
		return err
	}
	if r.n > 0 {
		if err := trust.CheckRangeResponse(resp, r.first, r.n, r.total); err != nil {
			resp.Body.Close()
			r.stop()
			return fmt.Errorf("failed to fetch %q: %w", r.url, err)
		}
	} else if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		r.stop()
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("failed to fetch %q: %w (HTTP 404)", r.url, trust.ErrNotFound)
		}
		return fmt.Errorf("failed to fetch %q: HTTP status %d", r.url, resp.StatusCode)
	}
	r.start(resp)
	return nil
}

// start takes a 200 response as the whole file from byte 0, or the first
// 206 response of a ranged read.
func (r *resumableReader) start(resp *http.Response) {
	if r.n == 0 {
		r.total = resp.ContentLength
	}
	// If-Range needs a strong validator: a strong ETag, else Last-Modified.
	r.validator = ""
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		r.validator = et
	} else if lm := resp.Header.Get("Last-Modified"); lm != "" {
		r.validator = lm
	}
	r.body = resp.Body
}

// do sends a GET for the bytes from off on (to the end of a ranged read),
// under the throughput watchdog.
func (r *resumableReader) do(off int64) (*http.Response, error) {
	ctx, wd := trust.NewWatchdog(r.ctx, r.src.opts.throughput())
	r.wd = wd
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("failed to build request: %w", err)
	}
	if r.n > 0 {
		req.Header.Set("Range", trust.RangeHeader(r.first+off, r.n-off))
	} else if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	if off > 0 && r.validator != "" {
		req.Header.Set("If-Range", r.validator)
	}
	resp, err := r.src.client.Do(req)
	if err != nil {
		err = r.why(err)
		r.stop()
		return nil, fmt.Errorf("failed to fetch %q: %w", r.url, err)
	}
	// The watchdog's clock runs only while Read waits for the network,
	// not while the pipeline writes the slot.
	wd.Pause()
	return resp, nil
}

// why turns a cancellation by the watchdog into ErrStalled (wrapping
// trust.ErrSlowRetrieval).
func (r *resumableReader) why(err error) error {
	if r.wd != nil {
		if werr := r.wd.Err(); werr != nil {
			return fmt.Errorf("%w: %w", ErrStalled, werr)
		}
	}
	return err
}

// interrupted is the error once r.ctx is done: ErrDeadline if its
// deadline passed.
func (r *resumableReader) interrupted() error {
	err := r.ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: download of %q stopped at byte %d: %w", ErrDeadline, r.url, r.first+r.off, err)
	}
	return fmt.Errorf("download of %q interrupted at byte %d: %w", r.url, r.first+r.off, err)
}

func (r *resumableReader) stop() {
	if r.wd != nil {
		r.wd.Stop()
	}
}

func (r *resumableReader) closeBody() {
	if r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.stop()
}

// Read implements io.Reader. On a transport error it resumes (bounded);
// io.EOF is passed through: whether the stream was complete is for the
// pipeline's length check to say. A ranged read returns io.EOF after
// exactly its n bytes, never more; a body that ends before is resumed.
func (r *resumableReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read after close")
	}
	if r.n > 0 {
		if r.off >= r.n {
			return 0, io.EOF
		}
		p = p[:min(int64(len(p)), r.n-r.off)]
	}
	for {
		if r.body == nil {
			if err := r.resume(); err != nil {
				return 0, err
			}
		}
		r.wd.Resume()
		n, err := r.body.Read(p)
		r.wd.Add(n)
		r.wd.Pause()
		if err == io.EOF && (r.wd.Err() != nil || r.ctx.Err() != nil) {
			// The transport can end a response cancelled by the watchdog
			// or the deadline with what looks like a clean io.EOF.
			err = io.ErrUnexpectedEOF
		}
		if n > 0 {
			r.off += int64(n)
			r.progressed = true
			if r.src.opts.Progress != nil && r.n == 0 {
				r.src.opts.Progress.Update(r.off)
			}
		}
		if r.n > 0 {
			if r.off == r.n {
				return n, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
		}
		if err == nil || err == io.EOF {
			if err == io.EOF && r.src.opts.Progress != nil {
				r.src.opts.Progress.Done()
			}
			return n, err
		}
		// A transport error: the bytes so far were handed over; resume
		// after them on the next call (or now, if nothing was read).
		// Progress resets the failures, unless the attempt was cut for
		// being too slow without ever meeting the minimum rate: a trickle
		// must not buy endless resumes.
		if r.progressed && (r.wd.Err() == nil || r.wd.MetWindows() > 0) {
			r.failures = 0
		}
		r.progressed = false
		err = r.why(err)
		r.closeBody()
		if r.ctx.Err() != nil {
			return n, r.interrupted()
		}
		if r.src.opts.MaxResumeAttempts < 0 {
			return n, fmt.Errorf("download of %q failed at byte %d: %w", r.url, r.first+r.off, err)
		}
		r.failures++
		if r.src.opts.Logf != nil {
			r.src.opts.Logf("download of %s dropped at byte %d (%v); resuming", r.url, r.first+r.off, err)
		}
		if r.failures > r.src.opts.MaxResumeAttempts {
			return n, fmt.Errorf("%w: %q failed at byte %d after %d attempts: %w", ErrResume, r.url, r.first+r.off, r.failures, err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// resume waits (backoff), then asks for the bytes from r.off on. It
// accepts only 206 with a Content-Range starting at r.off whose total
// matches the first response, or, when no byte was received yet (r.off is
// 0, so no Range was asked for), a 200: the download restarts. A ranged
// read accepts only what trust.CheckRangeResponse accepts for the rest of
// its range.
func (r *resumableReader) resume() error {
	for {
		if r.resumes >= MaxResumes {
			return fmt.Errorf("%w: %q: more than MaxResumes %d resumes", ErrResume, r.url, MaxResumes)
		}
		wait := r.src.opts.ResumeBackoff << min(max(r.failures-1, 0), 16)
		wait = min(wait, MaxResumeBackoff)
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return r.interrupted()
		case <-t.C:
		}
		r.resumes++
		resp, err := r.do(r.off)
		if err == nil {
			return r.accept(resp)
		}
		if r.ctx.Err() != nil {
			return r.interrupted()
		}
		r.failures++
		if r.src.opts.Logf != nil {
			r.src.opts.Logf("resume of %s at byte %d failed: %v", r.url, r.first+r.off, err)
		}
		if r.failures > r.src.opts.MaxResumeAttempts {
			return fmt.Errorf("%w: %q at byte %d after %d attempts: %w", ErrResume, r.url, r.first+r.off, r.failures, err)
		}
	}
}

func (r *resumableReader) accept(resp *http.Response) error {
	fail := func(format string, args ...any) error {
		resp.Body.Close()
		r.stop()
		return fmt.Errorf("%w: %q at byte %d: %w", ErrResume, r.url, r.first+r.off, fmt.Errorf(format, args...))
	}
	if r.n > 0 {
		if err := trust.CheckRangeResponse(resp, r.first+r.off, r.n-r.off, r.total); err != nil {
			return fail("%w", err)
		}
		r.body = resp.Body
		return nil
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		if r.off == 0 {
			// Nothing was handed over yet: this is simply a new start.
			r.start(resp)
			return nil
		}
		return fail("the server sent the whole file again (no range support, or the file changed); the stream cannot continue")
	default:
		return fail("HTTP status %d", resp.StatusCode)
	}
	start, _, total, err := trust.ParseContentRange(resp.Header.Get("Content-Range"))
	if err != nil {
		return fail("%w", err)
	}
	if start != r.off {
		return fail("Content-Range starts at %d", start)
	}
	if r.total >= 0 && total != r.total {
		return fail("Content-Range total %d, the first response had %d (the file changed?)", total, r.total)
	}
	r.body = resp.Body
	return nil
}

// Close implements io.Closer.
func (r *resumableReader) Close() error {
	r.closed = true
	r.closeBody()
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
