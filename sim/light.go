package sim

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/verify"
)

// Limits of light devices.
const (
	// MaxLightMetadataSize bounds a director metadata file a light device
	// reads (the agent's limit for the director's snapshot and targets).
	MaxLightMetadataSize = agent.MaxDirectorMetadataSize
	// MaxLightPayloadSize bounds a payload a light device downloads (it
	// hashes it and discards it).
	MaxLightPayloadSize = 64 << 20
	// LightRequestTimeout bounds one request of a light device.
	LightRequestTimeout = 60 * time.Second
)

// LightOptions configure a light fleet (see NewLight).
type LightOptions struct {
	// Server is the https:// URL of the update server; ServerCA its CA
	// certificate(s) in PEM; Token the enrollment token.
	Server   string
	ServerCA []byte
	Token    string
	// First is the index of the first device (devices First..First+Devices-1;
	// a fleet split over processes gives each a range); Devices the number
	// of devices (1..MaxDevices).
	First, Devices int
	// FailRate is the probability, per install, that a device reports a
	// roll-back instead of a commit, drawn from a generator seeded by Seed
	// and the device's index.
	FailRate float64
	Seed     uint64
	// Model, HWRev, Product, Channel and Version describe every device
	// (Version: the release it runs at enrollment).
	Model   string
	HWRev   uint32
	Product string
	Channel string
	Version string
	// ConsistentSnapshot: the image repository names targets
	// "<sha256>.<name>" (its root's consistent_snapshot).
	ConsistentSnapshot bool
	// Concurrency bounds enrollments and poll cycles in flight (0:
	// DefaultConcurrency).
	Concurrency int
	// PollInterval is the poll interval until the server sends its own
	// (0: DefaultPollInterval); MaxBackoff caps the backoff after failed
	// cycles (0: DefaultMaxBackoff).
	PollInterval time.Duration
	MaxBackoff   time.Duration
	// SessionCache is the number of TLS sessions kept for resumption, one
	// per device at most (0: one per device; negative: none).
	SessionCache int
	// HoldPolls keeps the enrolled devices from polling until StartPolling
	// (enrollment and check-ins measured apart).
	HoldPolls bool
	// Logger receives the fleet's log (nil: discarded).
	Logger *slog.Logger
}

