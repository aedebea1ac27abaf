package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/objstore"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/director"
	"github.com/airlockfw/airlock/server/internal/metrics"
	"github.com/airlockfw/airlock/server/pki"
	"github.com/airlockfw/airlock/server/releases"
	"github.com/airlockfw/airlock/server/rollouts"
	"github.com/airlockfw/airlock/server/store"
)

// Defaults and limits of the HTTP layer.
const (
	// DefaultListen is the address Serve listens on when Config.Listen is empty.
	DefaultListen = "127.0.0.1:8443"
	// DefaultPollInterval is the check-in interval told to devices.
	DefaultPollInterval = 60 * time.Second
	// MinPollInterval and MaxPollInterval bound Config.PollInterval.
	MinPollInterval = deviceapi.MinPollInterval
	MaxPollInterval = deviceapi.MaxPollInterval
	// DefaultShutdownTimeout bounds how long Serve waits for in-flight
	// requests after its context is cancelled.
	DefaultShutdownTimeout = 30 * time.Second
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout bound slow clients.
	// There is no write timeout: a payload download may take long.
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	// MaxHeaderBytes bounds request headers.
	MaxHeaderBytes = 16 << 10
	// CertCheckInterval is how often the server re-reads an operator
	// certificate (--tls-cert) or renews its self-issued one.
	CertCheckInterval = time.Hour
	// StoreTimeout bounds each store call made outside a request (metrics).
	StoreTimeout = 5 * time.Second
	// DefaultRepoTimeout is Config.RepoTimeout when zero.
	DefaultRepoTimeout = 30 * time.Second
)

