// Command rolloutbench measures a staged rollout on this machine: it makes
// a repository with two small releases, starts `airlock serve` as its own
// process, runs N simulated devices (package sim, director mode) in this
// process, releases 1.1.0 through a staged rollout over the admin API and
// reports the total time, the server's CPU time and peak RSS (from
// /proc/PID), check-ins per second and the database size. bench/rollout.sh
// runs it.
//
// Threat model: none; a benchmark with throwaway keys on loopback.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/adminpool"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/sim"
)

const (
	product = "acme/router-x1"
	model   = "x1"
	// imageSize keeps 10,000 in-memory devices small.
	imageSize = 2 << 10
	slotSize  = 8 << 10
	// adminUsers is the number of admin users (one per state-changing
	// request: the server refuses a replayed TOTP step per user).
	adminUsers = 8
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "rolloutbench: error:", err)
		os.Exit(1)
	}
}

type config struct {
	airlock, work            string
	devices, concurrency     int
	failRate                 float64
	stages, successThreshold string
	failureThreshold         string
	pollInterval, timeout    time.Duration
	reportDeadline           time.Duration
	expectState              string
}

func run() error {
	var c config
	flag.StringVar(&c.airlock, "airlock", "airlock", "airlock binary")
	flag.StringVar(&c.work, "work", "", "work directory (required, created)")
	flag.IntVar(&c.devices, "n", 10000, "simulated devices")
	flag.IntVar(&c.concurrency, "concurrency", sim.DefaultConcurrency, "poll cycles in flight")
	flag.Float64Var(&c.failRate, "fail-rate", 0, "health-check failure probability per install")
	flag.StringVar(&c.stages, "stages", "canary:100,10%,50%,100%", "rollout stages")
	flag.StringVar(&c.successThreshold, "success-threshold", "95%", "")
	flag.StringVar(&c.failureThreshold, "failure-threshold", "2%", "")
	flag.DurationVar(&c.pollInterval, "poll-interval", 10*time.Second, "server poll interval")
	flag.DurationVar(&c.reportDeadline, "report-deadline", 5*time.Minute, "rollout report deadline")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up after")
	flag.StringVar(&c.expectState, "expect", "completed", "the rollout state that ends the run")
	cpuProfile := flag.String("cpuprofile", "", "write this process's (the simulator's) CPU profile to the file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if c.work == "" {
		return errors.New("-work is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "== "+format+"\n", args...)
	}

	logf("repository with releases 1.0.0 and 1.1.0 (%d-byte images)", imageSize)
	v, err := makeRepo(filepath.Join(c.work, "repo"))
	if err != nil {
		return err
	}
	data := filepath.Join(c.work, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	enrollToken, users, err := setupServerData(ctx, data, c.devices)
	if err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logf("starting airlock serve on %s (poll interval %v)", addr, c.pollInterval)
	logFile, err := os.Create(filepath.Join(c.work, "airlock.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	srv := exec.Command(c.airlock, "serve", "--data", data, "--repo", v.r.Dir(), "--listen", addr,
		"--poll-interval", c.pollInterval.String(), "--shutdown-timeout", "5s")
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	if err := waitTLS(ctx, addr); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		return err
	}
	dr, err := server.DirectorRoot(data, "")
	if err != nil {
		return fmt.Errorf("director root: %w", err)
	}

	logf("provisioning and enrolling %d simulated devices (director mode, concurrency %d)", c.devices, c.concurrency)
	fleet, err := sim.New(sim.Options{
		Server: "https://" + addr, ServerCA: caPEM, Token: enrollToken, Devices: c.devices, FailRate: c.failRate, Seed: 1,
		Model: model, HWRev: 1, Product: product, FactoryRoot: v.factoryRoot, InitialBundle: v.bundle,
		DirectorRoot: dr, Concurrency: c.concurrency, SlotSize: slotSize, PollInterval: c.pollInterval,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	simCtx, stopSim := context.WithCancel(ctx)
	simDone := make(chan error, 1)
	go func() { simDone <- fleet.Run(simCtx) }()
	defer func() { stopSim(); <-simDone }()
	enrollStart := time.Now()
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("devices did not enroll: %v", fleet.Stats())
		}
		st := fleet.Stats()
		if st.Enrolled == c.devices {
			break
		}
		fmt.Fprintf(os.Stderr, "   %s\n", st)
	}
	logf("%d devices enrolled in %.1fs", c.devices, time.Since(enrollStart).Seconds())

	admin, err := adminpool.New("https://"+addr, caPEM, users[0], users[1:])
	if err != nil {
		return err
	}
	if _, err := admin.CreateRelease(ctx, adminapi.CreateReleaseRequest{Product: product, Version: "1.1.0", Environment: server.EnvDev}); err != nil {
		return err
	}
	created, err := admin.CreateRollout(ctx, adminapi.CreateRolloutRequest{
		Release: product + "@1.1.0", Filter: "model=" + model, Stages: c.stages,
		SuccessThreshold: c.successThreshold, FailureThreshold: c.failureThreshold,
		ReportDeadline: c.reportDeadline.String(),
	})
	if err != nil {
		return err
	}
	ro := rolloutStatus(created)
	cpu0, err := cpuTicks(srv.Process.Pid)
	if err != nil {
		return err
	}
	polls0 := fleet.Stats().Polls
	start := time.Now()
	if _, err := admin.RolloutAction(ctx, ro.ID, adminapi.RolloutStart, adminapi.RolloutActionRequest{}); err != nil {
		return err
	}
	logf("rollout %s started: %s", ro.ID, c.stages)
	last := ""
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("rollout did not reach %q: last status %s; fleet %v", c.expectState, last, fleet.Stats())
		}
		v, err := admin.GetRollout(ctx, ro.ID)
		if err != nil {
			return err
		}
		ro = rolloutStatus(v)
		line := ro.String()
		if line != last {
			fmt.Fprintf(os.Stderr, "   t=%4.0fs %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		if ro.State == c.expectState || ro.State == "cancelled" || (ro.State == "paused" && c.expectState != "paused") {
			break
		}
	}
	total := time.Since(start)
	cpu1, err := cpuTicks(srv.Process.Pid)
	if err != nil {
		return err
	}
	peak, err := peakRSS(srv.Process.Pid)
	if err != nil {
		return err
	}
	st := fleet.Stats()
	polls := st.Polls - polls0
	dbSize := int64(0)
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(filepath.Join(data, server.DBFile+suffix)); err == nil {
			dbSize += fi.Size()
		}
	}
	cpuSecs := float64(cpu1-cpu0) / clockTicks
	fmt.Printf("rollout benchmark: %d devices, stages %s, poll interval %v, %d cores, %s\n",
		c.devices, c.stages, c.pollInterval, numCPU(), strings.TrimSpace(goVersion()))
	fmt.Printf("  final state:          %s (%s)\n", ro.State, ro.Reason)
	fmt.Printf("  total rollout time:   %.1f s\n", total.Seconds())
	fmt.Printf("  server CPU time:      %.1f s (%.0f%% of one core on average)\n", cpuSecs, 100*cpuSecs/total.Seconds())
	fmt.Printf("  server peak RSS:      %.1f MiB\n", float64(peak)/1024)
	fmt.Printf("  check-ins:            %d (%.0f per second)\n", polls, float64(polls)/total.Seconds())
	fmt.Printf("  database size:        %.1f MiB\n", float64(dbSize)/(1<<20))
	fmt.Printf("  fleet:                %v\n", st)
	if ro.State != c.expectState {
		return fmt.Errorf("rollout ended %q, want %q", ro.State, c.expectState)
	}
	return nil
}

