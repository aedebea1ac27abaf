package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// notifications records the states an agent sends, with their times.
type notifications struct {
	mu     sync.Mutex
	states []string
	times  []time.Time
}

func (n *notifications) notify(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.states = append(n.states, s)
	n.times = append(n.times, time.Now())
}

func (n *notifications) snapshot() ([]string, []time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.states...), append([]time.Time(nil), n.times...)
}

// TestWatchdogPingsOnlyWhileTheLoopProgresses runs the agent loop with a
// 50 ms watchdog interval against a repository whose payload response
// hangs for 800 ms before its first byte: the pings stop during the hang
// (the cycle made no progress for more than two intervals) and resume
// with the download, and the agent says READY first and STOPPING last.
func TestWatchdogPingsOnlyWhileTheLoopProgresses(t *testing.T) {
	const interval = 50 * time.Millisecond
	const hang = 800 * time.Millisecond
	e := newRepoEnv(t)
	var mu sync.Mutex
	var hangStart, hangEnd time.Time
	e.h.setFault(func(w http.ResponseWriter, r *http.Request, data []byte) bool {
		mu.Lock()
		first := hangStart.IsZero()
		if first {
			hangStart = time.Now()
		}
		mu.Unlock()
		if first {
			time.Sleep(hang)
			mu.Lock()
			hangEnd = time.Now()
			mu.Unlock()
		}
		return false
	})
	devCfg := newDevice(t, e.v, e.initial)
	cfg, err := LoadConfig(repoConfig(t, devCfg, e.srv.URL, e.caPath, "5s"))
	if err != nil {
		t.Fatal(err)
	}
	var n notifications
	logs := &lockedLog{}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Notify: n.notify, WatchdogInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	// The device is not opened while the agent runs (opening it boots it).
	for !strings.Contains(logs.String(), `"msg":"poll done","action":"committed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not commit 1.1.0:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(5 * interval) // idle between polls: pings go on
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v, st := deviceVersion(t, devCfg); v != "1.1.0" || st.Trial != "" {
		t.Fatalf("device runs %q (boot %+v), want committed 1.1.0", v, st)
	}
	states, times := n.snapshot()
	if len(states) < 3 || states[0] != "READY=1" || states[len(states)-1] != "STOPPING=1" {
		t.Fatalf("states = %q, want READY=1 first and STOPPING=1 last", states)
	}
	mu.Lock()
	hs, he := hangStart, hangEnd
	mu.Unlock()
	var before, during, after int
	for i, s := range states {
		if s != "WATCHDOG=1" {
			continue
		}
		switch at := times[i]; {
		case at.Before(hs):
			before++
		case at.After(hs.Add(2*interval+interval/2)) && at.Before(he):
			during++
		case at.After(he):
			after++
		}
	}
	if during != 0 {
		t.Errorf("%d watchdog pings while the download hung for %v", during, hang)
	}
	if after == 0 {
		t.Errorf("no watchdog ping after the hang (before it: %d)", before)
	}
}

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
