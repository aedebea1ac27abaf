package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/proc"
	"github.com/airlockfw/airlock/verify"
)

// Loop defaults.
const (
	// DefaultInitialBackoff is the first wait after a failed poll (capped
	// by the poll interval); it doubles per consecutive failure up to the
	// config's max_backoff.
	DefaultInitialBackoff = 30 * time.Second
	// Jitter is the fraction by which every wait is randomly shortened or
	// lengthened, so that a fleet does not poll in lockstep.
	Jitter = 0.10
	// RebootCommandTimeout bounds the reboot command.
	RebootCommandTimeout = 5 * time.Minute
	// TLSSessionCacheSize bounds the TLS sessions kept for resumption.
	TLSSessionCacheSize = 4
)

// Actions of a poll cycle (Result.Action).
const (
	ActionNone       = "none"        // up to date
	ActionReboot     = "reboot"      // installed; the reboot command was run
	ActionCommitted  = "committed"   // the new release passed its health check
	ActionRolledBack = "rolled_back" // the new release failed; the old one runs
	ActionFailed     = "failed"      // the install was refused or failed
)

var (
	// ErrRolledBack is returned by RunOnce when the new release failed its
	// boot verification or health check and the device went back to the
	// previous one.
	ErrRolledBack = errors.New("update rolled back")
	// ErrReboot is returned when the reboot command failed.
	ErrReboot = errors.New("reboot failed")
)

// Options are the knobs of an Agent that are not in its config. The zero
// value is the production default.
type Options struct {
	// Logger receives the agent's log (nil: discarded). Tokens and keys
	// are never logged.
	Logger Logger
	// Progress shows download progress (nil: none).
	Progress Progress
	// HealthOutput receives the health command's output (nil: discarded).
	HealthOutput io.Writer
	// Now is the device's clock for metadata expiry (nil: time.Now).
	Now func() time.Time
	// InitialBackoff overrides DefaultInitialBackoff.
	InitialBackoff time.Duration
	// ResumeBackoff and MaxResumeAttempts override the download defaults
	// (see DownloadOptions).
	ResumeBackoff     time.Duration
	MaxResumeAttempts int
	// FS is the filesystem of every file the agent and its device use:
	// the device config, state directory, slots and boot control, the
	// identity directory, the enrollment token, the server CA and the
	// director root (nil: durable.OS). The fleet simulator gives each
	// simulated device its own durable.Mem.
	FS durable.FS
	// Notify, if not nil, receives the service manager's notification
	// states (sd_notify(3)) from Run: "READY=1" when it starts,
	// "WATCHDOG=1" every WatchdogInterval while the agent makes progress,
	// "STOPPING=1" when it returns. It must not block.
	Notify func(state string)
	// WatchdogInterval is how often Run sends "WATCHDOG=1" (0: never):
	// while it waits for the next poll, and during a poll cycle as long as
	// the cycle began, or its download received bytes, within the last two
	// intervals (systemd's WatchdogSec=). A cycle stuck longer goes
	// unpinged, and systemd restarts the agent.
	WatchdogInterval time.Duration
}

// Agent is the device agent. It is not safe for concurrent use; run one
// agent per device.
type Agent struct {
	cfg      *Config
	opts     Options
	fs       durable.FS
	log      Logger
	pool     *x509.CertPool
	interval time.Duration // the server's poll interval, else the config's

	// sessions caches TLS sessions of the mTLS client across poll cycles
	// (resumption saves a full handshake per poll); it belongs to the
	// identity whose leaf is sessionsFor.
	sessions    tls.ClientSessionCache
	sessionsFor []byte

	// beat is when the running cycle last made progress (UnixNano), 0
	// between cycles; read by the watchdog.
	beat atomic.Int64
}

// Logger is what the agent logs through: a *slog.Logger, or the device's
// smaller *jsonlog.Logger. Arguments alternate keys and values.
type Logger interface {
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
}

// discard is the Logger of an agent given none.
type discard struct{}

func (discard) Debug(string, ...any) {}
func (discard) Info(string, ...any)  {}
func (discard) Warn(string, ...any)  {}
func (discard) Error(string, ...any) {}

