package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is one `airlock serve` process; it is restarted on the same
// address after a kill.
type replica struct {
	idx  int
	addr string
	args []string
	log  *os.File

	mu  sync.Mutex
	cmd *exec.Cmd
	// cpu is the CPU time (clock ticks) of the processes already gone;
	// peak the highest VmHWM seen (KiB).
	cpu  int64
	peak int64
}

func (r *replica) start(ctx context.Context, airlock string) error {
	cmd := exec.Command(airlock, r.args...)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if err := cmd.Start(); err != nil {
		return err
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	return waitTLS(ctx, r.addr)
}

// account adds the running process's CPU time and peak RSS to r's totals;
// r.mu must be held.
func (r *replica) account() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	if t, err := cpuTicks(r.cmd.Process.Pid); err == nil {
		r.cpu += t
	}
	if p, err := peakRSS(r.cmd.Process.Pid); err == nil {
		r.peak = max(r.peak, p)
	}
}

// kill SIGKILLs the process and reaps it.
func (r *replica) kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.account()
	r.cmd.Process.Signal(syscall.SIGKILL)
	r.cmd.Wait()
	r.cmd = nil
}

// stop ends the process with SIGTERM (a clean shutdown), accounting its CPU.
func (r *replica) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.account()
	r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	r.cmd = nil
}

// usage returns the CPU time (s) and peak RSS (KiB) so far, the running
// process included.
func (r *replica) usage() (float64, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cpu, peak := r.cpu, r.peak
	if r.cmd != nil && r.cmd.Process != nil {
		if t, err := cpuTicks(r.cmd.Process.Pid); err == nil {
			cpu += t
		}
		if p, err := peakRSS(r.cmd.Process.Pid); err == nil {
			peak = max(peak, p)
		}
	}
	return float64(cpu) / clockTicks, peak
}

// killer SIGKILLs a seeded choice of replica at seeded moments until n
// kills are done or ctx ends, restarting each after a seeded delay. It
// returns the number of kills.
func killer(ctx context.Context, airlock string, rs []*replica, n int, seed uint64, minGap, maxGap time.Duration, logf func(string, ...any)) (int, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	kills := 0
	for kills < n {
		gap := minGap + time.Duration(rng.Int64N(int64(maxGap-minGap)+1))
		if sleep(ctx, gap) != nil {
			return kills, nil
		}
		r := rs[rng.IntN(len(rs))]
		down := time.Duration(50+rng.IntN(450)) * time.Millisecond
		r.kill()
		kills++
		logf("kill %d: SIGKILL replica %d, restart in %v", kills, r.idx, down)
		if sleep(ctx, down) != nil {
			return kills, nil
		}
		if err := r.start(ctx, airlock); err != nil {
			if ctx.Err() != nil {
				return kills, nil
			}
			return kills, fmt.Errorf("restart of replica %d: %w", r.idx, err)
		}
	}
	return kills, nil
}

// nginxLB starts nginx as a TCP (stream) load balancer on listen in front
// of the replicas: TLS passes through, so devices keep their mutual TLS
// with the replica that serves them. It returns a stop function.
func nginxLB(dir, listen string, rs []*replica) (func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	mod := "/usr/lib/nginx/modules/ngx_stream_module.so"
	if _, err := os.Stat(mod); err != nil {
		return nil, fmt.Errorf("nginx's stream module (%s, Debian package libnginx-mod-stream): %w", mod, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var ups strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&ups, "\t\tserver %s max_fails=1 fail_timeout=1s;\n", r.addr)
	}
	conf := fmt.Sprintf(`load_module %s;
daemon off;
master_process on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 8192; }
stream {
	upstream airlock {
%s	}
	server {
		listen %s backlog=4096;
		proxy_pass airlock;
		proxy_connect_timeout 1s;
		proxy_next_upstream on;
		proxy_next_upstream_tries 3;
	}
}
`, mod, dir, dir, ups.String(), listen)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", path, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitTLS(ctx, listen); err != nil {
		stop()
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return nil, fmt.Errorf("nginx: %w\n%s", err, log)
	}
	return stop, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
