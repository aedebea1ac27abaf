// Command loadgen is the check-in load generator of bench/checkin-load.sh.
//
// It simulates N devices against a running `airlock serve`: each device
// generates its own P-256 key, enrolls with an enrollment token, and then
// checks in over its own HTTPS connection with its own client certificate.
// Each device's first check-in is measured on its own (it records the
// device's slot and first contact: a write of its own). Three check-in
// rounds after it show connection setup and the steady state of a fleet
// polling with nothing to do:
//
//   - "new conn, full TLS": every device opens a new connection and does a
//     full TLS handshake with its client certificate;
//   - "keep-alive": every device reuses its open connection;
//   - "new conn, resumed TLS": every device reconnects and resumes its TLS
//     session from a ticket (a device polling every minute or hour).
//
// The baseline is nginx serving the repository's timestamp.json over HTTPS
// in the same run, fetched by N clients with the same rounds and
// concurrency; the same file from airlock serve is measured for reference.
//
// Threat model: none of this runs in production. The servers measured are
// the operator's own on 127.0.0.1; their responses are still read with size
// limits and checked (status, body), and every failed request is counted as
// an error (the run fails unless there are none).
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

const usage = `Usage: loadgen --airlock URL --ca FILE --token TOKEN [--nginx URL] [-n 10000]
               [--concurrency 1000] [--enroll-concurrency 50]
               [--airlock-pid PID] [--nginx-pids PID,PID,...]

Enrolls N simulated devices with TOKEN against airlock serve at URL, checks
each in once (the first check-in, measured on its own), runs three
check-in rounds (new connection with a full TLS handshake, keep-alive, new
connection with TLS resumption), then fetches /repo/metadata/timestamp.json
from nginx (the baseline) and from airlock with N clients in the same rounds,
and prints requests/s, p50/p90/p99 latency, errors and server CPU (from
/proc/PID/stat of the given processes). Exits 1 if any request failed.

Example:
  loadgen --airlock https://127.0.0.1:8443 --nginx https://127.0.0.1:9443 \
      --ca data/ca.pem --token "$(cat token)" -n 10000 --airlock-pid 1234
`

// Defaults of the load.
const (
	DefaultDevices           = 10_000
	DefaultConcurrency       = 1000
	DefaultEnrollConcurrency = 50
	// MaxDevices bounds -n (file descriptors and memory of one run).
	MaxDevices = 100_000
	// MaxCAFileSize bounds --ca.
	MaxCAFileSize = 1 << 20
	// RunTimeout bounds a whole run.
	RunTimeout = 30 * time.Minute
	// TimestampPath is the file of the baseline.
	TimestampPath = "/repo/metadata/timestamp.json"
)

func main() { os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	airlock, nginx, caFile, token string
	n, conc, enrollConc           int
	airlockPIDs, nginxPIDs        []int
}

func runMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var o options
	var apid, npids string
	fs.StringVar(&o.airlock, "airlock", "", "")
	fs.StringVar(&o.nginx, "nginx", "", "")
	fs.StringVar(&o.caFile, "ca", "", "")
	fs.StringVar(&o.token, "token", "", "")
	fs.IntVar(&o.n, "n", DefaultDevices, "")
	fs.IntVar(&o.conc, "concurrency", DefaultConcurrency, "")
	fs.IntVar(&o.enrollConc, "enroll-concurrency", DefaultEnrollConcurrency, "")
	fs.StringVar(&apid, "airlock-pid", "", "")
	fs.StringVar(&npids, "nginx-pids", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch {
	case fs.NArg() != 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.airlock == "" || o.caFile == "" || o.token == "":
		err = errors.New("--airlock, --ca and --token are required")
	case o.n < 1 || o.n > MaxDevices:
		err = fmt.Errorf("-n must be between 1 and %d", MaxDevices)
	case o.conc < 1 || o.enrollConc < 1:
		err = errors.New("--concurrency and --enroll-concurrency must be positive")
	}
	if err == nil {
		o.airlockPIDs, err = parsePIDs(apid)
	}
	if err == nil {
		o.nginxPIDs, err = parsePIDs(npids)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: error: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), RunTimeout)
	defer cancel()
	results, err := bench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: error: %v\n", err)
		return 1
	}
	report(stdout, o, results)
	code := 0
	for _, r := range results {
		if r.Errors > 0 {
			fmt.Fprintf(stderr, "loadgen: error: %s: %d of %d requests failed, first: %v\n", r.Name, r.Errors, r.Requests, r.FirstErr)
			code = 1
		}
	}
	return code
}

