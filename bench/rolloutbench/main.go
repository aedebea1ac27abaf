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
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/adminapi"
	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/repo"
	"github.com/airlockfw/airlock/server"
	"github.com/airlockfw/airlock/server/adminpool"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/server/store/pgtest"
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
	if os.Getenv(workerEnv) != "" {
		if err := runWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "rolloutbench worker: error:", err)
			os.Exit(1)
		}
		return
	}
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
	rolloutTick              time.Duration
	maxBackoff               time.Duration
	expectState              string
	// db is "sqlite" (in the data directory) or "postgres" (a throwaway
	// cluster started with initdb/pg_ctl); replicas > 1 needs postgres and
	// puts nginx in front of them.
	db       string
	replicas int
	// kills SIGKILLs a seeded replica at seeded moments, killGap apart at
	// most, restarting it each time.
	kills   int
	seed    uint64
	killGap time.Duration
	// audit runs the servers with an audit log and checks it at the end:
	// device.updated entries equal committed updates, Verify passes.
	audit bool
	// quiet keeps the progress lines off stderr.
	quiet bool
	// light runs light devices (sim.LightFleet) instead of real agents,
	// split over procs worker processes (0: in this process); waitAll
	// waits, after the rollout reached expectState, until every device
	// runs the release.
	light   bool
	procs   int
	waitAll bool
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
	flag.DurationVar(&c.rolloutTick, "rollout-tick", 0, "server --rollout-tick (0: its default)")
	flag.DurationVar(&c.maxBackoff, "max-backoff", 0, "devices' longest backoff after failed polls (0: the simulator's default)")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up after")
	flag.StringVar(&c.expectState, "expect", "completed", "the rollout state that ends the run")
	flag.StringVar(&c.db, "db", "sqlite", "sqlite or postgres (a throwaway cluster)")
	flag.IntVar(&c.replicas, "replicas", 1, "airlock serve processes (more than 1: postgres, behind nginx)")
	flag.IntVar(&c.kills, "kills", 0, "SIGKILL a replica this many times during the rollout")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the kill moments, the killed replicas and the devices' failures")
	flag.DurationVar(&c.killGap, "kill-gap", 2*time.Second, "longest time between two kills")
	flag.BoolVar(&c.audit, "audit", false, "run with an audit log and check it against the committed updates")
	flag.BoolVar(&c.light, "light", false, "light devices (identity, version and the real device API; payload checked by length and SHA-256 only) instead of real agents")
	flag.IntVar(&c.procs, "procs", 0, "with -light: split the devices over this many worker processes (0: this process)")
	flag.BoolVar(&c.waitAll, "wait-all", false, "after the rollout completes, wait until every device runs the release")
	flag.Bool("worker", false, "internal: a worker process of -procs")
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
	res, err := bench(ctx, c)
	if res != nil {
		res.print(os.Stdout, c)
	}
	return err
}

// result is what a run measured.
type result struct {
	state, reason      string
	succeeded, failed  int
	total              time.Duration
	cpuSecs            float64
	peakKiB            int64 // highest of the replicas
	polls              int64
	dbSize             int64
	fleet              string
	lightStats         *sim.LightStats // light devices only
	enrollSecs         float64         // from the fleet's start until every device enrolled
	allRunning         time.Duration   // -wait-all: from the start until every device ran 1.1.0
	simCPU             float64         // the simulator's CPU time during the rollout (s)
	enrollCPU          float64         // the servers' CPU time during the enrollment (s)
	replicaPeakKiB     []int64
	kills              int
	updated, committed int // audit device.updated entries for the release; devices running it
	auditEntries       uint64
	replicaCPU         []float64
}