func (o *LightOptions) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(format, args...))
	}
	switch {
	case !strings.HasPrefix(o.Server, "https://"):
		return bad("server must be an https:// URL")
	case len(o.ServerCA) == 0:
		return bad("the server CA is required")
	case o.Token == "":
		return bad("an enrollment token is required")
	case o.Devices < 1 || o.Devices > MaxDevices || o.First < 0 || o.First > MaxDevices:
		return bad("devices %d (first %d) out of range [1, %d]", o.Devices, o.First, MaxDevices)
	case !(o.FailRate >= 0 && o.FailRate <= 1):
		return bad("fail rate %v out of range [0, 1]", o.FailRate)
	case o.Model == "" || o.Product == "" || o.Version == "":
		return bad("model, product and version are required")
	case o.Concurrency < 0 || o.PollInterval < 0 || o.MaxBackoff < 0:
		return bad("negative concurrency, poll interval or backoff")
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.SessionCache == 0 {
		o.SessionCache = o.Devices
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// LightFleet is a fleet of light devices. Create it with NewLight, then
// Run it.
type LightFleet struct {
	opts     LightOptions
	base     string
	roots    *x509.CertPool
	sessions tls.ClientSessionCache // nil: no resumption

	mu      sync.Mutex
	devices []*lightDevice
	sched   *schedule[*lightDevice]
	release chan struct{} // closed by StartPolling
	once    sync.Once
	start   time.Time

	enrollStart            time.Time
	enrollDone             atomic.Int64 // unix nanoseconds when the last device enrolled
	enrolled               atomic.Int64
	polls, errs, requests  atomic.Int64
	installs, commits, rbs atomic.Int64
	checkinLat, enrollLat  Histogram
	fetchLat, statusLat    Histogram
	lastErrMu              sync.Mutex
	lastErr                string
	handshakes, resumed    atomic.Int64
}

// lightDevice is one light device: its identity, version and schedule
// (about 1 KiB with its key and certificate).
type lightDevice struct {
	idx      int32
	slot     byte // deviceapi.SlotA or SlotB's first byte
	failNext bool
	key      []byte // raw P-256 private key
	cert     []byte // DER client certificate
	id       string // device ID from the enrollment
	version  string
	rejected string // a version this device rolled back; not retried
	backoff  time.Duration
	fails    *mrand.PCG // the failure draws
}

// NewLight validates opts and returns a light fleet: devices that hold only
// their identity (a P-256 key and the certificate the server's enrollment
// API issued), their version and schedule, and speak the real device API
// over mutual TLS. On an assignment they fetch the director's timestamp,
// snapshot and targets and the assigned payload, as an agent does, but
// check only the payload's length and SHA-256 against the director's
// targets (no signatures), then report downloading, installed and
// committed (or rolled_back). Devices are provisioned by Run.
func NewLight(opts LightOptions) (*LightFleet, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(opts.ServerCA) {
		return nil, fmt.Errorf("%w: the server CA holds no PEM certificate", ErrOptions)
	}
	f := &LightFleet{opts: opts, base: strings.TrimSuffix(opts.Server, "/"), roots: roots,
		sched: newSchedule[*lightDevice](), release: make(chan struct{}), devices: make([]*lightDevice, opts.Devices)}
	if opts.SessionCache > 0 {
		f.sessions = tls.NewLRUClientSessionCache(opts.SessionCache)
	}
	return f, nil
}

// StartPolling lets the devices of a fleet with HoldPolls poll once they
// are enrolled (their first polls spread over one poll interval).
func (f *LightFleet) StartPolling() { f.once.Do(func() { close(f.release) }) }

// deviceSessions keys the shared session cache by device: a session is
// only ever resumed with the identity that created it.
type deviceSessions struct {
	c   tls.ClientSessionCache
	key string
}

func (s deviceSessions) Get(k string) (*tls.ClientSessionState, bool) { return s.c.Get(s.key + k) }
func (s deviceSessions) Put(k string, cs *tls.ClientSessionState)     { s.c.Put(s.key+k, cs) }

// client returns an HTTP client for one poll cycle of d: one keep-alive
// connection (HTTP/1.1), d's certificate (none before enrollment), TLS
// 1.2 or later against the server CA, its session resumed when cached.
// Close its idle connections at the end of the cycle.
func (f *LightFleet) client(d *lightDevice) (*http.Client, *http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: f.roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			f.handshakes.Add(1)
			if cs.DidResume {
				f.resumed.Add(1)
			}
			return nil
		}}
	if d.cert != nil {
		key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d.key)
		if err != nil {
			return nil, nil, fmt.Errorf("internal error: %w", err)
		}
		cert := &tls.Certificate{Certificate: [][]byte{d.cert}, PrivateKey: key}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		if f.sessions != nil {
			tc.ClientSessionCache = deviceSessions{f.sessions, fmt.Sprint(d.idx, "/")}
		}
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: agent.DialTimeout}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   agent.TLSHandshakeTimeout,
		ResponseHeaderTimeout: agent.ResponseHeaderTimeout,
		MaxIdleConnsPerHost:   1,
		MaxConnsPerHost:       1,
		DisableCompression:    true,
	}
	cl := &http.Client{Transport: tr, Timeout: LightRequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return cl, tr, nil
}

// do sends one request and reads its body within limit; want is the
// expected status. It records the latency in h.
func (f *LightFleet) do(ctx context.Context, cl *http.Client, method, url string, body any, want int, limit int64, h *Histogram) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, 0, fmt.Errorf("internal error: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t0 := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	h.Record(time.Since(t0))
	f.requests.Add(1)
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if int64(len(data)) > limit {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: response larger than %d bytes", method, url, limit)
	}
	if resp.StatusCode != want {
		return data, resp.StatusCode, fmt.Errorf("%s %s: HTTP status %d: %q", method, url, resp.StatusCode, truncateText(data, 200))
	}
	return data, resp.StatusCode, nil
}

