package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/verify"
)

// Defaults and limits.
const (
	// DefaultConcurrency is the number of poll cycles in flight.
	DefaultConcurrency = 200
	// MaxDevices bounds Options.Devices.
	MaxDevices = 1_000_000
	// DefaultSlotSize is the size of each simulated slot (in memory: keep
	// simulated images small).
	DefaultSlotSize = 64 << 10
	// DefaultPollInterval is the agents' poll interval before the server
	// tells them its own.
	DefaultPollInterval = 10 * time.Second
	// DefaultMaxBackoff caps the backoff after failed polls.
	DefaultMaxBackoff = time.Minute
	// DefaultHealthTimeout bounds the injected health check.
	DefaultHealthTimeout = 10 * time.Second
	// DefaultWriteChunk is the slot write size of simulated devices.
	DefaultWriteChunk = 4 << 10
	// DefaultHWRev is the simulated devices' hardware revision.
	DefaultHWRev = 1
)

// jitterStream separates the jitter generator from the failure draws, so
// that timing never changes which installs fail.
const jitterStream = 0x9e3779b97f4a7c15

// FailCommand is the health check of a device whose next install must fail
// (a real process that exits 1: the device's health-check path is the real
// one).
var FailCommand = []string{"false"}

// ErrOptions is wrapped by invalid Options.
var ErrOptions = errors.New("invalid simulator options")

// Options configure a fleet.
type Options struct {
	// Server is the https:// URL of the update server; ServerCA its CA
	// certificate(s) in PEM.
	Server   string
	ServerCA []byte
	// Token is the enrollment token every device enrolls with (create it
	// with at least Devices uses).
	Token string
	// Devices is the fleet size (1..MaxDevices).
	Devices int
	// FailRate is the probability, per install, that a device's health
	// check fails (0..1), drawn from a per-device generator seeded by
	// Seed and the device's index: the same seed fails the same installs.
	FailRate float64
	Seed     uint64
	// Model, HWRev, Product and Channel describe every simulated device
	// (Channel "": the release default).
	Model   string
	HWRev   uint32
	Product string
	Channel string
	// FactoryRoot is the image repository's root metadata every device is
	// provisioned with; InitialBundle an offline bundle (see `airlock
	// bundle`) installed into slot A at provisioning.
	FactoryRoot   []byte
	InitialBundle []byte
	// DirectorRoot, if set, enables director mode (agent director_root).
	DirectorRoot []byte
	// Concurrency bounds poll cycles in flight (0: DefaultConcurrency).
	Concurrency int
	// SlotSize is each slot's size (0: DefaultSlotSize).
	SlotSize int64
	// PollInterval is the agents' poll interval until the server sends
	// its own (0: DefaultPollInterval). The first polls are spread over
	// one interval.
	PollInterval time.Duration
	// MaxBackoff caps the backoff after failed polls (0: DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Logger receives the simulator's log (nil: discarded); AgentLogger
	// receives every device's agent log (nil: discarded; it is verbose).
	Logger      *slog.Logger
	AgentLogger *slog.Logger
}