// startFleet starts the run's simulated fleet (see fleet).
func startFleet(ctx context.Context, c config, url string, caPEM []byte, token string, v *vendorRepo, dr []byte, logf func(string, ...any)) (fleet, error) {
	if !c.light {
		if c.procs != 0 {
			return nil, errors.New("-procs needs -light")
		}
		logf("provisioning and enrolling %d simulated devices (real agents, director mode, concurrency %d)", c.devices, c.concurrency)
		f, err := sim.New(sim.Options{
			Server: url, ServerCA: caPEM, Token: token, Devices: c.devices, FailRate: c.failRate, Seed: c.seed,
			Model: model, HWRev: 1, Product: product, FactoryRoot: v.factoryRoot, InitialBundle: v.bundle,
			DirectorRoot: dr, Concurrency: c.concurrency, SlotSize: slotSize, PollInterval: c.pollInterval, MaxBackoff: c.maxBackoff,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		})
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		a := &agentFleet{f: f, cancel: cancel, done: make(chan error, 1)}
		go func() { a.done <- f.Run(ctx) }()
		return a, nil
	}
	wc := workerConfig{Server: url, ServerCA: caPEM, Token: token, Devices: c.devices, FailRate: c.failRate, Seed: c.seed,
		Concurrency: c.concurrency, PollInterval: c.pollInterval, MaxBackoff: c.maxBackoff, HoldPolls: true}
	if c.procs <= 0 {
		logf("enrolling %d light devices in this process (concurrency %d)", c.devices, c.concurrency)
		return startLight(ctx, wc.options())
	}
	logf("enrolling %d light devices in %d worker processes (concurrency %d each)", c.devices, c.procs, c.concurrency)
	return startWorkers(wc, c.procs, os.Stderr)
}

func (r *result) print(w io.Writer, c config) {
	fmt.Fprintf(w, "rollout benchmark: %d devices, stages %s, poll interval %v, %s x%d, %d kills, %d cores, %s\n",
		c.devices, c.stages, c.pollInterval, c.db, c.replicas, r.kills, numCPU(), strings.TrimSpace(goVersion()))
	fmt.Fprintf(w, "  final state:          %s (%s)\n", r.state, r.reason)
	fmt.Fprintf(w, "  devices succeeded:    %d (failed %d)\n", r.succeeded, r.failed)
	fmt.Fprintf(w, "  total rollout time:   %.1f s\n", r.total.Seconds())
	fmt.Fprintf(w, "  server CPU time:      %.1f s (%.0f%% of one core on average; per replica %.1f)\n", r.cpuSecs, 100*r.cpuSecs/r.total.Seconds(), r.replicaCPU)
	fmt.Fprintf(w, "  server peak RSS:      %.1f MiB (highest replica)\n", float64(r.peakKiB)/1024)
	fmt.Fprintf(w, "  check-ins:            %d (%.0f per second)\n", r.polls, float64(r.polls)/r.total.Seconds())
	if c.db == "sqlite" {
		fmt.Fprintf(w, "  database size:        %.1f MiB (%.0f bytes per device)\n", float64(r.dbSize)/(1<<20), float64(r.dbSize)/float64(c.devices))
	} else {
		fmt.Fprintf(w, "  database size:        %.1f MiB (%.0f bytes per device, pg_database_size)\n", float64(r.dbSize)/(1<<20), float64(r.dbSize)/float64(c.devices))
	}
	if c.audit {
		fmt.Fprintf(w, "  audit:                %d device.updated entries for %d committed updates; %d entries, verified\n", r.updated, r.committed, r.auditEntries)
	}
	if ls := r.lightStats; ls != nil {
		mode := "in the bench process"
		if c.procs > 0 {
			mode = fmt.Sprintf("in %d worker processes", c.procs)
		}
		fmt.Fprintf(w, "  light devices:        %s; simulator CPU during the rollout %.1f s\n", mode, r.simCPU)
		fmt.Fprintf(w, "  enrollment:           %.1f s for %d devices (%.0f per second; POST %s p50 %v p99 %v)\n",
			r.enrollSecs, c.devices, float64(c.devices)/r.enrollSecs, "/api/v1/enroll", ms(ls.Enroll.Quantile(0.5)), ms(ls.Enroll.Quantile(0.99)))
		fmt.Fprintf(w, "  enrollment CPU:       %.1f s of server CPU (%.0f enrollments per server CPU-second)\n", r.enrollCPU, float64(c.devices)/r.enrollCPU)
		if r.cpuSecs > 0 {
			fmt.Fprintf(w, "  check-ins per core:   %.0f per server CPU-second (%d check-ins, %.1f s server CPU)\n",
				float64(r.polls)/r.cpuSecs, r.polls, r.cpuSecs)
		}
		fmt.Fprintf(w, "  check-in latency:     p50 %v p90 %v p99 %v (%d check-ins, whole run)\n",
			ms(ls.Checkin.Quantile(0.5)), ms(ls.Checkin.Quantile(0.9)), ms(ls.Checkin.Quantile(0.99)), ls.Checkin.Count())
		fmt.Fprintf(w, "  other requests:       director/payload GET p99 %v, status POST p99 %v; TLS handshakes %d, resumed %d\n",
			ms(ls.Fetch.Quantile(0.99)), ms(ls.Status.Quantile(0.99)), ls.Handshakes, ls.Resumed)
		if r.allRunning > 0 {
			fmt.Fprintf(w, "  every device on 1.1.0: %.1f s after the start\n", r.allRunning.Seconds())
		}
		for i := range r.replicaCPU {
			fmt.Fprintf(w, "  replica %d:            CPU %.1f s (whole run), peak RSS %.1f MiB\n", i, r.replicaCPU[i], float64(r.replicaPeakKiB[i])/1024)
		}
	}
	fmt.Fprintf(w, "  fleet:                %v\n", r.fleet)
}

