// Package demo runs the whole Airlock story on loopback, narrating each
// step and the equivalent commands: signing keys and a repository, devices
// provisioned with release 1.0.0, the HTTPS update server, an update over
// the network, a tampered release rejected, a downgrade refused, a failed
// health check rolled back, a table of every device, a staged rollout
// that a bad release pauses at its canary group, and a release signed with
// a stolen key that the witnessed transparency log exposes. `airlock demo`
// runs it.
//
// The vendor-side steps and the operator's admin commands (login, approval,
// rollout, logout) run real airlock commands through Config.Run (the
// command line of the binary that runs the demo), so the narration shows
// commands that work; the device and server side run in-process from the
// library packages.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/agent"
	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/adminpool"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/sim"
)

// Usage is the help text of `airlock demo`.
const Usage = `Usage: airlock demo [--devices N] [--keep DIR]

Runs Airlock end to end in a temporary directory, with embedded defaults and
no network beyond 127.0.0.1, narrating each step and the equivalent commands:

  1. signing keys and a TUF repository for the product acme/router-x1
  2. release 1.0.0 provisioned on N simulated devices (A/B slots, sim boot)
  3. the HTTPS update server started (local CA, SQLite)
  4. release 1.1.0 installed over HTTPS by every device's agent: enrollment
     with mTLS, download, verified install into the inactive slot, reboot,
     verified boot, health check, commit
  5. a tampered release (payload altered on the server) rejected
  6. a downgrade to 1.0.0 refused by the device's policy
  7. a release that fails its health check rolled back automatically
  8. a closing table of every device's state, on the device and the server
  9. a staged rollout: a fleet of simulated devices in director mode; a bad
     release reaches the canary group, the failure threshold pauses the
     rollout, and the rest of the fleet is untouched
 10. firmware transparency: the log enabled with two witnesses (C2SP
     tlog-witness, on 127.0.0.1) and a logged release installed; a release
     signed with a stolen product key for one device, published without a
     log entry, refused by that device as not in the witnessed log; the
     same release appended to the log, flagged by 'airlock log monitor'

It exits 0 only if every step did what it says.

Flags:
  --devices N   number of simulated devices (default 3, at most 20)
  --keep DIR    run in DIR (created, must not exist) and keep it afterwards
`

// Limits of Config.Devices.
const (
	DefaultDevices = 3
	MaxDevices     = 20
)

// Config configures Run.
type Config struct {
	// Dir is the directory to run in; it is created and must not exist,
	// and it is kept afterwards. Empty means a temporary directory,
	// removed afterwards.
	Dir string
	// Devices is the number of simulated devices (0 means DefaultDevices,
	// at most MaxDevices).
	Devices int
	// Stdout receives the narration.
	Stdout io.Writer
	// Getenv is passed to the commands (nil: no environment).
	Getenv func(string) string
	// Run runs an airlock command line in-process with args and returns
	// its exit code (cli.Program.RunEnv); required.
	Run func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int
}

// Run runs the demo and returns nil only if every step did what it says.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Devices == 0 {
		cfg.Devices = DefaultDevices
	}
	if cfg.Devices < 1 || cfg.Devices > MaxDevices {
		return fmt.Errorf("devices must be between 1 and %d", MaxDevices)
	}
	if cfg.Run == nil || cfg.Stdout == nil {
		return errors.New("internal error: demo.Config needs Run and Stdout")
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "airlock-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	d := &demo{ctx: ctx, cfg: cfg, dir: dir, n: cfg.Devices, start: time.Now(), userEnv: cfg.Getenv}
	// The commands run with the demo's own login context and without the
	// caller's admin settings (the narration says so).
	d.cfg.Getenv = func(k string) string {
		switch {
		case k == "XDG_CONFIG_HOME":
			return d.path("config")
		case slices.Contains(adminEnv, k):
			return ""
		}
		return cfg.Getenv(k)
	}
	return d.run()
}