// Config configures a Server. Zero values are documented per field.
type Config struct {
	// DataDir holds the CAs, the server certificate and the default SQLite
	// database. Required; created (0700) if absent.
	DataDir string
	// RepoDir is a repository made by `airlock repo init`; REPO/public/metadata
	// and REPO/public/targets are served. Required unless RepoStore is set.
	RepoDir string
	// RepoStore, when set, holds the repository's public files instead of
	// RepoDir: the objects metadata/... and targets/... (what
	// `airlock repo push` uploads from REPO/public), e.g. an S3 bucket
	// shared by several replicas. The Server does not close it.
	RepoStore objstore.Store
	// RepoTimeout bounds each metadata read from the repository store made
	// outside a request (director, release registry); zero means
	// DefaultRepoTimeout.
	RepoTimeout time.Duration
	// DB is the state store. Required. The Server does not close it.
	DB store.Store
	// Listen is the HTTPS address; empty means DefaultListen. "127.0.0.1:0"
	// picks a free port (see Server.Addr).
	Listen string
	// TLSCertFile and TLSKeyFile give an operator certificate (PEM chain and
	// key). Both or neither; with neither the server issues its own from the
	// CA in DataDir. They are re-read every CertCheckInterval when changed.
	TLSCertFile, TLSKeyFile string
	// Hostnames are extra DNS names or IPs for the self-issued server
	// certificate (always: localhost, 127.0.0.1, ::1).
	Hostnames []string
	// ManufacturingCAFile holds PEM CA certificates whose device certificates
	// may enroll. Empty means DataDir/manufacturing-ca.pem if it exists.
	ManufacturingCAFile string
	// PublicURL is the base URL devices are told to fetch the repository from
	// (e.g. "https://updates.example.com"). Empty means "https://" + the Host
	// the device used.
	PublicURL string
	// PollInterval is told to devices; zero means DefaultPollInterval.
	PollInterval time.Duration
	// MetricsListen, when set, serves /metrics in plain HTTP without
	// authentication on this loopback address.
	MetricsListen string
	// ShutdownTimeout; zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives one line per request; nil means discard.
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now (tests).
	Now func() time.Time
	// KEKFile is the key-encryption key that seals secrets at rest (TOTP
	// seeds); empty means DataDir/kek.key, created if missing. Keep it off
	// the database's volume in production (docs/security.md).
	KEKFile string
	// ProdApprovals is how many distinct approvers (not the uploader) a
	// release for the "prod" environment needs before it can be deployed;
	// zero means DefaultProdApprovals. 1..MaxProdApprovals.
	ProdApprovals int
	// SessionTTL is the lifetime of an admin API session (airlock login):
	// the default and the longest a client may ask for. 0 means
	// DefaultSessionTTL (15 minutes); at most MaxSessionTTL.
	SessionTTL time.Duration
	// Audit, when set, receives security events: logins and failed logins,
	// releases added, approved and deployed, user changes, rollout
	// transitions, device updates (see the Audit* constants). actor is a
	// user name, a device ID, "airlock" or "unknown". It must not block.
	// Handlers call it before the store write that makes the change, with
	// a context holding an audit scope (store.WithAudit), so that
	// AuditOutbox can commit the event with the change; an event without a
	// change of its own (a login) comes with a plain context.
	Audit func(ctx context.Context, actor, action string, details map[string]string)
	// AuditOpen, when set, opens the audit log (audit.OpenWithKey; serve
	// --audit-dir): Serve then appends the audit outbox to it while this
	// process holds the log (AuditDrainer), and keeps trying to take it
	// while another process does.
	AuditOpen func() (*audit.Log, error)
	// RolloutTick is how often the rollout engine re-counts running
	// rollouts, times out silent devices and applies the health gates;
	// zero means DefaultRolloutTick.
	RolloutTick time.Duration
	// RolloutLeaseTTL is the time to live of the database lease whose
	// holder, one server among replicas on one database, runs the rollout
	// tick; another server takes over at most this long after the holder
	// died. Zero means rollouts.DefaultLeaseTTL (15 seconds).
	RolloutLeaseTTL time.Duration
	// RolloutRefresh is how often a server reloads the running rollouts
	// from the database, so that rollouts created or changed through
	// another replica are acted on here; zero means
	// rollouts.DefaultRefreshInterval (1 second).
	RolloutRefresh time.Duration
	// DirectorTimestampExpiry and DirectorExpiry are the lifetimes of a
	// device's director timestamp and of its snapshot and targets; zero
	// means DefaultDirectorTimestampExpiry and DefaultDirectorExpiry.
	DirectorTimestampExpiry, DirectorExpiry time.Duration
	// Notify, when set, receives the service manager's notification
	// states (sd_notify(3)): "READY=1" once Serve serves, "STOPPING=1"
	// when it begins to shut down and "WATCHDOG=1" every WatchdogInterval
	// from the serving loop. It must not block.
	Notify func(state string)
	// WatchdogInterval is how often Serve sends "WATCHDOG=1" to Notify;
	// zero means never (systemd: half of WatchdogSec=).
	WatchdogInterval time.Duration
	// AuditDir, when set, is the audit log directory (serve --audit-dir) the
	// dashboard reads a release's audit trail from; empty means the
	// dashboard shows what the store knows instead.
	AuditDir string
}

// Errors of the server's configuration.
var (
	// ErrConfig: the Config failed a check.
	ErrConfig = errors.New("invalid server configuration")
	// ErrServed: Serve was called twice.
	ErrServed = errors.New("server already served")
)

// Server is the HTTPS update server. Create it with New, run it with Serve.
type Server struct {
	cfg      Config
	seen     lastSeen // check-ins that changed only last_seen (lastseen.go)
	log      *slog.Logger
	now      func() time.Time
	db       store.Store
	tlsCA    *pki.CA // nil with an operator certificate
	deviceCA *pki.CA
	mfgCAs   []*x509.Certificate
	caPEM    []byte
	caFP     string
	cert     atomic.Pointer[tls.Certificate]
	certMod  time.Time // operator certificate mtime
	tlsConf  *tls.Config
	repo     objstore.Store // the repository's public files
	repoDir  *objstore.Dir  // repo when it is the local RepoDir (closed by Close)
	metaFS   fs.FS          // repo's metadata/ for the director and the registry
	metrics  *metrics.Metrics
	kek      *KEK
	auth     *auth.Authenticator
	handler  http.Handler
	director *director.Service
	rollouts *rollouts.Engine
	releases *releases.Registry
	drainer  *AuditDrainer // nil without Config.AuditOpen
	ln       net.Listener
	mln      net.Listener
	served   atomic.Bool
	closeMu  sync.Mutex
	closed   bool
}