func truncateText(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// enroll creates d's key and enrolls it through the enrollment API.
func (f *LightFleet) enroll(ctx context.Context, d *lightDevice) error {
	o := &f.opts
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "airlock-device", Organization: []string{o.Product}},
	}, key)
	if err != nil {
		return err
	}
	req := deviceapi.EnrollRequest{Token: o.Token, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
		Model: o.Model, HWRev: o.HWRev, Product: o.Product, Channel: o.Channel, CurrentVersion: o.Version}
	if err := req.Validate(); err != nil {
		return err
	}
	cl, tr, err := f.client(d)
	if err != nil {
		return err
	}
	defer tr.CloseIdleConnections()
	data, _, err := f.do(ctx, cl, http.MethodPost, f.base+deviceapi.PathEnroll, req, http.StatusCreated, deviceapi.MaxResponseSize, &f.enrollLat)
	if err != nil {
		return err
	}
	var resp deviceapi.EnrollResponse
	if err := deviceapi.DecodeResponse(data, &resp); err != nil {
		return err
	}
	blk, rest := pem.Decode([]byte(resp.Certificate))
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return errors.New("enrollment: the certificate is not one PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("enrollment: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("enrollment: the certificate is not for this device's key")
	}
	if resp.DeviceID == "" || len(resp.DeviceID) > deviceapi.MaxStringLength || !deviceapi.ValidText(resp.DeviceID, false) {
		return fmt.Errorf("enrollment: invalid device_id %q", truncateText([]byte(resp.DeviceID), 64))
	}
	raw, err := key.Bytes()
	if err != nil {
		return err
	}
	d.key, d.cert, d.id = raw, blk.Bytes, resp.DeviceID
	return nil
}

// Run enrolls the devices (Concurrency at a time), then runs poll cycles
// until ctx ends. It returns nil when ctx ends after enrollment, and the
// first enrollment error otherwise.
func (f *LightFleet) Run(ctx context.Context) error {
	o := &f.opts
	f.mu.Lock()
	f.enrollStart = time.Now()
	f.mu.Unlock()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(o.Concurrency, o.Devices) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.Devices || ctx.Err() != nil {
					return
				}
				idx := o.First + i
				d := &lightDevice{idx: int32(idx), slot: 'a', version: o.Version, fails: mrand.NewPCG(o.Seed, uint64(idx))}
				d.failNext = mrand.New(d.fails).Float64() < o.FailRate
				var err error
				for try := range 5 {
					if err = f.enroll(ctx, d); err == nil || ctx.Err() != nil {
						break
					}
					f.setErr(err)
					sleepCtx(ctx, time.Duration(try+1)*time.Second)
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("device %d: enrollment failed: %w", idx, err) })
					next.Store(int64(o.Devices))
					return
				}
				f.mu.Lock()
				f.devices[i] = d
				f.mu.Unlock()
				f.enrolled.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.enrollDone.Store(time.Now().UnixNano())
	if o.HoldPolls {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil
		}
	}

	f.mu.Lock()
	f.start = time.Now()
	f.mu.Unlock()
	jit := mrand.New(mrand.NewPCG(o.Seed^jitterStream, uint64(o.First)))
	for _, d := range f.devices {
		f.sched.push(d, f.start.UnixNano()+jit.Int64N(int64(o.PollInterval)))
	}
	o.Logger.Info("light fleet enrolled; polling", "devices", o.Devices, "concurrency", o.Concurrency)

	work := make(chan *lightDevice)
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(o.Seed^jitterStream, uint64(o.First)+1))
			for d := range work {
				wait := f.cycle(ctx, d)
				if ctx.Err() != nil {
					continue
				}
				j := 1 + agent.Jitter*(2*rng.Float64()-1)
				f.sched.push(d, time.Now().Add(time.Duration(float64(wait)*j)).UnixNano())
			}
		}()
	}
	f.sched.run(ctx, work)
	close(work)
	wg.Wait()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (f *LightFleet) setErr(err error) {
	f.lastErrMu.Lock()
	f.lastErr = err.Error()
	f.lastErrMu.Unlock()
}

// cycle runs one poll cycle of d on one connection and returns the wait
// until its next one.
func (f *LightFleet) cycle(ctx context.Context, d *lightDevice) time.Duration {
	iv, err := f.poll(ctx, d)
	if ctx.Err() != nil {
		return 0
	}
	f.polls.Add(1)
	if err != nil {
		f.errs.Add(1)
		f.setErr(fmt.Errorf("device %d: %w", d.idx, err))
		d.backoff = min(max(2*d.backoff, time.Second), f.opts.MaxBackoff)
		return d.backoff
	}
	d.backoff = 0
	if iv == 0 {
		iv = f.opts.PollInterval
	}
	return iv
}