// rolloutStatus prints a rollout's progress on one line.
type rolloutStatus adminapi.RolloutView

func (r rolloutStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s stage %d:", r.State, r.Stage)
	for _, s := range r.StageViews {
		fmt.Fprintf(&b, " [%s assigned %d/%d ok %d fail %d]", s.Label, s.Assigned, s.Target, s.Succeeded, s.Failed)
	}
	return b.String()
}

type vendorRepo struct {
	r           *repo.Repo
	factoryRoot []byte
	bundle      []byte
}

func makeRepo(dir string) (*vendorRepo, error) {
	gen := func() crypto.Signer {
		k, err := keys.Generate(keys.Ed25519)
		if err != nil {
			panic(err)
		}
		return k
	}
	root, targets, snap, ts, prod := gen(), gen(), gen(), gen(), gen()
	r, err := repo.Init(dir, repo.InitOptions{
		RootKeys: []crypto.PublicKey{root.Public()}, RootThreshold: 1, RootSigners: []crypto.Signer{root},
		Targets: targets, Snapshot: snap, Timestamp: ts,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Delegate(product, []crypto.PublicKey{prod.Public()}, 1, targets); err != nil {
		return nil, err
	}
	v := &vendorRepo{r: r}
	for i, version := range []string{"1.0.0", "1.1.0"} {
		img := make([]byte, imageSize)
		for j := range img {
			img[j] = byte(j*31 + i*7 + 1)
		}
		p := filepath.Join(dir, "..", "fw-"+version+".img")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			return nil, err
		}
		if _, err := r.AddRelease(repo.ReleaseOptions{Product: product, ImagePath: p, Version: version, SecurityVersion: 1,
			Models: []string{model}, Compress: repo.CompressNone, Signers: []crypto.Signer{prod}}); err != nil {
			return nil, err
		}
		if _, err := r.Publish(snap, ts); err != nil {
			return nil, err
		}
		if version == "1.0.0" {
			var b bytes.Buffer
			if err := r.CreateBundle(&b, product, version); err != nil {
				return nil, err
			}
			v.bundle = b.Bytes()
		}
	}
	var err2 error
	v.factoryRoot, err2 = os.ReadFile(filepath.Join(r.PublicDir(), "metadata", "1.root.json"))
	return v, err2
}

// setupServerData creates the database with an enrollment token for n
// devices and admin users with TOTP, before the server starts.
func setupServerData(ctx context.Context, data string, n int) (string, []adminpool.User, error) {
	db, err := store.Open(ctx, filepath.Join(data, server.DBFile))
	if err != nil {
		return "", nil, err
	}
	defer db.Close()
	now := time.Now()
	tok, _, err := server.CreateEnrollmentToken(ctx, db, server.EnrollmentTokenOptions{Product: product, Uses: n, TTL: 24 * time.Hour}, now)
	if err != nil {
		return "", nil, err
	}
	kek, _, err := server.LoadOrCreateKEK(filepath.Join(data, server.KEKFile))
	if err != nil {
		return "", nil, err
	}
	if err := server.CheckKEK(ctx, db, kek, now); err != nil {
		return "", nil, err
	}
	users, err := adminpool.CreateUsers(ctx, db, kek, "bench", adminUsers, server.RoleAdmin)
	if err != nil {
		return "", nil, err
	}
	return tok, users, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitTLS(ctx context.Context, addr string) error {
	for range 300 {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // readiness probe only
		if err == nil {
			c.Close()
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("airlock serve on %s did not come up (see airlock.log)", addr)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
const clockTicks = 100

// cpuTicks returns utime+stime of pid.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may contain spaces).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return u + st, nil
}

// peakRSS returns VmHWM of pid in KiB.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\nprocessor") + 1
}

func goVersion() string {
	out, _ := exec.Command("go", "version").Output()
	return string(out)
}