// Result describes one poll cycle.
type Result struct {
	Action  string // one of the Action* constants
	Version string // the release acted on; for ActionNone the running one
	Message string // what happened, in words
}

// New returns an agent for cfg (validated) after reading the server CA.
func New(cfg *Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, opts: opts, fs: opts.FS, log: opts.Logger, interval: cfg.PollInterval}
	if a.log == nil {
		a.log = discard{}
	}
	if a.fs == nil {
		a.fs = durable.OS
	}
	if cfg.ServerCA != "" {
		pool, err := loadCAPool(a.fs, cfg.Path(cfg.ServerCA), cfg.ServerCASHA256)
		if err != nil {
			return nil, err
		}
		a.pool = pool
	}
	return a, nil
}

// PollInterval returns the current poll interval (the server's once it sent
// one).
func (a *Agent) PollInterval() time.Duration { return a.interval }

// cycle is the state of one poll cycle.
type cycle struct {
	dev      *device.Device
	view     *deviceView
	api      *apiClient   // nil in repository-only mode
	http     *http.Client // for the repository (and the director)
	meta     string
	tgts     string
	deviceID string // the server's ID of this device (its certificate's CN)
}

// RunOnce runs one poll cycle: finish a pending trial boot (health check,
// commit or roll back), else enroll if needed, check in, refresh the
// metadata, install the newest release that fits, reboot (or simulate it)
// and commit. Every step is reported to the server. It returns the error of
// a failed step (after reporting it).
func (a *Agent) RunOnce(ctx context.Context) (*Result, error) {
	d, err := a.cfg.openDevice(a.fs, device.Options{Now: a.opts.Now, HealthOutput: a.opts.HealthOutput})
	if err != nil {
		return nil, err
	}
	view, err := readDevice(d)
	if err != nil {
		return nil, err
	}
	c := &cycle{dev: d, view: view, meta: a.cfg.MetadataURL, tgts: a.cfg.TargetsURL}
	defer func() {
		// One poll, one set of connections: a fleet of agents must not
		// hold idle connections to the server between polls.
		if c.http != nil {
			c.http.CloseIdleConnections()
		}
	}()
	if err := a.connect(ctx, c); err != nil {
		return nil, err
	}
	switch view.state() {
	case deviceapi.StateRebooted:
		// The device rebooted into the new slot: health check, commit.
		version := ""
		if view.booted != nil {
			version = view.booted.Version
		}
		a.report(ctx, c, deviceapi.StateRebooted, version, fmt.Sprintf("booted slot %s on trial", view.booted.Slot))
		return a.health(ctx, c, version)
	case deviceapi.StateInstalled:
		rec, err := d.SlotRecord(view.boot.Trial)
		if err != nil {
			return nil, err
		}
		version := ""
		if rec != nil {
			version = rec.Version
		}
		a.log.Info("an installed release waits for its reboot", "slot", view.boot.Trial, "version", version)
		return a.reboot(ctx, c, version)
	}
	return a.update(ctx, c)
}