// New checks cfg, creates or loads the CAs and server certificate in
// cfg.DataDir, opens the repository directories and binds the listeners.
// Release it with Serve, or Close if Serve is never called.
func New(cfg Config) (_ *Server, err error) {
	if cfg.DataDir == "" || (cfg.RepoDir == "") == (cfg.RepoStore == nil) || cfg.DB == nil {
		return nil, fmt.Errorf("%w: DataDir, DB and one of RepoDir and RepoStore are required", ErrConfig)
	}
	if cfg.RepoTimeout <= 0 {
		cfg.RepoTimeout = DefaultRepoTimeout
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, fmt.Errorf("%w: give both TLS certificate and key, or neither", ErrConfig)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.PollInterval < MinPollInterval || cfg.PollInterval > MaxPollInterval {
		return nil, fmt.Errorf("%w: poll interval %v outside %v..%v", ErrConfig, cfg.PollInterval, MinPollInterval, MaxPollInterval)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.PublicURL != "" {
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("%w: public URL %q must be https://host[:port][/path]", ErrConfig, cfg.PublicURL)
		}
	}
	if cfg.MetricsListen != "" {
		host, _, err := net.SplitHostPort(cfg.MetricsListen)
		ip := net.ParseIP(host)
		if err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			return nil, fmt.Errorf("%w: metrics address %q must be a loopback address (it has no TLS and no authentication)", ErrConfig, cfg.MetricsListen)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, db: cfg.DB}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// The KEK comes first: it seals the CA keys loadPKI reads.
	if err := s.loadKEK(); err != nil {
		return nil, err
	}
	if err := s.loadPKI(); err != nil {
		return nil, err
	}
	if err := s.openRepo(); err != nil {
		return nil, err
	}
	s.metrics = metrics.New(s.db, StoreTimeout)
	s.metrics.Reg.MustRegister(auditBacklog{db: s.db, timeout: StoreTimeout})
	if cfg.AuditOpen != nil {
		s.drainer = &AuditDrainer{DB: s.db, Open: cfg.AuditOpen, Log: s.log, metrics: newDrainMetrics(s.metrics.Reg)}
	}
	if err := s.initGovernance(); err != nil {
		return nil, err
	}
	if err := s.initRollouts(); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", cfg.Listen, err)
	}
	if cfg.MetricsListen != "" {
		if s.mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("failed to listen on %s: %w", cfg.MetricsListen, err)
		}
	}
	return s, nil
}

// loadPKI loads or creates the TLS CA and server certificate (unless the
// operator gave one), the device CA and the manufacturing CAs, and builds
// the TLS configuration.
func (s *Server) loadPKI() error {
	var err error
	if s.cfg.TLSCertFile == "" {
		if s.tlsCA, err = pki.LoadOrCreateCA(s.cfg.DataDir, CAFile, CAKeyFile, "Airlock server CA", s.kek); err != nil {
			return err
		}
		s.caPEM, s.caFP = s.tlsCA.PEM, Fingerprint(s.tlsCA.Cert)
	}
	if err := s.refreshCert(); err != nil {
		return err
	}
	if s.tlsCA == nil {
		s.caFP = Fingerprint(s.cert.Load().Leaf)
	}
	if s.deviceCA, err = pki.LoadOrCreateCA(s.cfg.DataDir, DeviceCAFile, DeviceCAKeyFile, "Airlock device CA", s.kek); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.deviceCA.Cert)
	mfgPath := s.cfg.ManufacturingCAFile
	if mfgPath == "" {
		mfgPath = filepath.Join(s.cfg.DataDir, ManufacturingCAFile)
		if _, err := os.Stat(mfgPath); errors.Is(err, os.ErrNotExist) {
			mfgPath = ""
		}
	}
	if mfgPath != "" {
		certs, _, err := pki.ReadCertFile(mfgPath)
		if err != nil {
			return err
		}
		for _, c := range certs {
			if !c.IsCA {
				return fmt.Errorf("%w: %s: certificate %q is not a CA", ErrBadCAFile, mfgPath, c.Subject.String())
			}
			if c.Equal(s.deviceCA.Cert) {
				return fmt.Errorf("%w: %s: the device CA cannot also be a manufacturing CA", ErrBadCAFile, mfgPath)
			}
			pool.AddCert(c)
		}
		s.mfgCAs = certs
	}
	s.tlsConf = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		NextProtos: []string{"h2", "http/1.1"},
		// Session tickets stay enabled (the default): resumed sessions keep
		// the verified client chain, so a device's check-in costs one full
		// handshake per ticket lifetime.
	}
	return nil
}