func (f *LightFleet) poll(ctx context.Context, d *lightDevice) (time.Duration, error) {
	cl, tr, err := f.client(d)
	if err != nil {
		return 0, err
	}
	defer tr.CloseIdleConnections()
	f.mu.Lock()
	version, slot := d.version, string(d.slot)
	f.mu.Unlock()
	req := deviceapi.CheckinRequest{CurrentVersion: version, SecurityCounter: 1, State: deviceapi.StateIdle, Slot: slot}
	if err := req.Validate(); err != nil {
		return 0, err
	}
	data, _, err := f.do(ctx, cl, http.MethodPost, f.base+deviceapi.PathCheckin, req, http.StatusOK, deviceapi.MaxResponseSize, &f.checkinLat)
	if err != nil {
		return 0, err
	}
	var resp deviceapi.CheckinResponse
	if err := deviceapi.DecodeResponse(data, &resp); err != nil {
		return 0, err
	}
	iv, err := deviceapi.PollInterval(resp.PollIntervalSeconds)
	if err != nil {
		return 0, err
	}
	a := resp.Assignment
	if a == nil {
		return iv, nil
	}
	_, v, ok := strings.Cut(a.Release, "@")
	if !ok || v == version || v == d.rejected {
		return iv, nil
	}
	return iv, f.update(ctx, cl, d, resp.Repository)
}

// tufMeta is the part of director metadata a light device reads.
type tufMeta struct {
	Signed struct {
		Type string `json:"_type"`
		Meta map[string]struct {
			Version int64 `json:"version"`
		} `json:"meta"`
		Targets map[string]struct {
			Length int64             `json:"length"`
			Hashes map[string]string `json:"hashes"`
			Custom json.RawMessage   `json:"custom"`
		} `json:"targets"`
	} `json:"signed"`
}

func (f *LightFleet) fetchMeta(ctx context.Context, cl *http.Client, name, wantType string) (*tufMeta, error) {
	data, _, err := f.do(ctx, cl, http.MethodGet, f.base+deviceapi.PathDirector+name, nil, http.StatusOK, MaxLightMetadataSize, &f.fetchLat)
	if err != nil {
		return nil, err
	}
	m, err := parseMeta(data, wantType)
	if err != nil {
		return nil, fmt.Errorf("director %s: %w", name, err)
	}
	return m, nil
}

// parseMeta reads the fields a light device uses from director metadata
// of role wantType (unverified: a light device trusts the server), within
// MaxLightMetadataSize.
func parseMeta(data []byte, wantType string) (*tufMeta, error) {
	if len(data) > MaxLightMetadataSize {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), MaxLightMetadataSize)
	}
	var m tufMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if m.Signed.Type != wantType {
		return nil, fmt.Errorf("_type %q, want %q", truncateText([]byte(m.Signed.Type), 32), wantType)
	}
	return &m, nil
}