// connect sets up the HTTP client, enrolls if needed and checks in.
func (a *Agent) connect(ctx context.Context, c *cycle) error {
	if a.cfg.Server == "" {
		c.http = newHTTPClient(a.pool, a.cfg.ServerCASHA256, nil, nil)
		return nil
	}
	base, err := url.Parse(a.cfg.Server)
	if err != nil {
		return err
	}
	cfg := c.dev.Config()
	id, err := loadIdentity(a.fs, a.cfg.Path(a.cfg.IdentityDir))
	if errors.Is(err, ErrNotEnrolled) {
		api := &apiClient{base: base, client: newHTTPClient(a.pool, a.cfg.ServerCASHA256, nil, nil)}
		defer api.client.CloseIdleConnections()
		var resp *deviceapi.EnrollResponse
		id, resp, err = a.enroll(ctx, api, deviceapi.EnrollRequest{
			Model: cfg.Model, HWRev: cfg.HWRev, Product: cfg.Product, Channel: cfg.Channel,
			CurrentVersion: c.view.currentVersion(),
		})
		if err != nil {
			return err
		}
		a.log.Info("enrolled", "device_id", resp.DeviceID, "serial", id.Leaf.SerialNumber.String())
		if iv, _ := pollInterval(resp.PollIntervalSeconds); iv > 0 {
			a.interval = iv
		}
	}
	if err != nil {
		return err
	}
	if a.sessions == nil || !bytes.Equal(a.sessionsFor, id.Leaf.Raw) {
		a.sessions, a.sessionsFor = tls.NewLRUClientSessionCache(TLSSessionCacheSize), id.Leaf.Raw
	}
	c.deviceID = id.Leaf.Subject.CommonName
	c.http = newHTTPClient(a.pool, a.cfg.ServerCASHA256, id, a.sessions)
	c.api = &apiClient{base: base, client: c.http}
	// Reports still queued from earlier cycles go first: they happened
	// before this check-in.
	a.flushReports(ctx, c)
	resp, iv, err := c.api.checkin(ctx, deviceapi.CheckinRequest{
		CurrentVersion: c.view.currentVersion(), SecurityCounter: c.view.policy.SecurityCounter, State: c.view.state(),
		Slot: c.view.slot(),
	})
	if err != nil {
		return fmt.Errorf("check-in failed: %w", err)
	}
	if iv > 0 {
		a.interval = iv
	}
	if asg := resp.Assignment; asg != nil {
		a.log.Debug("check-in names an assignment (informational: the director metadata decides)",
			"rollout", asg.RolloutID, "release", asg.Release, "target", asg.TargetPath)
	}
	meta, tgts, err := c.api.repositoryURLs(resp.Repository)
	if err != nil {
		return err
	}
	// The config's URLs override the server's.
	if c.meta == "" {
		c.meta = meta
	}
	if c.tgts == "" {
		c.tgts = tgts
	}
	if c.meta == "" || c.tgts == "" {
		return fmt.Errorf("%w: the check-in named no repository and the config sets none", ErrResponse)
	}
	return nil
}

// source returns the image repository source of a cycle.
func (a *Agent) source(c *cycle) *HTTPSource {
	progress := a.opts.Progress
	if a.watched() {
		progress = &beating{a, progress}
	}
	return NewHTTPSource(c.meta, c.tgts, c.http, DownloadOptions{
		StallTimeout: a.cfg.StallTimeout, MinThroughput: a.cfg.MinThroughput,
		MetadataTimeout: a.cfg.DownloadTimeout, MaxResumeAttempts: a.opts.MaxResumeAttempts,
		ResumeBackoff: a.opts.ResumeBackoff, Progress: progress,
		Logf: func(format string, args ...any) { a.log.Warn(fmt.Sprintf(format, args...)) },
	})
}

// update runs the check pipeline once against the image repository,
// selects the newest release that passes for this device and installs it.
// In director mode the director's assignment selects it (director.go).
func (a *Agent) update(ctx context.Context, c *cycle) (*Result, error) {
	if a.cfg.DirectorRoot != "" {
		return a.directorUpdate(ctx, c)
	}
	src := a.source(c)
	u, err := c.dev.Begin(ctx, src, device.InstallOptions{FullDownload: a.cfg.FullDownload})
	if err != nil {
		return a.failed(ctx, c, "", err)
	}
	t, err := u.Select(ctx, func(path string) bool {
		if slices.Contains(c.view.rejected, path) {
			a.log.Info("skipping a release that was rolled back on this device", "path", path)
			return true
		}
		return false
	})
	if err != nil {
		return a.failed(ctx, c, "", err)
	}
	if t == nil {
		if err := u.Keep(); err != nil {
			a.log.Warn("failed to store verified metadata", "error", err)
		}
		v := c.view.currentVersion()
		msg := "up to date: version " + v + " runs, the newest release available for this device"
		if v == "" {
			msg = "up to date: no release is installed and none is available for this device"
		}
		a.log.Info(msg, "version", v)
		return &Result{Action: ActionNone, Version: v, Message: msg}, nil
	}
	return a.install(ctx, c, src, u, t)
}

