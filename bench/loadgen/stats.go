package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what one phase measured.
type Result struct {
	Name      string
	Requests  int
	Errors    int
	FirstErr  error
	Resumed   int // requests whose TLS session was resumed
	Elapsed   time.Duration
	Latencies []time.Duration // sorted, successful requests only
	ServerCPU time.Duration   // CPU of the measured server processes during the phase
	SelfCPU   time.Duration   // CPU of the load generator during the phase
	// AllCPU is the CPU time of the whole machine during the phase (all
	// processes, from /proc/stat): what is left after ServerCPU and SelfCPU
	// is other work (the baseline's idle workers, other jobs).
	AllCPU time.Duration
}

// Rate is successful requests per second.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies by
// the nearest-rank method, or 0 without samples.
func (r Result) Percentile(p float64) time.Duration {
	return percentile(r.Latencies, p)
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// run calls fn(i) for i in [0, n) with at most conc calls in flight and
// measures each call's latency (from its start, so queueing behind the
// concurrency cap is not counted, connection setup is).
func run(ctx context.Context, name string, n, conc int, pids []int, fn func(ctx context.Context, i int) (resumed bool, err error)) Result {
	res := Result{Name: name, Requests: n}
	lat := make([]time.Duration, n)
	ok := make([]bool, n)
	var next atomic.Int64
	var mu sync.Mutex
	var resumed atomic.Int64
	srv0, self0, all0 := cpuOf(pids), cpuOf([]int{os.Getpid()}), machineCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, RequestTimeout)
				r, err := fn(rctx, i)
				cancel()
				lat[i] = time.Since(t0)
				if r {
					resumed.Add(1)
				}
				if err != nil {
					mu.Lock()
					res.Errors++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
					mu.Unlock()
					continue
				}
				ok[i] = true
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.ServerCPU = cpuOf(pids) - srv0
	res.SelfCPU = cpuOf([]int{os.Getpid()}) - self0
	res.AllCPU = machineCPU() - all0
	res.Resumed = int(resumed.Load())
	for i, d := range lat {
		if ok[i] {
			res.Latencies = append(res.Latencies, d)
		}
	}
	slices.Sort(res.Latencies)
	return res
}

// ClockTicks is USER_HZ, the unit of /proc/PID/stat CPU times; it is 100 on
// every Linux architecture Go supports.
const ClockTicks = 100

// MaxProcStatSize bounds a /proc/PID/stat read.
const MaxProcStatSize = 4 << 10

// ErrProcStat: a /proc/PID/stat line did not parse.
var ErrProcStat = errors.New("malformed /proc stat line")

// cpuOf sums the user+system CPU time of pids; unreadable processes count 0.
func cpuOf(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || len(b) > MaxProcStatSize {
			continue
		}
		if d, err := parseProcStatCPU(b); err == nil {
			total += d
		}
	}
	return total
}

// parseProcStatCPU returns utime+stime (fields 14 and 15) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// hold spaces and parentheses, so fields are counted after the last ')'.
func parseProcStatCPU(b []byte) (time.Duration, error) {
	if len(b) > MaxProcStatSize {
		return 0, fmt.Errorf("%w: %d bytes exceeds limit %d", ErrProcStat, len(b), MaxProcStatSize)
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || bytes.IndexByte(b, '(') < 0 || bytes.IndexByte(b, '(') > i {
		return 0, fmt.Errorf("%w: no command name", ErrProcStat)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state is field 3, so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: %d fields after the command name, want at least 13", ErrProcStat, len(f))
	}
	var ticks uint64
	for _, s := range f[11:13] {
		v, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("%w: cpu time %q: %w", ErrProcStat, s, err)
		}
		ticks += v
	}
	if ticks > uint64(1<<63-1)/uint64(time.Second/ClockTicks) {
		return 0, fmt.Errorf("%w: cpu time overflows", ErrProcStat)
	}
	return time.Duration(ticks) * (time.Second / ClockTicks), nil
}

// machineCPU returns the busy CPU time of all cores (the "cpu" line of
// /proc/stat without idle and iowait), or 0 if it cannot be read.
func machineCPU() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	b := make([]byte, MaxProcStatSize)
	n, _ := io.ReadFull(f, b)
	d, err := parseMachineCPU(b[:n])
	if err != nil {
		return 0
	}
	return d
}

// parseMachineCPU parses the first line of /proc/stat:
// "cpu user nice system idle iowait irq softirq steal ...".
func parseMachineCPU(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("%w: /proc/stat does not start with a cpu line of 8 counters", ErrProcStat)
	}
	var busy uint64
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("%w: counter %q: %w", ErrProcStat, s, err)
		}
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if busy += v; busy > uint64(1<<63-1)/uint64(time.Second/ClockTicks) {
			return 0, fmt.Errorf("%w: cpu time overflows", ErrProcStat)
		}
	}
	return time.Duration(busy) * (time.Second / ClockTicks), nil
}
