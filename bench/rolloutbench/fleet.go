package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/airlockfw/airlock/sim"
)

// fleet is the simulated fleet of a run: real agents (package sim's
// Fleet), light devices in this process, or light devices split over
// worker processes.
type fleet interface {
	// enrolled is the number of devices holding a certificate; polls the
	// number of poll cycles so far; running the number of devices running
	// version.
	enrolled() int
	polls() int64
	running(version string) int
	// light returns the light devices' merged stats (nil: real agents).
	light() *sim.LightStats
	// startPolling lets held light devices poll (no-op otherwise).
	startPolling()
	// simCPU is the simulator's CPU time so far (s): this process, or the
	// worker processes.
	simCPU() float64
	String() string
	// stop ends the fleet and waits for it.
	stop()
}

// agentFleet is package sim's fleet of real agents, in this process.
type agentFleet struct {
	f      *sim.Fleet
	cancel func()
	done   chan error
}

func (a *agentFleet) stop() { a.cancel(); <-a.done }

func (a *agentFleet) enrolled() int              { return a.f.Stats().Enrolled }
func (a *agentFleet) polls() int64               { return a.f.Stats().Polls }
func (a *agentFleet) running(version string) int { return a.f.Stats().Versions[version] }
func (a *agentFleet) light() *sim.LightStats     { return nil }
func (a *agentFleet) startPolling()              {}
func (a *agentFleet) simCPU() float64            { return selfCPU() }
func (a *agentFleet) String() string             { return a.f.Stats().String() }

func selfCPU() float64 {
	t, _ := cpuTicks(os.Getpid())
	return float64(t) / clockTicks
}

// lightFleet is light devices in this process.
type lightFleet struct {
	f      *sim.LightFleet
	cancel func()
	done   chan error
}

func startLight(ctx context.Context, opts sim.LightOptions) (*lightFleet, error) {
	f, err := sim.NewLight(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &lightFleet{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { l.done <- f.Run(ctx) }()
	return l, nil
}

func (l *lightFleet) enrolled() int              { return int(l.f.Stats().Enrolled) }
func (l *lightFleet) polls() int64               { return l.f.Stats().Polls }
func (l *lightFleet) running(version string) int { return l.f.Stats().Versions[version] }
func (l *lightFleet) light() *sim.LightStats     { s := l.f.Stats(); return &s }
func (l *lightFleet) startPolling()              { l.f.StartPolling() }
func (l *lightFleet) simCPU() float64            { return selfCPU() }
func (l *lightFleet) String() string             { return l.f.Stats().String() }
func (l *lightFleet) stop()                      { l.cancel(); <-l.done }

// workerEnv marks a worker process: rolloutbench (or its test binary)
// re-executed with a device range, reading its workerConfig as one JSON
// line on stdin and writing its sim.LightStats as JSON lines on stdout,
// once a second and once more when stdin closes (then it exits).
const workerEnv = "ROLLOUTBENCH_WORKER"

// workerConfig is what a worker process runs: sim.LightOptions without
// the logger.
type workerConfig struct {
	Server       string        `json:"server"`
	ServerCA     []byte        `json:"server_ca"`
	Token        string        `json:"token"`
	First        int           `json:"first"`
	Devices      int           `json:"devices"`
	FailRate     float64       `json:"fail_rate"`
	Seed         uint64        `json:"seed"`
	Concurrency  int           `json:"concurrency"`
	PollInterval time.Duration `json:"poll_interval"`
	MaxBackoff   time.Duration `json:"max_backoff"`
	HoldPolls    bool          `json:"hold_polls"`
}

func (w workerConfig) options() sim.LightOptions {
	return sim.LightOptions{Server: w.Server, ServerCA: w.ServerCA, Token: w.Token, First: w.First, Devices: w.Devices,
		FailRate: w.FailRate, Seed: w.Seed, Model: model, HWRev: 1, Product: product, Version: "1.0.0",
		ConsistentSnapshot: true, Concurrency: w.Concurrency, PollInterval: w.PollInterval, MaxBackoff: w.MaxBackoff,
		HoldPolls: w.HoldPolls,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
}

// maxWorkerLine bounds a line between a worker and its parent (a
// LightStats line is a few KiB).
const maxWorkerLine = 1 << 20

// runWorker is a worker process's main.
func runWorker() error {
	in := bufio.NewReaderSize(os.Stdin, 64<<10)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("worker: reading the config: %w", err)
	}
	var wc workerConfig
	if err := json.Unmarshal(line, &wc); err != nil {
		return fmt.Errorf("worker: config: %w", err)
	}
	f, err := sim.NewLight(wc.options())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// A line on stdin starts the polls (HoldPolls); stdin closed: stop.
	go func() {
		for {
			if _, err := in.ReadBytes('\n'); err != nil {
				cancel()
				return
			}
			f.StartPolling()
		}
	}()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	enc := json.NewEncoder(os.Stdout)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := enc.Encode(f.Stats()); err != nil {
				cancel()
			}
		case err := <-done:
			enc.Encode(f.Stats())
			return err
		}
	}
}

