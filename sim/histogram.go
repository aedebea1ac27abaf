package sim

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Histogram geometry: bucket i counts durations up to histMin·histGrowth^i
// (5% wide buckets from 10µs to about 11 minutes: 10µs·1.05^369); the last bucket also
// counts anything longer.
const (
	histMin     = 10 * time.Microsecond
	histGrowth  = 1.05
	HistBuckets = 370
)

// Histogram is a bounded latency histogram (HistBuckets counters, 5%
// resolution), safe for concurrent use and mergeable across processes
// (its JSON form is its counts).
type Histogram struct {
	mu     sync.Mutex
	Counts []uint64 `json:"counts"`
}

func histBucket(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(histMin)) / math.Log(histGrowth)))
	return min(i, HistBuckets-1)
}

func histUpper(i int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(i)))
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	i := histBucket(d)
	h.mu.Lock()
	if h.Counts == nil {
		h.Counts = make([]uint64, HistBuckets)
	}
	h.Counts[i]++
	h.mu.Unlock()
}

// Merge adds o's counts to h. It fails if o's counts are not HistBuckets
// long (o may come from another process).
func (h *Histogram) Merge(o *Histogram) error {
	o.mu.Lock()
	counts := append([]uint64(nil), o.Counts...)
	o.mu.Unlock()
	if counts == nil {
		return nil
	}
	if len(counts) != HistBuckets {
		return fmt.Errorf("histogram has %d buckets, want %d", len(counts), HistBuckets)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Counts == nil {
		h.Counts = make([]uint64, HistBuckets)
	}
	for i, c := range counts {
		h.Counts[i] += c
	}
	return nil
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile returns the upper bound of the bucket holding quantile q
// (0 < q <= 1), 0 when empty: within 5% above the true value.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return histUpper(i)
		}
	}
	return histUpper(HistBuckets - 1)
}

// String formats the count and the p50, p90 and p99.
func (h *Histogram) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("n=%d p50=%v p90=%v p99=%v", h.Count(), r(h.Quantile(0.5)), r(h.Quantile(0.9)), r(h.Quantile(0.99)))
}