// refreshCert (re)loads the operator certificate when its file changed, or
// renews the self-issued certificate when it is about to expire.
func (s *Server) refreshCert() error {
	if s.tlsCA != nil {
		cur := s.cert.Load()
		if cur != nil && s.now().Add(ServerCertRenewBefore).Before(cur.Leaf.NotAfter) {
			return nil
		}
		c, err := pki.LoadOrIssueServerCert(s.cfg.DataDir, s.tlsCA, pki.ServerNames(s.cfg.Hostnames), s.now())
		if err != nil {
			return err
		}
		s.cert.Store(c)
		return nil
	}
	fi, err := os.Stat(s.cfg.TLSCertFile)
	if err != nil {
		return fmt.Errorf("failed to read TLS certificate: %w", err)
	}
	if !fi.ModTime().After(s.certMod) && s.cert.Load() != nil {
		return nil
	}
	c, err := pki.LoadKeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return err
	}
	s.certMod = fi.ModTime()
	s.cert.Store(c)
	return nil
}

// Addr returns the bound HTTPS address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// MetricsAddr returns the bound plain-HTTP metrics address, or nil.
func (s *Server) MetricsAddr() net.Addr {
	if s.mln == nil {
		return nil
	}
	return s.mln.Addr()
}

// CAFingerprint returns the lowercase hex SHA-256 fingerprint devices pin:
// the server CA's, or the operator certificate's when one is configured.
func (s *Server) CAFingerprint() string { return s.caFP }

// CAPEM returns the server CA certificate (nil with an operator certificate).
func (s *Server) CAPEM() []byte { return s.caPEM }

// DeviceCAPEM returns the device CA certificate that issues client certificates.
func (s *Server) DeviceCAPEM() []byte { return s.deviceCA.PEM }

// Handler returns the HTTP handler of the HTTPS listener (for embedding).
// Device authentication needs r.TLS with verified chains, so it must be
// served with the TLS configuration of TLSConfig.
func (s *Server) Handler() http.Handler { return s.handler }

// TLSConfig returns a clone of the server's TLS configuration.
func (s *Server) TLSConfig() *tls.Config { return s.tlsConf.Clone() }

// Close releases the listeners and repository directories of a Server that
// is not serving. Serve releases them itself.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	if s.mln != nil {
		s.mln.Close()
	}
	if s.repoDir != nil {
		s.repoDir.Close()
	}
	return nil
}

