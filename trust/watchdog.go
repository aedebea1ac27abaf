package trust

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// ErrSlowRetrieval means a network read broke its minimum-throughput rule
// or its deadline: the mirror, or someone between it and us, sends too
// slowly to ever finish — possibly on purpose, to keep the device on old
// software (the slow retrieval attack of the TUF threat model). Retrying
// later, or from another mirror, may help.
var ErrSlowRetrieval = errors.New("retrieval too slow")

// Throughput is a minimum-throughput rule for one HTTP response. From the
// request on, MinRate×Window bytes (at least one) must arrive within the
// first window, Grace+Window long, and each following MinRate×Window bytes
// within Window of the moment the previous ones were complete. A silent
// connection is thus cut after one window, and so is a trickle slower than
// MinRate on average. Only the time spent waiting for the network counts
// (see Watchdog.Pause). The zero value is the default rule.
type Throughput struct {
	// MinRate is the minimum rate in bytes per second (0:
	// DefaultMinThroughput; negative: no rate, only the rule that at least
	// one byte arrives in every window).
	MinRate int64
	// Window is the period MinRate is averaged over (0:
	// DefaultThroughputWindow; NewHTTPSourceWithOptions refuses a negative
	// one, NewWatchdog takes it as 0).
	Window time.Duration
	// Grace lengthens the first window, which also covers connection
	// set-up, the TLS handshake and the response headers (0:
	// DefaultThroughputGrace; negative: no grace).
	Grace time.Duration
}

// withDefaults fills in the defaults; it must be applied once (a grace
// of 0 afterwards means none).
func (t Throughput) withDefaults() Throughput {
	if t.MinRate == 0 {
		t.MinRate = DefaultMinThroughput
	}
	if t.Window <= 0 {
		t.Window = DefaultThroughputWindow
	}
	if t.Grace == 0 {
		t.Grace = DefaultThroughputGrace
	}
	t.Grace = max(t.Grace, 0)
	return t
}

// need is the number of bytes every window must deliver (at least one).
func (t Throughput) need() int64 {
	if t.MinRate <= 0 {
		return 1
	}
	n := float64(t.MinRate) * t.Window.Seconds()
	if n >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return max(int64(n), 1)
}

// Watchdog enforces a Throughput rule on one response: it cancels the
// context it returned, with a cause wrapping ErrSlowRetrieval, when a window
// ends before it has delivered its bytes. It is the one implementation of
// the rule for every network read of metadata and payloads (trust's HTTP
// source and the agent's resumable downloads). Its methods are safe for
// concurrent use.
type Watchdog struct {
	rule   Throughput
	need   int64
	cancel context.CancelCauseFunc
	timer  *time.Timer

	mu       sync.Mutex
	running  bool          // the clock runs (the reader waits for the network)
	deadline time.Time     // end of the current window, while running
	left     time.Duration // time left in the current window, while paused
	window   time.Duration // length of the current window, for the message
	got      int64         // bytes of the current window so far
	met      int           // windows that delivered their bytes
	err      error         // why the watchdog fired, nil if it did not
	stopped  bool
}

// NewWatchdog returns a context derived from ctx for one request and its
// response, and a running watchdog over it. Report every byte received
// with Add, call Pause while the consumer is busy with the bytes (Resume
// before reading again), and Stop when the response is done with; Stop
// also cancels the returned context.
func NewWatchdog(ctx context.Context, rule Throughput) (context.Context, *Watchdog) {
	rule = rule.withDefaults()
	ctx, cancel := context.WithCancelCause(ctx)
	w := &Watchdog{rule: rule, need: rule.need(), cancel: cancel, window: rule.Grace + rule.Window}
	w.left = w.window
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running = true
	w.deadline = time.Now().Add(w.left)
	w.timer = time.AfterFunc(w.left, w.fire)
	return ctx, w
}

// fire runs when the timer expires; a timer that was moved, paused or
// stopped meanwhile is re-checked against the current state.
func (w *Watchdog) fire() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || !w.running {
		return
	}
	if d := time.Until(w.deadline); d > 0 {
		w.timer.Reset(d)
		return
	}
	w.running = false
	w.stopped = true
	if w.need <= 1 {
		w.err = fmt.Errorf("%w: no data for %v", ErrSlowRetrieval, w.window)
	} else {
		w.err = fmt.Errorf("%w: %d of the %d bytes due within %v arrived (minimum throughput %d bytes/s)", ErrSlowRetrieval, w.got, w.need, w.window, w.rule.MinRate)
	}
	w.cancel(w.err)
}

// Add reports n bytes received. When the current window has its bytes, the
// next window starts now.
func (w *Watchdog) Add(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.got += int64(n)
	if w.got < w.need {
		return
	}
	w.got = 0
	w.met++
	w.window = w.rule.Window
	w.left = w.window
	if w.running {
		// The timer fires at the old deadline at the latest and re-arms
		// itself for the new one.
		w.deadline = time.Now().Add(w.window)
	}
}

// Pause stops the clock: the time until Resume does not count.
func (w *Watchdog) Pause() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || !w.running {
		return
	}
	w.running = false
	w.left = max(time.Until(w.deadline), 0)
	w.timer.Stop()
}

// Resume restarts the clock where Pause stopped it.
func (w *Watchdog) Resume() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.running {
		return
	}
	w.running = true
	w.deadline = time.Now().Add(w.left)
	w.timer.Reset(w.left)
}

// Stop ends the watchdog and cancels its context.
func (w *Watchdog) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.running = false
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// MetWindows returns how many windows delivered their bytes so far: more
// than zero means the response made progress at the minimum rate.
func (w *Watchdog) MetWindows() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.met
}

// Err returns the error (wrapping ErrSlowRetrieval) with which the watchdog
// cancelled its context, or nil if it did not.
func (w *Watchdog) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