// update fetches the director's metadata and the assigned payload, checks
// the payload's length and SHA-256 against the director's targets, and
// reports the install.
func (f *LightFleet) update(ctx context.Context, cl *http.Client, d *lightDevice, repo deviceapi.Repository) error {
	ts, err := f.fetchMeta(ctx, cl, "timestamp.json", "timestamp")
	if err != nil {
		return err
	}
	sv := ts.Signed.Meta["snapshot.json"].Version
	if sv < 1 {
		return errors.New("director timestamp names no snapshot version")
	}
	snap, err := f.fetchMeta(ctx, cl, fmt.Sprint(sv, ".snapshot.json"), "snapshot")
	if err != nil {
		return err
	}
	tv := snap.Signed.Meta["targets.json"].Version
	if tv < 1 {
		return errors.New("director snapshot names no targets version")
	}
	tg, err := f.fetchMeta(ctx, cl, fmt.Sprint(tv, ".targets.json"), "targets")
	if err != nil {
		return err
	}
	if len(tg.Signed.Targets) != 1 {
		return nil // nothing (or too much) assigned: keep running
	}
	var tpath string
	for p := range tg.Signed.Targets {
		tpath = p
	}
	t := tg.Signed.Targets[tpath]
	var custom struct {
		Director struct {
			Device string `json:"device"`
		} `json:"airlock_director"`
	}
	if err := json.Unmarshal(t.Custom, &custom); err != nil {
		return fmt.Errorf("director target %q: custom: %w", tpath, err)
	}
	if custom.Director.Device != d.id {
		return fmt.Errorf("director target %q is not assigned to this device (%s)", tpath, d.id)
	}
	if t.Length < 0 || t.Length > MaxLightPayloadSize {
		return fmt.Errorf("director target %q: length %d out of range [0, %d]", tpath, t.Length, MaxLightPayloadSize)
	}
	sum, err := hex.DecodeString(t.Hashes["sha256"])
	if err != nil || len(sum) != sha256.Size {
		return fmt.Errorf("director target %q: sha256 %q is not %d hex bytes", tpath, truncateText([]byte(t.Hashes["sha256"]), 80), sha256.Size)
	}
	_, ver, _, err := release.ParseTargetPath(tpath)
	if err != nil {
		return fmt.Errorf("director target: %w", err)
	}
	version := ver.String()
	f.status(ctx, cl, deviceapi.StateDownloading, version, "light simulated device: downloading "+tpath)

	tgts := repo.TargetsURL
	if tgts == "" {
		tgts = deviceapi.PathRepoTargets
	}
	if strings.HasPrefix(tgts, "/") {
		tgts = f.base + tgts
	}
	name := tpath
	if f.opts.ConsistentSnapshot {
		dir, base := path.Split(tpath)
		name = dir + hex.EncodeToString(sum) + "." + base
	}
	payload, _, err := f.do(ctx, cl, http.MethodGet, strings.TrimSuffix(tgts, "/")+"/"+name, nil, http.StatusOK, t.Length, &f.fetchLat)
	if err != nil {
		return err
	}
	if got := sha256.Sum256(payload); int64(len(payload)) != t.Length || !bytes.Equal(got[:], sum) {
		f.status(ctx, cl, deviceapi.StateFailed, version, "light simulated device: payload does not match the director's target")
		return fmt.Errorf("payload %s does not match the director's target", tpath)
	}
	f.installs.Add(1)
	if d.failNext {
		f.rbs.Add(1)
		f.mu.Lock()
		d.rejected = version
		f.mu.Unlock()
		f.status(ctx, cl, deviceapi.StateRolledBack, version, "light simulated device: injected health-check failure")
	} else {
		f.status(ctx, cl, deviceapi.StateInstalled, version, "light simulated device: installed")
		f.commits.Add(1)
		f.mu.Lock()
		d.version = version
		d.slot = 'a' + 'b' - d.slot
		f.mu.Unlock()
		f.status(ctx, cl, deviceapi.StateCommitted, version, "light simulated device: committed")
	}
	d.failNext = mrand.New(d.fails).Float64() < f.opts.FailRate
	return nil
}

// status posts a status report; a failure is counted and otherwise
// ignored (best effort; the next check-in states the version).
func (f *LightFleet) status(ctx context.Context, cl *http.Client, kind, version, msg string) {
	r := deviceapi.StatusReport{Kind: kind, Version: version, Message: msg}
	if err := r.Validate(); err != nil {
		f.setErr(err)
		return
	}
	if _, _, err := f.do(ctx, cl, http.MethodPost, f.base+deviceapi.PathStatus, r, http.StatusNoContent, deviceapi.MaxResponseSize, &f.statusLat); err != nil {
		f.errs.Add(1)
		f.setErr(err)
	}
}

// LightStats is a snapshot of a light fleet; its JSON form carries it
// between processes (see Merge).
type LightStats struct {
	Devices    int            `json:"devices"`
	Enrolled   int64          `json:"enrolled"`
	EnrollSec  float64        `json:"enroll_seconds"` // first enrollment to last (0: not done)
	Versions   map[string]int `json:"versions"`
	Polls      int64          `json:"polls"`
	Errors     int64          `json:"errors"`
	Requests   int64          `json:"requests"`
	Installs   int64          `json:"installs"`
	Commits    int64          `json:"commits"`
	RollBacks  int64          `json:"rollbacks"`
	Handshakes int64          `json:"handshakes"`
	Resumed    int64          `json:"resumed"` // TLS handshakes that resumed a session
	LastError  string         `json:"last_error,omitempty"`
	Checkin    *Histogram     `json:"checkin"`
	Enroll     *Histogram     `json:"enroll"`
	Fetch      *Histogram     `json:"fetch"`
	Status     *Histogram     `json:"status"`
}