func bench(ctx context.Context, c config) (*result, error) {
	logf := func(format string, args ...any) {
		if !c.quiet {
			fmt.Fprintf(os.Stderr, "== "+format+"\n", args...)
		}
	}
	if c.replicas < 1 || (c.replicas > 1 && c.db != "postgres") {
		return nil, fmt.Errorf("-replicas %d: more than one replica needs -db postgres", c.replicas)
	}

	logf("repository with releases 1.0.0 and 1.1.0 (%d-byte images)", imageSize)
	v, err := makeRepo(filepath.Join(c.work, "repo"))
	if err != nil {
		return nil, err
	}
	data := filepath.Join(c.work, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	dsn := filepath.Join(data, server.DBFile)
	var pg *pgtest.Cluster
	switch c.db {
	case "sqlite":
	case "postgres":
		logf("starting a throwaway PostgreSQL cluster")
		if pg, err = pgtest.Start(ctx); err != nil {
			return nil, err
		}
		defer pg.Stop()
		if dsn, err = pg.NewDatabase(ctx); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("-db %q: want sqlite or postgres", c.db)
	}
	enrollToken, users, err := setupServerData(ctx, data, dsn, c.devices)
	if err != nil {
		return nil, err
	}

	var rs []*replica
	for i := range c.replicas {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		lf, err := os.Create(filepath.Join(c.work, "airlock-"+itoa(i)+".log"))
		if err != nil {
			return nil, err
		}
		defer lf.Close()
		args := []string{"serve", "--data", data, "--db", dsn, "--repo", v.r.Dir(), "--listen", addr,
			"--poll-interval", c.pollInterval.String(), "--shutdown-timeout", "5s"}
		if c.rolloutTick > 0 {
			args = append(args, "--rollout-tick", c.rolloutTick.String())
		}
		if c.audit {
			args = append(args, "--audit-dir", filepath.Join(c.work, "audit"), "--audit-key", filepath.Join(c.work, "audit.key"))
		}
		rs = append(rs, &replica{idx: i, addr: addr, args: args, log: lf})
	}
	defer func() {
		for _, r := range rs {
			r.stop()
		}
	}()
	// The first replica creates the CAs and keys in the data directory;
	// the others start once they exist.
	for _, r := range rs {
		logf("starting airlock serve %d on %s (poll interval %v)", r.idx, r.addr, c.pollInterval)
		if err := r.start(ctx, c.airlock); err != nil {
			return nil, err
		}
	}
	addr := rs[0].addr
	if c.replicas > 1 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		logf("nginx (stream, TLS passthrough) on %s in front of %d replicas", addr, len(rs))
		stopLB, err := nginxLB(filepath.Join(c.work, "nginx"), addr, rs)
		if err != nil {
			return nil, err
		}
		defer stopLB()
	}
	caPEM, err := os.ReadFile(filepath.Join(data, "ca.pem"))
	if err != nil {
		return nil, err
	}
	dr, err := server.DirectorRoot(data, "")
	if err != nil {
		return nil, fmt.Errorf("director root: %w", err)
	}

	var cpuE0 float64
	for _, r := range rs {
		cpu, _ := r.usage()
		cpuE0 += cpu
	}
	fl, err := startFleet(ctx, c, "https://"+addr, caPEM, enrollToken, v, dr, logf)
	if err != nil {
		return nil, err
	}
	defer fl.stop()
	enrollStart := time.Now()
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("devices did not enroll: %v", fl)
		}
		if wf, ok := fl.(*workerFleet); ok && wf.err() != nil {
			return nil, wf.err()
		}
		if fl.enrolled() == c.devices {
			break
		}
		logf("   %s", fl)
	}
	res := &result{enrollSecs: time.Since(enrollStart).Seconds()}
	for _, r := range rs {
		cpu, _ := r.usage()
		res.enrollCPU += cpu
	}
	res.enrollCPU -= cpuE0
	logf("%d devices enrolled in %.1fs", c.devices, res.enrollSecs)

	admin, err := adminpool.New("https://"+addr, caPEM, users[0], users[1:])
	if err != nil {
		return nil, err
	}
	if _, err := admin.CreateRelease(ctx, adminapi.CreateReleaseRequest{Product: product, Version: "1.1.0", Environment: server.EnvDev}); err != nil {
		return nil, err
	}
	created, err := admin.CreateRollout(ctx, adminapi.CreateRolloutRequest{
		Release: product + "@1.1.0", Filter: "model=" + model, Stages: c.stages,
		SuccessThreshold: c.successThreshold, FailureThreshold: c.failureThreshold,
		ReportDeadline: c.reportDeadline.String(),
	})
	if err != nil {
		return nil, err
	}
	ro := rolloutStatus(created)
	var cpu0 float64
	for _, r := range rs {
		cpu, _ := r.usage()
		cpu0 += cpu
	}
	polls0 := fl.polls()
	sim0 := fl.simCPU()
	start := time.Now()
	// measure fills in what the run measured so far (also when it ends
	// early, so that a run cut short still reports its figures).
	measure := func(ctx context.Context) error {
		res.fleet = fl.String()
		res.lightStats = fl.light()
		res.polls = fl.polls() - polls0
		res.simCPU = fl.simCPU() - sim0
		res.cpuSecs, res.replicaCPU, res.replicaPeakKiB = 0, nil, nil
		for _, r := range rs {
			cpu, peak := r.usage()
			res.cpuSecs += cpu
			res.replicaCPU = append(res.replicaCPU, cpu)
			res.replicaPeakKiB = append(res.replicaPeakKiB, peak)
			res.peakKiB = max(res.peakKiB, peak)
		}
		res.cpuSecs -= cpu0
		var err error
		res.dbSize, err = databaseSize(ctx, dsn)
		return err
	}
	cutShort := func() *result {
		if res.state == "" {
			res.total, res.state = time.Since(start), "cut short ("+ro.String()+")"
			res.succeeded, res.failed = ro.Total.Succeeded, ro.Total.Failed
		}
		mctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		measure(mctx)
		return res
	}
	if _, err := admin.RolloutAction(ctx, ro.ID, adminapi.RolloutStart, adminapi.RolloutActionRequest{}); err != nil {
		return cutShort(), fmt.Errorf("starting the rollout: %w", err)
	}
	logf("rollout %s started: %s", ro.ID, c.stages)
	// Light devices poll from now on (their first polls spread over one
	// poll interval): enrollment and check-ins are measured apart.
	fl.startPolling()

	killCtx, stopKills := context.WithCancel(ctx)
	defer stopKills()
	type killRes struct {
		n   int
		err error
	}
	killDone := make(chan killRes, 1)
	go func() {
		n, err := killer(killCtx, c.airlock, rs, c.kills, c.seed, c.killGap/5, c.killGap, logf)
		killDone <- killRes{n, err}
	}()
	last := ""
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return cutShort(), fmt.Errorf("rollout did not reach %q: last status %s; fleet %v", c.expectState, last, fl)
		}
		v, err := admin.GetRollout(ctx, ro.ID)
		if err != nil {
			continue // a killed replica; the next poll goes to a live one
		}
		ro = rolloutStatus(v)
		line := ro.String()
		if line != last {
			logf("   t=%4.0fs %s", time.Since(start).Seconds(), line)
			last = line
		}
		if ro.State == c.expectState || ro.State == "cancelled" || (ro.State == "paused" && c.expectState != "paused") {
			break
		}
	}
	res.total, res.state, res.reason = time.Since(start), ro.State, ro.Reason
	res.succeeded, res.failed = ro.Total.Succeeded, ro.Total.Failed
	if c.waitAll && ro.State == c.expectState {
		// Every device states the release on a check-in after its
		// install: wait until all of them run it.
		for fl.running("1.1.0") < c.devices {
			if err := sleep(ctx, time.Second); err != nil {
				return cutShort(), fmt.Errorf("%d of %d devices run 1.1.0: %v", fl.running("1.1.0"), c.devices, fl)
			}
		}
		res.allRunning = time.Since(start)
		logf("   t=%4.0fs every device runs 1.1.0", res.allRunning.Seconds())
	}
	stopKills()
	kr := <-killDone
	res.kills = kr.n
	if kr.err != nil {
		return res, kr.err
	}
	if err := measure(ctx); err != nil {
		return res, err
	}
	if ro.State != c.expectState {
		return res, fmt.Errorf("rollout ended %q, want %q", ro.State, c.expectState)
	}
	if c.audit {
		if err := checkAudit(ctx, c, fl, rs, res, logf); err != nil {
			return res, err
		}
	}
	return res, nil
}