// failed reports a refused or failed step and returns it as the cycle's
// result.
func (a *Agent) failed(ctx context.Context, c *cycle, version string, err error) (*Result, error) {
	msg := err.Error()
	kind := deviceapi.StateFailed
	if ie, ok := err.(*device.InstallError); ok {
		msg = ie.Check + ": " + ie.Err.Error()
		// A fetch that failed (the server or the network went away, the
		// download deadline passed) is not a refusal of what was served:
		// the next poll retries it. It is reported as a step still in
		// progress, so a server restart during a rollout is not counted
		// as a failed install; the report deadline still bounds it.
		if (ie.Check == device.CheckMetadata || ie.Check == device.CheckPayload) && !errors.Is(err, verify.ErrVerification) {
			kind, msg = deviceapi.StateDownloading, "retrying at the next poll: "+msg
		}
	}
	a.report(ctx, c, kind, version, msg)
	return &Result{Action: ActionFailed, Version: version, Message: msg}, err
}

// install downloads and installs t (checked by u), reports, reboots and
// runs the health check.
func (a *Agent) install(ctx context.Context, c *cycle, src *HTTPSource, u *device.Update, t *verify.Target) (*Result, error) {
	version := t.Release.Version.String()
	src.announce(t.Path, t.File.Length)
	a.report(ctx, c, deviceapi.StateDownloading, version, fmt.Sprintf("downloading %s (%d bytes)", t.Path, t.File.Length))
	ictx, cancel := context.WithTimeout(ctx, a.cfg.DownloadTimeout)
	res, err := u.Install(ictx, t)
	cancel()
	if err != nil {
		return a.failed(ctx, c, version, err)
	}
	a.report(ctx, c, deviceapi.StateVerified, version, verifiedNote(res))
	a.report(ctx, c, deviceapi.StateInstalled, version, fmt.Sprintf("installed into slot %s", res.Slot))
	return a.reboot(ctx, c, version)
}

// reboot runs the reboot command, or simulates the reboot: the boot stage
// in-process (device.Boot), then the health check.
func (a *Agent) reboot(ctx context.Context, c *cycle, version string) (*Result, error) {
	if len(a.cfg.RebootCommand) > 0 {
		a.log.Info("rebooting into the new release", "version", version, "command", strings.Join(a.cfg.RebootCommand, " "))
		rctx, cancel := context.WithTimeout(ctx, RebootCommandTimeout)
		defer cancel()
		var out bytes.Buffer
		if err := proc.Run(rctx, a.cfg.RebootCommand, "", nil, &out); err != nil {
			err = fmt.Errorf("%w: %q: %w: %s", ErrReboot, a.cfg.RebootCommand[0], err, truncate(strings.TrimSpace(out.String()), 500))
			a.report(ctx, c, deviceapi.StateFailed, version, err.Error())
			return &Result{Action: ActionFailed, Version: version, Message: err.Error()}, err
		}
		return &Result{Action: ActionReboot, Version: version, Message: "reboot command run"}, nil
	}
	br, err := c.dev.Boot(ctx)
	if err != nil {
		a.report(ctx, c, deviceapi.StateFailed, version, "boot: "+err.Error())
		return &Result{Action: ActionFailed, Version: version, Message: err.Error()}, err
	}
	if !br.Trial {
		msg := fmt.Sprintf("the new release did not boot: %s; running slot %s (%s)", strings.Join(br.Fallbacks, "; "), br.Slot, br.Version)
		a.report(ctx, c, deviceapi.StateRolledBack, version, msg)
		return &Result{Action: ActionRolledBack, Version: version, Message: msg}, fmt.Errorf("%w: %s", ErrRolledBack, msg)
	}
	a.report(ctx, c, deviceapi.StateRebooted, br.Version, fmt.Sprintf("booted slot %s on trial", br.Slot))
	return a.health(ctx, c, br.Version)
}

