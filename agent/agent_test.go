package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
)

const testToken = "enroll-7f3a9c1e5b2d4068a1c3e5f7091b2d4f"

// serverEnv is a vendor repository behind a device API over mTLS.
type serverEnv struct {
	v      *vendor
	api    *deviceAPI
	srvPKI *pki
	url    string
	devCfg string
	dir    string // agent directory (config, CA, token, identity)
	logs   *bytes.Buffer
}

func newServerEnv(t *testing.T) *serverEnv {
	t.Helper()
	e := &serverEnv{v: newVendor(t), srvPKI: newPKI(t, "server"), dir: t.TempDir(), logs: &bytes.Buffer{}}
	e.v.release("1.0.0", 1)
	initial := e.v.bundle("1.0.0")
	e.v.release("1.1.0", 1)
	devCA := newPKI(t, "device")
	e.api = &deviceAPI{ca: devCA, token: testToken, interval: 60, repo: newRepoHandler(e.v.r.PublicDir()), serials: map[string]bool{}}
	pool := x509.NewCertPool()
	pool.AddCert(devCA.caCert)
	e.url = startTLS(t, "127.0.0.1:0", e.api, e.srvPKI.server, pool).URL
	e.devCfg = newDevice(t, e.v, initial)
	e.srvPKI.writeCA(t, e.dir)
	if err := os.WriteFile(filepath.Join(e.dir, "enroll.token"), []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *serverEnv) agent(t *testing.T, extra string) *Agent {
	t.Helper()
	text := fmt.Sprintf(`device_config = %q
server = %q
server_ca = "server-ca.pem"
server_ca_sha256 = %q
enrollment_token_file = "enroll.token"
identity_dir = "identity"
progress = "none"
%s`, e.devCfg, e.url, e.srvPKI.fingerprint(), extra)
	p := filepath.Join(e.dir, "agent.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(e.logs, nil)), ResumeBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEnrollCheckinUpdateCommitAndRollback(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, "")
	ctx := context.Background()

	// 1.0.0 -> 1.1.0: enroll, check in, install, reboot, commit.
	res, err := a.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("result = %+v, want committed 1.1.0", res)
	}
	want := []string{"downloading 1.1.0", "verified 1.1.0", "installed 1.1.0", "rebooted 1.1.0", "committed 1.1.0"}
	if diff := cmp.Diff(want, e.api.kinds()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if e.api.enrolls != 1 || len(e.api.checkins) != 1 {
		t.Errorf("enrolls = %d, check-ins = %d; want 1, 1", e.api.enrolls, len(e.api.checkins))
	}
	if got := e.api.checkins[0]; got.CurrentVersion != "1.0.0" || got.State != deviceapi.StateIdle || got.SecurityCounter != 1 {
		t.Errorf("check-in = %+v", got)
	}
	if a.PollInterval() != 60*time.Second {
		t.Errorf("poll interval = %v, want the server's 60s", a.PollInterval())
	}
	fi, err := os.Stat(filepath.Join(e.dir, "identity", KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("device key: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// Up to date: no enrollment, no download.
	e.api.resetReports()
	res, err = a.RunOnce(ctx)
	if err != nil || res.Action != ActionNone {
		t.Fatalf("second poll = %+v, %v; want none", res, err)
	}
	if want := "up to date: version 1.1.0 runs, the newest release available for this device"; res.Message != want || res.Version != "1.1.0" {
		t.Errorf("second poll: version %q, message %q; want 1.1.0, %q", res.Version, res.Message, want)
	}
	if e.api.enrolls != 1 || len(e.api.kinds()) != 0 {
		t.Errorf("second poll: enrolls = %d, reports %q", e.api.enrolls, e.api.kinds())
	}

	// 1.2.0 fails its health check: rolled back and reported.
	e.v.release("1.2.0", 2)
	devDir := filepath.Dir(e.devCfg)
	if err := os.WriteFile(filepath.Join(devDir, "fail-health"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = a.RunOnce(ctx)
	if !errors.Is(err, ErrRolledBack) || res.Action != ActionRolledBack {
		t.Fatalf("RunOnce = %+v, %v; want rolled back", res, err)
	}
	want = []string{"downloading 1.2.0", "verified 1.2.0", "installed 1.2.0", "rebooted 1.2.0", "rolled_back 1.2.0"}
	if diff := cmp.Diff(want, e.api.kinds()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
	if msg := e.api.lastReport().Message; !strings.Contains(msg, "health check failed") {
		t.Errorf("rolled_back message %q does not say why", msg)
	}
	if v, st := deviceVersion(t, e.devCfg); v != "1.1.0" || st.Trial != "" {
		t.Fatalf("after rollback the device runs %q (boot %+v), want 1.1.0", v, st)
	}

	// The rolled-back release is not retried.
	e.api.resetReports()
	if res, err := a.RunOnce(ctx); err != nil || res.Action != ActionNone {
		t.Fatalf("poll after rollback = %+v, %v; want none", res, err)
	}

	// A fixed release installs.
	os.Remove(filepath.Join(devDir, "fail-health"))
	e.v.release("1.3.0", 2)
	if res, err := a.RunOnce(ctx); err != nil || res.Action != ActionCommitted || res.Version != "1.3.0" {
		t.Fatalf("poll = %+v, %v; want committed 1.3.0", res, err)
	}
	if strings.Contains(e.logs.String(), testToken) {
		t.Error("the enrollment token appears in the log")
	}
}

func TestEnrollmentRefusedWithWrongToken(t *testing.T) {
	e := newServerEnv(t)
	e.api.token = "another-token"
	before := fingerprint(t, e.devCfg)
	_, err := e.agent(t, "").RunOnce(context.Background())
	if !errors.Is(err, ErrAPI) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("RunOnce error = %v, want an API error with 403", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "identity", CertFile)); !os.IsNotExist(err) {
		t.Errorf("a certificate was stored after a refused enrollment: %v", err)
	}
	if fingerprint(t, e.devCfg) != before {
		t.Error("the device changed")
	}
}

func TestServerNotSignedByPinnedCARefused(t *testing.T) {
	e := newServerEnv(t)
	// The config trusts (and pins) another CA than the one that signed
	// the server's certificate.
	other := newPKI(t, "other")
	other.writeCA(t, e.dir)
	e.srvPKI = other
	_, err := e.agent(t, "").RunOnce(context.Background())
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("RunOnce error = %v, want an unknown authority error", err)
	}
	if e.api.enrolls != 0 {
		t.Error("the agent enrolled with an untrusted server")
	}
}

func TestRebootCommandThenHealthAfterBoot(t *testing.T) {
	e := newServerEnv(t)
	a := e.agent(t, `reboot_command = ["true"]`)
	ctx := context.Background()
	res, err := a.RunOnce(ctx)
	if err != nil || res.Action != ActionReboot {
		t.Fatalf("RunOnce = %+v, %v; want reboot", res, err)
	}
	// The reboot did not happen (the command is `true`): the next poll
	// reboots again instead of installing.
	if res, err := a.RunOnce(ctx); err != nil || res.Action != ActionReboot || res.Version != "1.1.0" {
		t.Fatalf("RunOnce = %+v, %v; want reboot 1.1.0 again", res, err)
	}
	if got := e.api.checkins[len(e.api.checkins)-1].State; got != deviceapi.StateInstalled {
		t.Errorf("check-in state = %q, want %q", got, deviceapi.StateInstalled)
	}
	// The boot stage runs at boot (the bootloader / `airlock device boot`).
	d, err := device.OpenConfig(durable.OS, e.devCfg, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if br, err := d.Boot(ctx); err != nil || !br.Trial {
		t.Fatalf("boot = %+v, %v", br, err)
	}
	e.api.resetReports()
	res, err = a.RunOnce(ctx)
	if err != nil || res.Action != ActionCommitted {
		t.Fatalf("RunOnce after boot = %+v, %v; want committed", res, err)
	}
	if diff := cmp.Diff([]string{"rebooted 1.1.0", "committed 1.1.0"}, e.api.kinds()); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	e := newRepoEnv(t)
	_, a := e.device(t, "2s")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
}

func TestBackoffDoublesUpToTheCap(t *testing.T) {
	a := &Agent{cfg: &Config{MaxBackoff: 10 * time.Minute}, interval: time.Hour}
	var got []time.Duration
	var b time.Duration
	for range 7 {
		b = a.nextBackoff(b)
		got = append(got, b)
	}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff (-want +got):\n%s", diff)
	}
	for range 1000 {
		if j := jitter(time.Hour); j < 54*time.Minute || j > 66*time.Minute {
			t.Fatalf("jitter(1h) = %v, outside ±10%%", j)
		}
	}
}