// Serve serves HTTPS (and plain-HTTP metrics if configured) until ctx is
// cancelled, then stops accepting connections, lets in-flight requests finish
// for up to Config.ShutdownTimeout and returns nil (or the error that stopped
// it). It can be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.served.CompareAndSwap(false, true) {
		return ErrServed
	}
	defer s.Close()
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelInfo)
	srv := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tlsConf,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          errLog,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeTLS(s.ln, "", "") }()
	if s.mln != nil {
		msrv := &http.Server{
			Handler:           s.metricsOnlyHandler(),
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			IdleTimeout:       IdleTimeout,
			MaxHeaderBytes:    MaxHeaderBytes,
			ErrorLog:          errLog,
		}
		servers = append(servers, msrv)
		go func() { errc <- msrv.Serve(s.mln) }()
	}
	// The rollout engine and the audit drainer run until the shutdown
	// below stops them, in that order, before Serve returns and the caller
	// closes the store. The engine's context ends with ctx.
	rctx, stopRollouts := context.WithCancel(ctx)
	defer stopRollouts()
	rolloutsDone := make(chan struct{})
	go func() {
		defer close(rolloutsDone)
		s.rollouts.Run(rctx, s.cfg.RolloutTick)
	}()
	dctx, stopDrainer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDrainer()
	drainerDone := make(chan struct{})
	go func() {
		defer close(drainerDone)
		if s.drainer != nil {
			s.drainer.Run(dctx)
		}
	}()
	tick := time.NewTicker(CertCheckInterval)
	defer tick.Stop()
	seen := time.NewTicker(LastSeenFlushInterval)
	defer seen.Stop()
	// Failed authentications counted but not yet audited (auth.FailureWindow).
	fails := time.NewTicker(auth.FailureWindow)
	defer fails.Stop()
	// The watchdog is fed from this loop: a loop that stops turning (or a
	// listener that failed, which ends it) stops the pings.
	var watchdog <-chan time.Time
	if s.cfg.Notify != nil && s.cfg.WatchdogInterval > 0 {
		wd := time.NewTicker(s.cfg.WatchdogInterval)
		defer wd.Stop()
		watchdog = wd.C
	}
	s.notify("READY=1")
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			serveErr = fmt.Errorf("server stopped: %w", err)
			break loop
		case <-tick.C:
			if err := s.refreshCert(); err != nil {
				s.log.Error("server certificate refresh failed", "err", err)
			}
			s.deleteExpiredSessions(ctx)
		case <-watchdog:
			s.notify("WATCHDOG=1")
		case <-fails.C:
			s.auth.FlushFailures(ctx)
		case <-seen.C:
			if err := s.seen.flush(ctx, s.db); err != nil {
				s.log.Error("failed to record when devices were last seen", "err", err)
			}
		}
	}
	s.notify("STOPPING=1")
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
			if serveErr == nil {
				serveErr = fmt.Errorf("graceful shutdown: %w", err)
			}
		}
	}
	// The HTTP servers finished their requests: what they left in memory
	// goes to the store (the failed authentications as audit events).
	if err := s.seen.flush(sctx, s.db); err != nil {
		s.log.Error("failed to record when devices were last seen", "err", err)
	}
	s.auth.FlushFailures(context.Background())
	// The engine stops and releases its ticker lease; the drainer, last,
	// appends every audit event committed so far (its own shutdown drain
	// is bounded by AuditDrainShutdownTimeout).
	stopRollouts()
	<-rolloutsDone
	stopDrainer()
	<-drainerDone
	return serveErr
}

// notify sends a notification state to Config.Notify, if set.
func (s *Server) notify(state string) {
	if s.cfg.Notify != nil {
		s.cfg.Notify(state)
	}
}

// openRepo opens the served repository: RepoStore, or RepoDir/public as a
// local store, checking that it holds a repository (metadata/1.root.json).
func (s *Server) openRepo() error {
	s.repo = s.cfg.RepoStore
	if s.repo == nil {
		pub := filepath.Join(s.cfg.RepoDir, "public")
		for _, d := range []string{"metadata", "targets"} {
			if fi, err := os.Stat(filepath.Join(pub, d)); err != nil || !fi.IsDir() {
				return fmt.Errorf("%w: repository %s directory %s is missing (is %s a repository made by 'airlock repo init'?)", ErrConfig, d, filepath.Join(pub, d), s.cfg.RepoDir)
			}
		}
		d, err := objstore.OpenDir(pub)
		if err != nil {
			return fmt.Errorf("%w: repository directory: %w", ErrConfig, err)
		}
		s.repo, s.repoDir = d, d
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RepoTimeout)
		defer cancel()
		if _, err := s.repo.Stat(ctx, "metadata/1.root.json"); err != nil {
			return fmt.Errorf("%w: repository store %s holds no metadata/1.root.json (push the repository first: airlock repo push): %w", ErrConfig, s.repo, err)
		}
	}
	s.metaFS = objstore.FS(context.Background(), s.repo, "metadata", s.cfg.RepoTimeout)
	return nil
}