// health runs the health check of a trial boot and reports the outcome.
func (a *Agent) health(ctx context.Context, c *cycle, version string) (*Result, error) {
	hr, err := c.dev.Health(ctx)
	switch {
	case hr != nil && hr.Committed:
		msg := fmt.Sprintf("health check passed; slot %s committed", hr.Slot)
		a.report(ctx, c, deviceapi.StateCommitted, version, msg)
		return &Result{Action: ActionCommitted, Version: version, Message: msg}, nil
	case hr != nil && hr.Rollback:
		msg := err.Error()
		a.report(ctx, c, deviceapi.StateRolledBack, version, msg)
		return &Result{Action: ActionRolledBack, Version: version, Message: msg}, fmt.Errorf("%w: %w", ErrRolledBack, err)
	case err != nil:
		a.report(ctx, c, deviceapi.StateFailed, version, "health: "+err.Error())
		return &Result{Action: ActionFailed, Version: version, Message: err.Error()}, err
	}
	return &Result{Action: ActionNone, Version: version, Message: "no trial to commit"}, nil
}

// Run polls until ctx is canceled: every poll interval (the server's once
// it sent one) with ±Jitter, and after a failure with exponential backoff
// from InitialBackoff up to max_backoff. It returns nil when ctx is
// canceled.
func (a *Agent) Run(ctx context.Context) error {
	a.notify("READY=1")
	defer a.notify("STOPPING=1")
	if a.watched() {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go a.watchdog(wctx)
	}
	var backoff time.Duration
	for {
		a.progressed()
		res, err := a.RunOnce(ctx)
		a.beat.Store(0)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			backoff = a.nextBackoff(backoff)
			wait = jitter(backoff)
			a.log.Error("poll failed", "error", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			backoff = 0
			wait = jitter(a.interval)
			a.log.Info("poll done", "action", res.Action, "version", res.Version, "result", res.Message, "next_in", wait.Round(time.Millisecond))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// notify sends a notification state to Options.Notify, if set.
func (a *Agent) notify(state string) {
	if a.opts.Notify != nil {
		a.opts.Notify(state)
	}
}

// watched reports whether Run keeps a watchdog (Options.Notify and
// WatchdogInterval set), so that downloads report progress to it.
func (a *Agent) watched() bool { return a.opts.Notify != nil && a.opts.WatchdogInterval > 0 }

// progressed records that the running cycle made progress.
func (a *Agent) progressed() { a.beat.Store(time.Now().UnixNano()) }

// watchdog sends "WATCHDOG=1" every WatchdogInterval while the agent is
// between cycles or its cycle progressed within two intervals.
func (a *Agent) watchdog(ctx context.Context) {
	t := time.NewTicker(a.opts.WatchdogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if b := a.beat.Load(); b == 0 || time.Since(time.Unix(0, b)) < 2*a.opts.WatchdogInterval {
			a.notify("WATCHDOG=1")
		}
	}
}

// beating tells the watchdog about every download step, then p (if any).
type beating struct {
	a *Agent
	p Progress
}

func (b *beating) Start(name string, total int64) {
	b.a.progressed()
	if b.p != nil {
		b.p.Start(name, total)
	}
}

func (b *beating) Update(received int64) {
	b.a.progressed()
	if b.p != nil {
		b.p.Update(received)
	}
}

func (b *beating) Done() {
	if b.p != nil {
		b.p.Done()
	}
}

func (a *Agent) nextBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		first := a.opts.InitialBackoff
		if first == 0 {
			first = DefaultInitialBackoff
		}
		return min(first, a.interval, a.cfg.MaxBackoff)
	}
	return min(prev*2, a.cfg.MaxBackoff)
}

// jitter returns d ± Jitter·d, uniformly.
func jitter(d time.Duration) time.Duration {
	f := 1 + Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// verifiedNote is the report of a verified payload.
func verifiedNote(res *device.InstallResult) string {
	msg := fmt.Sprintf("payload verified: %d bytes transported, %d bytes installed", res.TransportBytes, res.InstalledBytes)
	if res.Delta != "" {
		msg += " (" + res.Delta + ")"
	}
	return msg
}