// Stats returns a snapshot (safe while Run runs).
func (f *LightFleet) Stats() LightStats {
	s := LightStats{Devices: f.opts.Devices, Versions: map[string]int{}, Enrolled: f.enrolled.Load(),
		Polls: f.polls.Load(), Errors: f.errs.Load(), Requests: f.requests.Load(),
		Installs: f.installs.Load(), Commits: f.commits.Load(), RollBacks: f.rbs.Load(),
		Handshakes: f.handshakes.Load(), Resumed: f.resumed.Load(),
		Checkin: &Histogram{}, Enroll: &Histogram{}, Fetch: &Histogram{}, Status: &Histogram{}}
	f.mu.Lock()
	for _, d := range f.devices {
		if d != nil {
			s.Versions[d.version]++
		}
	}
	if done := f.enrollDone.Load(); done != 0 {
		s.EnrollSec = time.Duration(done - f.enrollStart.UnixNano()).Seconds()
	}
	f.mu.Unlock()
	f.lastErrMu.Lock()
	s.LastError = f.lastErr
	f.lastErrMu.Unlock()
	s.Checkin.Merge(&f.checkinLat)
	s.Enroll.Merge(&f.enrollLat)
	s.Fetch.Merge(&f.fetchLat)
	s.Status.Merge(&f.statusLat)
	return s
}

// Merge adds o (another process's part of the fleet) to s; EnrollSec
// becomes the longest.
func (s *LightStats) Merge(o LightStats) error {
	s.Devices += o.Devices
	s.Enrolled += o.Enrolled
	s.EnrollSec = max(s.EnrollSec, o.EnrollSec)
	if s.Versions == nil {
		s.Versions = map[string]int{}
	}
	for v, n := range o.Versions {
		s.Versions[v] += n
	}
	s.Polls += o.Polls
	s.Errors += o.Errors
	s.Requests += o.Requests
	s.Installs += o.Installs
	s.Commits += o.Commits
	s.RollBacks += o.RollBacks
	s.Handshakes += o.Handshakes
	s.Resumed += o.Resumed
	if o.LastError != "" {
		s.LastError = o.LastError
	}
	for _, p := range []struct {
		dst **Histogram
		src *Histogram
	}{
		{&s.Checkin, o.Checkin}, {&s.Enroll, o.Enroll}, {&s.Fetch, o.Fetch}, {&s.Status, o.Status}} {
		if *p.dst == nil {
			*p.dst = &Histogram{}
		}
		if p.src != nil {
			if err := (*p.dst).Merge(p.src); err != nil {
				return err
			}
		}
	}
	return nil
}

// String formats the stats on one line.
func (s LightStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "devices=%d enrolled=%d polls=%d errors=%d installs=%d committed=%d rolled_back=%d versions:",
		s.Devices, s.Enrolled, s.Polls, s.Errors, s.Installs, s.Commits, s.RollBacks)
	for _, v := range slices.Sorted(maps.Keys(s.Versions)) {
		fmt.Fprintf(&b, " %s=%d", v, s.Versions[v])
	}
	if s.Checkin != nil {
		fmt.Fprintf(&b, " checkin(%v)", s.Checkin)
	}
	return b.String()
}

// Report writes Stats to w every interval until ctx ends, then once more.
func (f *LightFleet) Report(ctx context.Context, w io.Writer, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w, f.Stats())
			return
		case <-t.C:
			fmt.Fprintln(w, f.Stats())
		}
	}
}

// LightRelease returns what light devices need from a repository's root
// and an offline bundle: the bundle's product and version, and the root's
// consistent_snapshot. Nothing is verified (light devices trust the
// server); the root is read within MaxLightMetadataSize.
func LightRelease(root, bundleData []byte) (product, version string, consistent bool, err error) {
	src, err := verify.OpenBundle(bytes.NewReader(bundleData))
	if err != nil {
		return "", "", false, err
	}
	p, v, _, err := release.ParseTargetPath(src.TargetPath())
	if err != nil {
		return "", "", false, err
	}
	if len(root) > MaxLightMetadataSize {
		return "", "", false, fmt.Errorf("root: %d bytes, more than %d", len(root), MaxLightMetadataSize)
	}
	var r struct {
		Signed struct {
			Type               string `json:"_type"`
			ConsistentSnapshot bool   `json:"consistent_snapshot"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(root, &r); err != nil || r.Signed.Type != "root" {
		return "", "", false, fmt.Errorf("root: not TUF root metadata (%v)", err)
	}
	return p.String(), v.String(), r.Signed.ConsistentSnapshot, nil
}