// workerFleet is light devices split over worker processes.
type workerFleet struct {
	mu    sync.Mutex
	last  []sim.LightStats
	cpu   []float64
	errs  []error
	procs []*exec.Cmd
	ins   []io.WriteCloser
	wg    sync.WaitGroup
}

// startWorkers starts procs worker processes (this executable with
// workerEnv set), splitting the devices of base between them.
func startWorkers(base workerConfig, procs int, stderr io.Writer) (*workerFleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	w := &workerFleet{last: make([]sim.LightStats, procs), cpu: make([]float64, procs), errs: make([]error, procs)}
	first := base.First
	for i := range procs {
		wc := base
		wc.First = first
		wc.Devices = base.Devices / procs
		if i < base.Devices%procs {
			wc.Devices++
		}
		first += wc.Devices
		cmd := exec.Command(exe, "-worker")
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			w.stop()
			return nil, err
		}
		w.procs, w.ins = append(w.procs, cmd), append(w.ins, in)
		line, _ := json.Marshal(wc)
		if _, err := in.Write(append(line, '\n')); err != nil {
			w.stop()
			return nil, err
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), maxWorkerLine)
			for sc.Scan() {
				var st sim.LightStats
				if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
					w.setErr(i, fmt.Errorf("worker %d: %w", i, err))
					continue
				}
				cpu := 0.0
				if t, err := cpuTicks(cmd.Process.Pid); err == nil {
					cpu = float64(t) / clockTicks
				}
				w.mu.Lock()
				w.last[i] = st
				w.cpu[i] = max(w.cpu[i], cpu)
				w.mu.Unlock()
			}
			if err := cmd.Wait(); err != nil {
				w.setErr(i, fmt.Errorf("worker %d: %w", i, err))
			}
		}()
	}
	return w, nil
}

func (w *workerFleet) setErr(i int, err error) {
	w.mu.Lock()
	w.errs[i] = err
	w.mu.Unlock()
}

// merged returns the workers' last stats merged.
func (w *workerFleet) merged() sim.LightStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	var s sim.LightStats
	for _, st := range w.last {
		if err := s.Merge(st); err != nil {
			s.LastError = err.Error()
		}
	}
	return s
}

// err returns the first worker error.
func (w *workerFleet) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

func (w *workerFleet) enrolled() int              { s := w.merged(); return int(s.Enrolled) }
func (w *workerFleet) polls() int64               { return w.merged().Polls }
func (w *workerFleet) running(version string) int { return w.merged().Versions[version] }
func (w *workerFleet) light() *sim.LightStats     { s := w.merged(); return &s }

// startPolling writes a line to every worker's stdin.
func (w *workerFleet) startPolling() {
	for _, in := range w.ins {
		in.Write([]byte("poll\n"))
	}
}
func (w *workerFleet) String() string {
	s := w.merged()
	return fmt.Sprintf("%d workers: %v", len(w.procs), s)
}

func (w *workerFleet) simCPU() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var t float64
	for _, c := range w.cpu {
		t += c
	}
	return t
}

// stop closes the workers' stdin (they print their final stats and exit)
// and waits for them.
func (w *workerFleet) stop() {
	for _, in := range w.ins {
		in.Close()
	}
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		for _, p := range w.procs {
			p.Process.Kill()
		}
		<-done
	}
	w.ins = nil
}