const (
	demoProduct = "acme/router-x1"
	// demoPollInterval is the server's poll interval: short, so that the
	// rollout chapter's simulated fleet moves within seconds.
	demoPollInterval = time.Second
)

type demo struct {
	ctx     context.Context
	cfg     Config
	dir     string
	n       int
	start   time.Time
	step    int
	devices []*demoDevice
	srv     *server.Server
	userEnv func(string) string // the caller's environment (Config.Getenv)
	db      store.Store
	url     string
}

type demoDevice struct {
	name  string
	dir   string
	agent *agent.Agent
}

func (d *demo) path(p ...string) string { return filepath.Join(append([]string{d.dir}, p...)...) }

func (d *demo) title(s string) {
	d.step++
	fmt.Fprintf(d.cfg.Stdout, "\n%d. %s\n", d.step, s)
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.cfg.Stdout, "   "+format+"\n", args...)
}

// cli runs an airlock command in-process, echoing it like a shell session.
func (d *demo) cli(show bool, args ...string) (string, error) {
	if show {
		var parts []string
		for _, a := range args {
			a = strings.ReplaceAll(a, d.dir+string(filepath.Separator), "")
			if strings.ContainsAny(a, " <>&|;*?$'\"") {
				a = "'" + a + "'"
			}
			parts = append(parts, a)
		}
		shown := strings.Join(parts, " ")
		fmt.Fprintf(d.cfg.Stdout, "   $ airlock %s\n", shown)
	}
	var out, errb bytes.Buffer
	if code := d.cfg.Run(d.ctx, args, &out, &errb, d.cfg.Getenv); code != 0 {
		return out.String(), fmt.Errorf("airlock %s: %s", args[0]+" "+args[1], strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (d *demo) run() error {
	ctx, cancel := context.WithTimeout(d.ctx, 5*time.Minute)
	defer cancel()
	fmt.Fprintf(d.cfg.Stdout, "Airlock demo in %s (loopback only)\n", d.dir)
	steps := []func(context.Context) error{
		d.keysAndRepo, d.provision, d.startServer, d.update, d.tampered, d.downgrade, d.badHealth, d.table,
		d.rollout, d.transparency,
	}
	defer d.stopServer()
	for _, s := range steps {
		if err := s(ctx); err != nil {
			return fmt.Errorf("demo step %d failed: %w", d.step, err)
		}
	}
	fmt.Fprintf(d.cfg.Stdout, "\nAll %d steps did what they said, in %.1fs.\n", d.step, time.Since(d.start).Seconds())
	return nil
}

func (d *demo) keysAndRepo(ctx context.Context) error {
	d.title("Signing keys and a TUF repository")
	if err := os.MkdirAll(d.path("keys"), 0o700); err != nil {
		return err
	}
	for i, k := range []string{"root", "targets", "snapshot", "timestamp", "product"} {
		if _, err := d.cli(i == 0, "key", "gen", "--type", "ed25519", "--out", d.path("keys", k+".pem")); err != nil {
			return err
		}
	}
	d.say("(and likewise targets, snapshot, timestamp and product keys; private keys 0600, outside the repository)")
	if _, err := d.cli(true, "repo", "init", "--dir", d.path("repo"), "--root-key", d.path("keys", "root.pem"),
		"--targets-key", d.path("keys", "targets.pem"), "--snapshot-key", d.path("keys", "snapshot.pem"),
		"--timestamp-key", d.path("keys", "timestamp.pem")); err != nil {
		return err
	}
	if _, err := d.cli(true, "repo", "delegate", "--dir", d.path("repo"), "--product", demoProduct,
		"--key", d.path("keys", "product.pem.pub"), "--threshold", "1", "--targets-key", d.path("keys", "targets.pem")); err != nil {
		return err
	}
	d.say("the product key can sign releases under %s/ and nothing else", demoProduct)
	return nil
}

// image writes a firmware image for version; a "broken" image fails the
// devices' health check (its self-test marker).
func (d *demo) image(version string, broken bool) (string, error) {
	p := d.path("build", "firmware-"+version+".img")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", err
	}
	body := make([]byte, 1<<20)
	rand.Read(body)
	head := "AIRLOCK-DEMO-FIRMWARE " + version + " SELFTEST=OK\n"
	if broken {
		head = "AIRLOCK-DEMO-FIRMWARE " + version + " SELFTEST=FAIL\n"
	}
	copy(body, head)
	return p, os.WriteFile(p, body, 0o644)
}

// demoSecurity is each release's anti-rollback epoch.
var demoSecurity = map[string]string{"1.0.0": "1", "1.1.0": "2", "1.2.0": "2", "1.3.0": "3", "1.4.0": "2", "1.5.0": "2",
	demoLogged: "2", demoTargeted: "2"}

func (d *demo) release(ctx context.Context, version string, broken, show bool) error {
	img, err := d.image(version, broken)
	if err != nil {
		return err
	}
	if _, err := d.cli(show, "release", "add", "--dir", d.path("repo"), "--product", demoProduct, "--image", img,
		"--version", version, "--security-version", demoSecurity[version], "--model", "x1", "--hw-rev", ">=2 <4",
		"--compress", "zstd", "--key", d.path("keys", "product.pem")); err != nil {
		return err
	}
	_, err = d.cli(show, "repo", "publish", "--dir", d.path("repo"), "--snapshot-key", d.path("keys", "snapshot.pem"),
		"--timestamp-key", d.path("keys", "timestamp.pem"))
	return err
}

func (d *demo) provision(ctx context.Context) error {
	d.title(fmt.Sprintf("Release 1.0.0, provisioned on %d devices at the factory", d.n))
	if err := d.release(ctx, "1.0.0", false, true); err != nil {
		return err
	}
	bundle := d.path("router-x1-1.0.0.airlock")
	if _, err := d.cli(true, "bundle", "create", "--dir", d.path("repo"), "--product", demoProduct, "--version", "1.0.0", "--out", bundle); err != nil {
		return err
	}
	health := d.path("health.sh")
	script := "#!/bin/sh\n# The firmware's self-test: the image says whether it passed.\nhead -c 64 \"$AIRLOCK_SLOT_PATH\" | grep -q SELFTEST=OK\n"
	if err := os.WriteFile(health, []byte(script), 0o755); err != nil {
		return err
	}
	for i := range d.n {
		dev := &demoDevice{name: fmt.Sprintf("dev-%d", i+1), dir: d.path("devices", fmt.Sprintf("dev-%d", i+1))}
		d.devices = append(d.devices, dev)
		if _, err := d.cli(i == 0, "device", "init", "--dir", dev.dir, "--root", d.path("repo", "public", "metadata", "1.root.json"),
			"--model", "x1", "--hw-rev", "3", "--product", demoProduct, "--slot-size", fmt.Sprint(4<<20),
			"--image", bundle, "--health-cmd", "/bin/sh "+health, "--health-timeout", "10s"); err != nil {
			return err
		}
		if _, err := d.cli(false, "device", "boot", "--dir", dev.dir); err != nil {
			return err
		}
	}
	d.say("(and %d more devices) each trusts only the factory root 1.root.json and runs 1.0.0 from slot A", d.n-1)
	return d.expectVersions("1.0.0", device.StatusCommitted)
}

func (d *demo) startServer(ctx context.Context) error {
	d.title("The HTTPS update server")
	db, err := store.Open(ctx, "sqlite://"+d.path("server", "airlock.db"))
	if err != nil {
		if err := os.MkdirAll(d.path("server"), 0o700); err != nil {
			return err
		}
		if db, err = store.Open(ctx, "sqlite://"+d.path("server", "airlock.db")); err != nil {
			return err
		}
	}
	d.db = db
	srv, err := server.New(server.Config{DataDir: d.path("server"), RepoDir: d.path("repo"), DB: db,
		Listen: "127.0.0.1:0", PollInterval: demoPollInterval, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	d.srv = srv
	go srv.Serve(ctx)
	d.url = "https://" + srv.Addr().String()
	if err := os.WriteFile(d.path("server-ca.pem"), srv.CAPEM(), 0o644); err != nil {
		return err
	}
	d.say("$ airlock serve --data server --repo repo --listen %s", srv.Addr())
	d.say("serving the repository and the device API over TLS 1.2+; CA sha256 %s", srv.CAFingerprint())
	secret, _, err := server.CreateEnrollmentToken(ctx, db, server.EnrollmentTokenOptions{Product: demoProduct, Uses: d.n, TTL: time.Hour}, time.Now())
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.path("enroll.token"), []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	d.say("$ airlock server enroll-token create --data server --uses %d --product %s", d.n, demoProduct)
	for _, dev := range d.devices {
		cfg := fmt.Sprintf("device_config = %q\nserver = %q\nserver_ca = %q\nenrollment_token_file = %q\nidentity_dir = %q\nprogress = \"none\"\nstall_timeout = \"10s\"\n",
			device.Layout{Dir: dev.dir}.ConfigPath(), d.url, d.path("server-ca.pem"), d.path("enroll.token"), filepath.Join(dev.dir, "identity"))
		p := filepath.Join(dev.dir, "agent.toml")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			return err
		}
		ac, err := agent.LoadConfig(p)
		if err != nil {
			return err
		}
		if dev.agent, err = agent.New(ac, agent.Options{}); err != nil {
			return err
		}
	}
	d.say("each device's agent enrolls once with the token, then uses its own client certificate (mTLS)")
	return nil
}

func (d *demo) stopServer() {
	if d.srv != nil {
		// Serve returns when the demo's context ends; close the store after.
		d.srv = nil
	}
}

// poll runs one agent cycle on every device and returns the results.
func (d *demo) poll(ctx context.Context) []*agent.Result {
	var out []*agent.Result
	for _, dev := range d.devices {
		r, err := dev.agent.RunOnce(ctx)
		if r == nil {
			r = &agent.Result{Action: agent.ActionFailed}
		}
		if err != nil && r.Message == "" {
			r.Message = err.Error()
		}
		out = append(out, r)
	}
	return out
}

// pollExpect runs one poll cycle on every device, prints each result, and
// fails unless every device ended with action on version.
func (d *demo) pollExpect(ctx context.Context, action, version string) error {
	for i, r := range d.poll(ctx) {
		d.say("%s: %s %s: %s", d.devices[i].name, r.Action, r.Version, short(r.Message))
		if r.Action != action || r.Version != version {
			return fmt.Errorf("%s: want %s %s, got %s %s: %s", d.devices[i].name, action, version, r.Action, r.Version, r.Message)
		}
	}
	return nil
}

func (d *demo) update(ctx context.Context) error {
	d.title("Release 1.1.0 installed over HTTPS by every device")
	if err := d.release(ctx, "1.1.0", false, true); err != nil {
		return err
	}
	if err := d.pollExpect(ctx, agent.ActionCommitted, "1.1.0"); err != nil {
		return err
	}
	d.say("each: downloaded (resumable), verified against the signed metadata while streaming into slot B,")
	d.say("rebooted into B on trial, re-verified at boot, health check passed, committed, reported to the server")
	if err := d.expectCounter(2); err != nil {
		return err
	}
	d.say("the anti-rollback counter rose to 1.1.0's security version 2, only after the commit")
	return d.expectVersions("1.1.0", device.StatusCommitted)
}

// expectCounter checks every device's anti-rollback counter.
func (d *demo) expectCounter(want uint64) error {
	for _, dev := range d.devices {
		st, err := d.status(dev)
		if err != nil {
			return err
		}
		if st.counter != want {
			return fmt.Errorf("%s: anti-rollback counter is %d, want %d", dev.name, st.counter, want)
		}
	}
	return nil
}

func (d *demo) tampered(ctx context.Context) error {
	d.title("A tampered release is rejected")
	if err := d.release(ctx, "1.2.0", false, false); err != nil {
		return err
	}
	d.say("release 1.2.0 is signed and published; then an attacker on the server alters its payload")
	var hit bool
	err := filepath.WalkDir(d.path("repo", "public", "targets"), func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() || !strings.Contains(p, "1.2.0") {
			return err
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := []byte{0}
		if _, err := f.ReadAt(b, 100); err != nil {
			return err
		}
		b[0] ^= 0xff
		_, err = f.WriteAt(b, 100)
		hit = true
		return err
	})
	if err != nil || !hit {
		return fmt.Errorf("could not tamper with the payload: %v", err)
	}
	for i, r := range d.poll(ctx) {
		d.say("%s: %s %s: %s", d.devices[i].name, r.Action, r.Version, short(r.Message))
		if r.Action != agent.ActionFailed {
			return fmt.Errorf("%s: tampered release not refused: %s", d.devices[i].name, r.Action)
		}
	}
	d.say("nothing was switched: every device still boots 1.1.0 from slot B")
	return d.expectVersions("1.1.0", device.StatusCommitted)
}

func (d *demo) downgrade(ctx context.Context) error {
	d.title("A downgrade is refused")
	bundle := d.path("router-x1-1.0.0-resigned.airlock")
	if _, err := d.cli(false, "bundle", "create", "--dir", d.path("repo"), "--product", demoProduct, "--version", "1.0.0", "--out", bundle); err != nil {
		return err
	}
	d.say("an offline bundle of the old 1.0.0, with fresh, validly signed metadata, is offered to %s:", d.devices[0].name)
	_, err := d.cli(true, "device", "install", "--dir", d.devices[0].dir, "--bundle", bundle)
	if err == nil {
		return errors.New("the downgrade was installed")
	}
	if !strings.Contains(err.Error(), "version") {
		return fmt.Errorf("the downgrade was refused for the wrong reason: %v", err)
	}
	msg := strings.TrimPrefix(err.Error(), "airlock device install: ")
	d.say("refused: %s", short(strings.TrimPrefix(msg, "airlock: error: ")))
	return d.expectVersions("1.1.0", device.StatusCommitted)
}

func (d *demo) badHealth(ctx context.Context) error {
	d.title("A release that fails its health check is rolled back")
	if err := d.release(ctx, "1.3.0", true, false); err != nil {
		return err
	}
	d.say("release 1.3.0 is signed and published, but its self-test fails on the device")
	if err := d.pollExpect(ctx, agent.ActionRolledBack, "1.3.0"); err != nil {
		return err
	}
	d.say("each installed 1.3.0 into slot A, booted it on trial, failed the health check,")
	d.say("marked slot A bad and rebooted into 1.1.0 (slot B); the anti-rollback counter stayed at 2")
	if err := d.expectCounter(2); err != nil {
		return err
	}
	return d.expectVersions("1.1.0", device.StatusCommitted)
}

func (d *demo) table(ctx context.Context) error {
	d.title("Fleet state")
	w := tabwriter.NewWriter(d.cfg.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "   device\tslot\tversion\tcounter\tlast result\tserver: id\tstate\tversion")
	devs, err := d.db.ListDevices(ctx, store.DeviceFilter{})
	if err != nil {
		return err
	}
	for i, dev := range d.devices {
		st, err := d.status(dev)
		if err != nil {
			return err
		}
		var sv store.Device
		if i < len(devs) {
			sv = devs[i]
		}
		fmt.Fprintf(w, "   %s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", dev.name, st.slot, st.version, st.counter, short(st.last), sv.ID, sv.State, sv.CurrentVersion)
	}
	w.Flush()
	if len(devs) != len(d.devices) {
		return fmt.Errorf("the server knows %d devices, want %d", len(devs), len(d.devices))
	}
	for _, sv := range devs {
		if sv.CurrentVersion != "1.1.0" {
			return fmt.Errorf("server: device %s reports %q, want 1.1.0", sv.ID, sv.CurrentVersion)
		}
	}
	return nil
}

type demoStatus struct {
	slot, version, last string
	counter             uint64
	committed           bool
}

func (d *demo) status(dev *demoDevice) (*demoStatus, error) {
	dv, err := device.OpenConfig(durable.OS, device.Layout{Dir: dev.dir}.ConfigPath(), device.Options{HealthOutput: io.Discard})
	if err != nil {
		return nil, err
	}
	s := dv.Status()
	out := &demoStatus{}
	b, err := dv.Booted()
	if err != nil || b == nil {
		return nil, fmt.Errorf("%s has not booted: %v", dev.name, err)
	}
	out.slot, out.version = string(b.Slot), b.Version
	rec, err := dv.SlotRecord(b.Slot)
	if err != nil || rec == nil {
		return nil, fmt.Errorf("%s: no record for booted slot %s: %v", dev.name, b.Slot, err)
	}
	out.committed = rec.Status == device.StatusCommitted
	out.counter = s.Counter
	if r, err := dv.LastResult(); err == nil && r != nil {
		res := "ok"
		if !r.OK {
			res = "failed"
		}
		out.last = r.Operation + " " + res
	}
	return out, nil
}

// expectVersions checks that every device booted version from a slot with
// the given status.
func (d *demo) expectVersions(version, status string) error {
	for _, dev := range d.devices {
		st, err := d.status(dev)
		if err != nil {
			return err
		}
		if st.version != version || (status == device.StatusCommitted && !st.committed) {
			return fmt.Errorf("%s runs %q (committed %v), want %s %s", dev.name, st.version, st.committed, version, status)
		}
	}
	return nil
}

func short(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 110 {
		return s[:107] + "..."
	}
	return s
}

// Rollout chapter settings.
const (
	demoFleetSize = 12
	demoCanary    = 2
	demoStages    = "canary:2,50%,100%"
	// demoRolloutTimeout bounds the chapter.
	demoRolloutTimeout = 30 * time.Second
)

// rollout is the staged-rollout chapter: a simulated fleet in director
// mode runs 1.4.0; 1.5.0 fails its health check on every device; the
// rollout assigns it to the canary group only, the failures cross the
// failure threshold, the rollout pauses itself, and the rest of the fleet
// never sees 1.5.0.
func (d *demo) rollout(ctx context.Context) error {
	d.title("A staged rollout stops a bad release at the canary group")
	for _, v := range []string{"1.4.0", "1.5.0"} {
		img := d.path("build", "firmware-"+v+".img")
		// Small images: the simulated devices keep their slots in memory.
		if err := os.WriteFile(img, []byte(strings.Repeat("AIRLOCK-DEMO-FIRMWARE "+v+"\n", 200)), 0o644); err != nil {
			return err
		}
		if _, err := d.cli(false, "release", "add", "--dir", d.path("repo"), "--product", demoProduct, "--image", img,
			"--version", v, "--security-version", demoSecurity[v], "--model", "x1", "--hw-rev", ">=2 <4",
			"--key", d.path("keys", "product.pem")); err != nil {
			return err
		}
	}
	if _, err := d.cli(false, "repo", "publish", "--dir", d.path("repo"), "--snapshot-key", d.path("keys", "snapshot.pem"),
		"--timestamp-key", d.path("keys", "timestamp.pem")); err != nil {
		return err
	}
	bundlePath := d.path("router-x1-1.4.0.airlock")
	if _, err := d.cli(false, "bundle", "create", "--dir", d.path("repo"), "--product", demoProduct, "--version", "1.4.0", "--out", bundlePath); err != nil {
		return err
	}
	bundleData, err := os.ReadFile(bundlePath)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(d.path("repo", "public", "metadata", "1.root.json"))
	if err != nil {
		return err
	}
	dirRoot, err := server.DirectorRoot(d.path("server"), "")
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.path("director-root.json"), dirRoot, 0o644); err != nil {
		return err
	}
	d.say("releases 1.4.0 and 1.5.0 are signed and published; 1.5.0's self-test fails on every device")
	d.say("$ airlock server director-root --data server > director-root.json")
	secret, _, err := server.CreateEnrollmentToken(ctx, d.db, server.EnrollmentTokenOptions{Product: demoProduct, Uses: demoFleetSize, TTL: time.Hour}, time.Now())
	if err != nil {
		return err
	}
	if err := durable.CreateFile(durable.OS, d.path("fleet.token"), []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	fleet, err := sim.New(sim.Options{
		Server: d.url, ServerCA: d.srv.CAPEM(), Token: secret, Devices: demoFleetSize, FailRate: 1, Seed: 1,
		Model: "x1", HWRev: 2, Product: demoProduct, FactoryRoot: root, InitialBundle: bundleData, DirectorRoot: dirRoot,
		SlotSize: 64 << 10, PollInterval: demoPollInterval,
	})
	if err != nil {
		return err
	}
	d.say("$ airlock sim --server %s --ca server-ca.pem --token-file fleet.token --root repo/public/metadata/1.root.json \\", d.url)
	d.say("      --initial-bundle router-x1-1.4.0.airlock --model x1 --hw-rev 2 --devices %d --fail-rate 1 \\", demoFleetSize)
	d.say("      --director-root director-root.json")
	fctx, stop := context.WithTimeout(ctx, demoRolloutTimeout)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- fleet.Run(fctx) }()
	defer func() { stop(); <-done }()
	for fleet.Stats().Enrolled < demoFleetSize {
		if err := sleepCtx(fctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("the simulated fleet did not enroll: %v", fleet.Stats())
		}
	}
	d.say("%d simulated devices (own keys, slots and state, in memory) enrolled on 1.4.0, in director mode:", demoFleetSize)
	d.say("they install only what the director assigns AND the vendor's repository signed")

	// The admin side runs the admin commands exactly as printed: one
	// airlock login (token and TOTP code), then changes in a row that need
	// no further code, under the session kept in the demo's context file.
	tokenFile, code, err := d.newAdmin()
	if err != nil {
		return err
	}
	if masked := d.maskedAdminEnv(); masked != "" {
		d.say("$ unset %s", masked)
	}
	d.say(`$ export XDG_CONFIG_HOME="$PWD/config"    # the demo's login context stays in the demo directory`)
	if _, err := d.cli(true, "login", "--server", d.url, "--ca", d.path("server-ca.pem"), "--token-file", tokenFile, "--totp", code); err != nil {
		return err
	}
	d.say("(the code alice's authenticator app shows; the session it buys lasts 15 minutes)")
	if _, err := d.cli(true, "approval", "register", "--release", demoProduct+"@1.5.0", "--environment", server.EnvDev); err != nil {
		return err
	}
	filter := "model=x1 hw_rev=2"
	out, err := d.cli(true, "rollout", "create", "--release", demoProduct+"@1.5.0", "--filter", filter, "--stages", demoStages,
		"--success-threshold", "90%", "--failure-threshold", "20%", "--report-deadline", "30s")
	if err != nil {
		return err
	}
	id := strings.TrimSpace(out)
	if _, err := d.cli(true, "rollout", "start", id); err != nil {
		return err
	}
	d.say("three changes within seconds and no second TOTP code: the session from airlock login stands in for it")
	var ro adminapi.RolloutView
	for ro.State != "paused" {
		if err := sleepCtx(fctx, 200*time.Millisecond); err != nil {
			return fmt.Errorf("rollout %s did not pause: state %q (%s); fleet %v", ro.ID, ro.State, ro.Reason, fleet.Stats())
		}
		out, err := d.cli(false, "rollout", "status", "--json", id)
		if err != nil {
			return err
		}
		ro = adminapi.RolloutView{}
		if err := json.Unmarshal([]byte(out), &ro); err != nil {
			return fmt.Errorf("rollout status --json: %w", err)
		}
		if ro.State == "completed" || ro.State == "cancelled" {
			return fmt.Errorf("rollout %s ended %q, want paused", ro.ID, ro.State)
		}
	}
	time.Sleep(500 * time.Millisecond) // let in-flight reports land
	st := fleet.Stats()
	if out, err = d.cli(true, "rollout", "status", id); err != nil {
		return err
	}
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		d.say("%s", line)
	}
	d.say("fleet: %d device(s) installed 1.5.0 and rolled back; %d still run 1.4.0, none runs 1.5.0",
		st.RollBacks, st.Versions["1.4.0"])
	switch {
	case ro.Stage != 0:
		return fmt.Errorf("the rollout paused at stage %d, want the canary stage 0", ro.Stage)
	case st.Installs > demoCanary:
		return fmt.Errorf("%d devices installed the bad release, want at most the canary's %d", st.Installs, demoCanary)
	case st.Versions["1.4.0"] != demoFleetSize || st.Versions["1.5.0"] != 0:
		return fmt.Errorf("fleet versions %v, want all %d on 1.4.0", st.Versions, demoFleetSize)
	}
	d.say("the failure threshold paused the rollout by itself; the other %d devices were never assigned 1.5.0", demoFleetSize-int(st.Installs))
	_, err = d.cli(true, "logout")
	return err
}

// newAdmin creates the demo's admin user alice with 'airlock server user add'
// and 'server user totp' (on the server's database, as on the server host),
// keeps its token in alice.token (0600) and returns the file and the
// current TOTP code, as her authenticator app would show it.
func (d *demo) newAdmin() (tokenFile, code string, err error) {
	out, err := d.cli(false, "server", "user", "add", "--data", d.path("server"), "--name", "alice", "--role", server.RoleAdmin)
	if err != nil {
		return "", "", err
	}
	tokenFile = d.path("alice.token")
	if err := durable.CreateFile(durable.OS, tokenFile, []byte(out), 0o600); err != nil {
		return "", "", err
	}
	d.say("$ airlock server user add --data server --name alice --role admin > alice.token")
	out, err = d.cli(true, "server", "user", "totp", "--data", d.path("server"), "--name", "alice")
	if err != nil {
		return "", "", err
	}
	d.say("(prints a QR code for alice's authenticator app)")
	lines := strings.Fields(out)
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "otpauth://") {
		return "", "", errors.New("server user totp printed no otpauth:// URI")
	}
	secret, err := adminpool.SecretFromURI(lines[len(lines)-1])
	if err != nil {
		return "", "", err
	}
	return tokenFile, server.TOTPCode(secret, time.Now()), nil
}

// adminEnv are the variables the admin commands read; the demo runs them
// without (maskedAdminEnv), so they reach the demo's server.
var adminEnv = []string{"AIRLOCK_SERVER", "AIRLOCK_CA", "AIRLOCK_TOKEN_FILE", "AIRLOCK_TOTP", "AIRLOCK_CONTEXT"}

// maskedAdminEnv lists the admin variables set in the caller's
// environment, which the demo's commands do not see.
func (d *demo) maskedAdminEnv() string {
	var set []string
	for _, k := range adminEnv {
		if d.userEnv(k) != "" {
			set = append(set, k)
		}
	}
	return strings.Join(set, " ")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