// checkAudit waits until every device's reports have reached the audit
// log (agents retry them until acknowledged), then stops the servers and
// checks the log: one device.updated entry per committed update of 1.1.0,
// and audit.Verify passes.
func checkAudit(ctx context.Context, c config, fl fleet, rs []*replica, res *result, logf func(string, ...any)) error {
	dir := filepath.Join(c.work, "audit")
	count := func() (int, error) {
		es, err := audit.Query(dir, audit.Filter{Action: audit.DeviceUpdated, Release: product + "@1.1.0"})
		return len(es), err
	}
	// Devices may still be installing when the rollout completes (its
	// success threshold may be below 100%): wait until the fleet's commits
	// and the log's entries agree and have not moved for three checks.
	deadline := time.Now().Add(60 * time.Second)
	stable, prev := 0, -1
	for stable < 3 {
		committed := fl.running("1.1.0")
		n, err := count()
		switch {
		case err == nil && n == committed && committed == prev:
			stable++
		default:
			stable = 0
		}
		prev = committed
		if time.Now().After(deadline) {
			return fmt.Errorf("audit log: %d device.updated entries for %d committed updates after 60s (%v)", n, committed, err)
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	res.committed = fl.running("1.1.0")
	for _, r := range rs {
		r.stop()
	}
	n, err := count()
	if err != nil {
		return err
	}
	res.updated = n
	signer, err := audit.LoadSigner(filepath.Join(c.work, "audit.key"))
	if err != nil {
		return err
	}
	rep, err := audit.Verify(dir, signer.Public())
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	res.auditEntries = rep.Entries
	if res.updated != res.committed {
		return fmt.Errorf("audit log: %d device.updated entries for %d committed updates", res.updated, res.committed)
	}
	logf("audit log verified: %d entries, %d device.updated = %d committed updates", rep.Entries, res.updated, res.committed)
	return nil
}

// databaseSize returns the size of the SQLite files or of the PostgreSQL
// database.
func ms(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

func databaseSize(ctx context.Context, dsn string) (int64, error) {
	if !strings.HasPrefix(dsn, "postgres") {
		var n int64
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if fi, err := os.Stat(dsn + suffix); err == nil {
				n += fi.Size()
			}
		}
		return n, nil
	}
	db, err := store.Open(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	st, err := db.Stats(ctx)
	return st.SizeBytes, err
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
func setupServerData(ctx context.Context, data, dsn string, n int) (string, []adminpool.User, error) {
	db, err := store.Open(ctx, dsn)
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