func (o *Options) check() error {
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
	case o.Devices < 1 || o.Devices > MaxDevices:
		return bad("devices %d out of range [1, %d]", o.Devices, MaxDevices)
	case !(o.FailRate >= 0 && o.FailRate <= 1):
		return bad("fail rate %v out of range [0, 1]", o.FailRate)
	case o.Model == "" || o.Product == "":
		return bad("model and product are required")
	case len(o.FactoryRoot) == 0:
		return bad("the factory root is required")
	case len(o.InitialBundle) == 0:
		return bad("an initial bundle is required")
	case o.Concurrency < 0 || o.SlotSize < 0 || o.PollInterval < 0 || o.MaxBackoff < 0:
		return bad("negative concurrency, slot size, poll interval or backoff")
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.SlotSize == 0 {
		o.SlotSize = DefaultSlotSize
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AgentLogger == nil {
		o.AgentLogger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Fleet is a simulated fleet. Create it with New, then Run it.
type Fleet struct {
	opts Options

	mu      sync.Mutex
	devices []*simDevice
	start   time.Time
	sched   *schedule[*simDevice]

	polls, errs, installs, commits, rollbacks, injected atomic.Int64
}

// simDevice is one simulated device. It is either in the queue or owned by
// one worker, never both.
type simDevice struct {
	idx      int
	fs       *durable.Mem
	ag       *agent.Agent
	fails    *rand.Rand // the health-check failure draws, one per install
	jitter   *rand.Rand // poll scheduling
	failNext bool
	backoff  time.Duration

	mu       sync.Mutex // guards the fields below (read by Stats)
	version  string
	action   string
	enrolled bool
	err      string
}

// devConfigPath is the device config in each device's in-memory filesystem
// (a device.Layout at its root).
var devConfigPath = device.Layout{Dir: "/"}.ConfigPath()

// Paths inside each device's in-memory filesystem.
const (
	agentDir        = "/agent"
	caFile          = "/agent/server-ca.pem"
	tokenFile       = "/agent/token"
	directorFile    = "/agent/director-root.json"
	identityDir     = "/agent/identity"
	identityCert    = "/agent/identity/" + agent.CertFile
	factoryRootFile = "factory-root.json"
)

// New validates opts and returns a fleet; devices are provisioned by Run.
func New(opts Options) (*Fleet, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	// Check the initial bundle once, up front.
	if _, err := verify.OpenBundle(bytes.NewReader(opts.InitialBundle)); err != nil {
		return nil, fmt.Errorf("%w: initial bundle: %w", ErrOptions, err)
	}
	f := &Fleet{opts: opts, sched: newSchedule[*simDevice](), devices: make([]*simDevice, opts.Devices)}
	return f, nil
}

// deviceConfig is the device config of a simulated device; fail selects
// the failing health check.
func (f *Fleet) deviceConfig(fail bool) *device.Config {
	o := &f.opts
	// A simulated device is a device directory (device.Layout) at the root
	// of its own filesystem, with the factory root under its own name.
	cfg, err := device.Layout{Dir: "/"}.Config(boot.BackendSim, o.SlotSize)
	if err != nil {
		panic("internal error: " + err.Error())
	}
	cfg.Model, cfg.HWRev, cfg.Product, cfg.Channel = o.Model, o.HWRev, o.Product, o.Channel
	cfg.Root, cfg.WriteChunk = factoryRootFile, DefaultWriteChunk
	if fail {
		cfg.Health = device.HealthConfig{Command: FailCommand, Timeout: DefaultHealthTimeout}
	}
	return cfg
}

func writeDeviceConfig(fsys durable.FS, cfg *device.Config) error {
	data, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return durable.WriteFile(fsys, devConfigPath, data, 0o644)
}

// provision creates device idx: its filesystem, provisioned state with the
// initial release, agent files and agent.
func (f *Fleet) provision(ctx context.Context, idx int) (*simDevice, error) {
	o := &f.opts
	d := &simDevice{idx: idx, fs: durable.NewMem(),
		fails:  rand.New(rand.NewPCG(o.Seed, uint64(idx))),
		jitter: rand.New(rand.NewPCG(o.Seed^jitterStream, uint64(idx)))}
	src, err := verify.OpenBundle(bytes.NewReader(o.InitialBundle))
	if err != nil {
		return nil, err
	}
	cfg := f.deviceConfig(false)
	dev, err := device.Provision(ctx, d.fs, cfg, device.ProvisionOptions{
		FactoryRoot: o.FactoryRoot, CreateSlots: true, Initial: src, InitialTarget: src.TargetPath(),
	}, device.Options{})
	if err != nil {
		return nil, fmt.Errorf("device %d: provisioning failed: %w", idx, err)
	}
	if rec, err := dev.SlotRecord(boot.SlotA); err == nil && rec != nil {
		d.version = rec.Version
	}
	d.failNext = d.fails.Float64() < o.FailRate
	if err := writeDeviceConfig(d.fs, f.deviceConfig(d.failNext)); err != nil {
		return nil, err
	}
	if err := d.fs.MkdirAll(agentDir, 0o700); err != nil {
		return nil, err
	}
	files := map[string][]byte{caFile: o.ServerCA, tokenFile: []byte(o.Token + "\n")}
	if o.DirectorRoot != nil {
		files[directorFile] = o.DirectorRoot
	}
	for name, data := range files {
		if err := durable.WriteFile(d.fs, name, data, 0o600); err != nil {
			return nil, err
		}
	}
	acfg := &agent.Config{
		Dir: "/", DeviceConfig: devConfigPath, Server: o.Server, ServerCA: caFile,
		EnrollmentTokenFile: tokenFile, IdentityDir: identityDir, PollInterval: o.PollInterval,
		MaxBackoff: o.MaxBackoff, Progress: agent.ProgressNone,
	}
	if o.DirectorRoot != nil {
		acfg.DirectorRoot = directorFile
	}
	if d.ag, err = agent.New(acfg, agent.Options{FS: d.fs, Logger: o.AgentLogger.With("device", idx)}); err != nil {
		return nil, err
	}
	return d, nil
}

// Run provisions the devices (Concurrency at a time), then runs poll
// cycles until ctx ends. It returns nil when ctx ends after provisioning,
// and the first provisioning error otherwise.
func (f *Fleet) Run(ctx context.Context) error {
	if err := f.provisionAll(ctx); err != nil {
		return err
	}
	spread := f.opts.PollInterval
	f.mu.Lock()
	f.start = time.Now()
	f.mu.Unlock()
	for _, d := range f.devices {
		f.sched.push(d, f.start.UnixNano()+d.jitter.Int64N(int64(spread)))
	}
	f.opts.Logger.Info("fleet provisioned; polling", "devices", len(f.devices), "concurrency", f.opts.Concurrency)

	work := make(chan *simDevice)
	var wg sync.WaitGroup
	for range f.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				f.sched.push(d, f.cycle(ctx, d))
			}
		}()
	}
	f.sched.run(ctx, work)
	close(work)
	wg.Wait()
	return nil
}

