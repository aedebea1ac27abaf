package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample is every percentile", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"p50 of four rounds up", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p90 of four is the max", ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestRunCountsErrorsAndCapsConcurrency(t *testing.T) {
	const n, conc = 200, 7
	inflight := make(chan struct{}, conc)
	boom := errors.New("boom")
	r := run(context.Background(), "t", n, conc, nil, func(ctx context.Context, i int) (bool, error) {
		select {
		case inflight <- struct{}{}:
		default:
			t.Errorf("more than %d calls in flight", conc)
		}
		defer func() { <-inflight }()
		time.Sleep(100 * time.Microsecond)
		if i%10 == 0 {
			return false, boom
		}
		return i%2 == 1, nil
	})
	if r.Errors != n/10 || !errors.Is(r.FirstErr, boom) {
		t.Errorf("errors = %d (first %v), want %d", r.Errors, r.FirstErr, n/10)
	}
	if len(r.Latencies) != n-n/10 {
		t.Errorf("%d latencies, want one per successful call (%d)", len(r.Latencies), n-n/10)
	}
	if r.Resumed != n/2 {
		t.Errorf("resumed = %d, want %d", r.Resumed, n/2)
	}
}

const validStat = "4242 (air lock) serve) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 1000000 500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"

func TestParseProcStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want time.Duration
		err  bool
	}{
		{"utime plus stime, name with spaces and parens", validStat, 3250 * time.Millisecond, false},
		{"no command name", "4242 S 1 2 3", 0, true},
		{"truncated after the name", "4242 (x) S 1 2 3 4 5 6 7 8 9", 0, true},
		{"negative cpu time", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 -5 1 0", 0, true},
		{"overflowing cpu time", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 9223372036854775807 1 0", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatCPU([]byte(tc.in))
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tc.want, tc.err)
			}
			if err != nil && !errors.Is(err, ErrProcStat) {
				t.Errorf("error %v does not wrap ErrProcStat", err)
			}
		})
	}
}

func TestParseMachineCPUSkipsIdleAndIOWait(t *testing.T) {
	got, err := parseMachineCPU([]byte("cpu  100 1 50 9999 77 0 9 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 160 * (time.Second / ClockTicks); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 x 4 5 6 7 8"} {
		if _, err := parseMachineCPU([]byte(bad)); !errors.Is(err, ErrProcStat) {
			t.Errorf("%q: got %v, want ErrProcStat", bad, err)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte(validStat))
	f.Add([]byte("cpu  100 1 50 9999 77 0 9 0 0 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := parseProcStatCPU(b); err == nil && d < 0 {
			t.Errorf("negative cpu time %v", d)
		}
		if d, err := parseMachineCPU(b); err == nil && d < 0 {
			t.Errorf("negative machine cpu time %v", d)
		}
	})
}