func parsePIDs(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("bad pid %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func readRoots(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxCAFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCAFileSize {
		return nil, fmt.Errorf("%s: exceeds %d bytes", path, MaxCAFileSize)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// Phase names.
const (
	roundFull      = "new conn, full TLS"
	roundKeepAlive = "keep-alive"
	roundResumed   = "new conn, resumed TLS"
)

var rounds = []string{roundFull, roundKeepAlive, roundResumed}

func bench(ctx context.Context, o options, log io.Writer) ([]Result, error) {
	roots, err := readRoots(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read --ca: %w", err)
	}
	var results []Result

	fmt.Fprintf(log, "loadgen: enrolling %d devices (concurrency %d)\n", o.n, o.enrollConc)
	devs := make([]*device, o.n)
	r := run(ctx, "enroll (P-256 key + CSR + cert)", o.n, o.enrollConc, o.airlockPIDs, func(ctx context.Context, i int) (bool, error) {
		d, err := enroll(ctx, o.airlock, roots, o.token)
		devs[i] = d
		return false, err
	})
	results = append(results, r)
	if r.Errors > 0 {
		return results, fmt.Errorf("enrollment: %d of %d failed, first: %w", r.Errors, r.Requests, r.FirstErr)
	}

	// A device's first check-in records its slot and first contact (a write
	// of its own); the rounds after it are the steady state of a fleet
	// polling with nothing to do, as the check-ins of a device are after
	// its first.
	fmt.Fprintf(log, "loadgen: first check-in of every device\n")
	r = run(ctx, "first checkin (new conn, full TLS)", o.n, o.conc, o.airlockPIDs, func(ctx context.Context, i int) (bool, error) {
		return devs[i].checkin(ctx, o.airlock)
	})
	results = append(results, r)
	for _, d := range devs {
		d.reset(roots)
	}
	for _, round := range rounds {
		if round == roundResumed {
			for _, d := range devs {
				d.client.CloseIdleConnections()
			}
		}
		fmt.Fprintf(log, "loadgen: check-in round %q\n", round)
		results = append(results, run(ctx, "checkin: "+round, o.n, o.conc, o.airlockPIDs, func(ctx context.Context, i int) (bool, error) {
			return devs[i].checkin(ctx, o.airlock)
		}))
	}
	for _, d := range devs {
		d.client.CloseIdleConnections()
	}
	devs = nil

	type target struct {
		name, base string
		pids       []int
	}
	var targets []target
	if o.nginx != "" {
		targets = append(targets, target{"nginx", o.nginx, o.nginxPIDs})
	}
	targets = append(targets, target{"airlock", o.airlock, o.airlockPIDs})
	for _, t := range targets {
		url := t.base + TimestampPath
		size, err := fileSize(ctx, roots, url)
		if err != nil {
			return results, err
		}
		fs := make([]*fetcher, o.n)
		for i := range fs {
			fs[i] = &fetcher{client: &http.Client{Transport: newTransport(roots, nil, true), Timeout: RequestTimeout}}
		}
		for _, round := range rounds {
			if round == roundResumed {
				for _, f := range fs {
					f.client.CloseIdleConnections()
				}
			}
			fmt.Fprintf(log, "loadgen: %s timestamp.json round %q\n", t.name, round)
			results = append(results, run(ctx, t.name+" timestamp.json: "+round, o.n, o.conc, t.pids, func(ctx context.Context, i int) (bool, error) {
				return fs[i].fetch(ctx, url, size)
			}))
		}
		for _, f := range fs {
			f.client.CloseIdleConnections()
		}
	}
	return results, nil
}

// fileSize fetches url once and returns its length.
func fileSize(ctx context.Context, roots *x509.CertPool, url string) (int64, error) {
	c := &http.Client{Transport: newTransport(roots, nil, false), Timeout: RequestTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("failed to fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("failed to fetch %s: %w: %s", url, ErrStatus, resp.Status)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, MaxFileSize+1))
	if err != nil {
		return 0, fmt.Errorf("failed to fetch %s: %w", url, err)
	}
	if n == 0 || n > MaxFileSize {
		return 0, fmt.Errorf("failed to fetch %s: %w: %d bytes", url, ErrResponse, n)
	}
	return n, nil
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 1, 64) }

// report prints one row per phase and the ratios to the nginx baseline.
func report(w io.Writer, o options, results []Result) {
	fmt.Fprintf(w, "\n== check-in load: %d devices, %d in flight (enrollment %d), HTTP/1.1, one connection per device\n", o.n, o.conc, o.enrollConc)
	fmt.Fprintf(w, "%-44s %6s %6s %7s %7s %8s %8s %8s %7s %7s %7s %7s %9s\n",
		"phase", "reqs", "errors", "resumed", "req/s", "p50 ms", "p90 ms", "p99 ms", "wall s",
		"srv CPU", "gen CPU", "oth CPU", "srv µs/req")
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name] = r
		var srv, gen, oth, per float64
		if s := r.Elapsed.Seconds(); s > 0 {
			srv, gen = r.ServerCPU.Seconds()/s, r.SelfCPU.Seconds()/s
			oth = max(0, (r.AllCPU-r.ServerCPU-r.SelfCPU).Seconds()/s)
		}
		if ok := r.Requests - r.Errors; ok > 0 {
			per = float64(r.ServerCPU.Microseconds()) / float64(ok)
		}
		fmt.Fprintf(w, "%-44s %6d %6d %7d %7.0f %8s %8s %8s %7.2f %6.2fc %6.2fc %6.2fc %9.0f\n",
			r.Name, r.Requests, r.Errors, r.Resumed, r.Rate(), ms(r.Percentile(50)), ms(r.Percentile(90)),
			ms(r.Percentile(99)), r.Elapsed.Seconds(), srv, gen, oth, per)
	}
	fmt.Fprintf(w, "(CPU in cores, from /proc: srv = the measured server process(es), gen = this load generator,\n"+
		" oth = everything else on the machine; all share the same %d cores. Latency counts from the\n"+
		" request's start, so it includes connection setup but not waiting for a free in-flight slot)\n", runtime.NumCPU())
	if o.nginx == "" {
		return
	}
	fmt.Fprintf(w, "\nratio to the nginx baseline (requests/s; higher is better):\n")
	for _, round := range rounds {
		base := byName["nginx timestamp.json: "+round].Rate()
		if base == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-24s airlock check-in / nginx timestamp.json = %.2f   airlock timestamp.json / nginx = %.2f\n",
			round+":", byName["checkin: "+round].Rate()/base, byName["airlock timestamp.json: "+round].Rate()/base)
	}
}