func (f *Fleet) provisionAll(ctx context.Context) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(f.opts.Concurrency, f.opts.Devices) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= f.opts.Devices || ctx.Err() != nil {
					return
				}
				d, err := f.provision(ctx, i)
				if err != nil {
					once.Do(func() { firstErr = err })
					next.Store(int64(f.opts.Devices))
					return
				}
				f.mu.Lock()
				f.devices[i] = d
				f.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// cycle runs one poll cycle of d and returns its next poll time (unix
// nanoseconds).
func (f *Fleet) cycle(ctx context.Context, d *simDevice) int64 {
	res, err := d.ag.RunOnce(ctx)
	if ctx.Err() != nil {
		return 0
	}
	f.polls.Add(1)
	action := ""
	if res != nil {
		action = res.Action
	}
	installed := action == agent.ActionCommitted || action == agent.ActionRolledBack
	switch action {
	case agent.ActionCommitted:
		f.installs.Add(1)
		f.commits.Add(1)
	case agent.ActionRolledBack:
		f.installs.Add(1)
		f.rollbacks.Add(1)
		if d.failNext {
			f.injected.Add(1)
		}
	}
	d.mu.Lock()
	d.action = action
	if action == agent.ActionCommitted || action == agent.ActionNone && res.Version != "" {
		d.version = res.Version
	}
	d.err = ""
	if err != nil {
		d.err = err.Error()
	}
	if !d.enrolled {
		if _, serr := d.fs.Stat(identityCert); serr == nil {
			d.enrolled = true
		}
	}
	d.mu.Unlock()
	if installed {
		// The next install fails with probability FailRate.
		fail := d.fails.Float64() < f.opts.FailRate
		if fail != d.failNext {
			if werr := writeDeviceConfig(d.fs, f.deviceConfig(fail)); werr != nil {
				f.opts.Logger.Error("failed to rewrite a simulated device config", "device", d.idx, "error", werr)
			}
			d.failNext = fail
		}
	}
	var wait time.Duration
	if err != nil {
		f.errs.Add(1)
		d.backoff = min(max(2*d.backoff, min(time.Second, d.ag.PollInterval())), f.opts.MaxBackoff)
		wait = d.backoff
	} else {
		d.backoff = 0
		wait = d.ag.PollInterval()
	}
	// ±agent.Jitter, as the real agent.
	j := 1 + agent.Jitter*(2*d.jitter.Float64()-1)
	return time.Now().Add(time.Duration(float64(wait) * j)).UnixNano()
}

// Stats is a snapshot of the fleet.
type Stats struct {
	Elapsed     time.Duration
	Devices     int            // provisioned
	Enrolled    int            // devices holding a certificate
	Versions    map[string]int // running (committed) release version -> devices
	LastActions map[string]int // last poll's action -> devices ("" before the first poll)
	Failing     int            // devices whose last poll returned an error
	Polls       int64
	Errors      int64
	Installs    int64 // installs that reached the health check
	Commits     int64
	RollBacks   int64
	Injected    int64 // rollbacks caused by an injected health-check failure
}

// Stats returns a snapshot of the fleet (safe to call while Run runs).
func (f *Fleet) Stats() Stats {
	s := Stats{Versions: map[string]int{}, LastActions: map[string]int{}}
	f.mu.Lock()
	if !f.start.IsZero() {
		s.Elapsed = time.Since(f.start)
	}
	devs := slices.Clone(f.devices)
	f.mu.Unlock()
	for _, d := range devs {
		if d == nil {
			continue
		}
		s.Devices++
		d.mu.Lock()
		s.Versions[d.version]++
		s.LastActions[d.action]++
		if d.enrolled {
			s.Enrolled++
		}
		if d.err != "" {
			s.Failing++
		}
		d.mu.Unlock()
	}
	s.Polls, s.Errors = f.polls.Load(), f.errs.Load()
	s.Installs, s.Commits, s.RollBacks, s.Injected = f.installs.Load(), f.commits.Load(), f.rollbacks.Load(), f.injected.Load()
	return s
}

// String formats the stats on one line.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=%s devices=%d enrolled=%d polls=%d errors=%d installs=%d committed=%d rolled_back=%d failing=%d versions:",
		s.Elapsed.Round(time.Second), s.Devices, s.Enrolled, s.Polls, s.Errors, s.Installs, s.Commits, s.RollBacks, s.Failing)
	for _, v := range slices.Sorted(maps.Keys(s.Versions)) {
		name := v
		if name == "" {
			name = "none"
		}
		fmt.Fprintf(&b, " %s=%d", name, s.Versions[v])
	}
	return b.String()
}

// Report writes Stats to w every interval until ctx ends, then once more.
func (f *Fleet) Report(ctx context.Context, w io.Writer, interval time.Duration) {
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

// BundleProduct returns the product ID of an offline bundle's release (its
// target path names it; nothing is verified here: provisioning verifies).
func BundleProduct(bundleData []byte) (string, error) {
	src, err := verify.OpenBundle(bytes.NewReader(bundleData))
	if err != nil {
		return "", err
	}
	p, _, _, err := release.ParseTargetPath(src.TargetPath())
	if err != nil {
		return "", err
	}
	return p.String(), nil
}
