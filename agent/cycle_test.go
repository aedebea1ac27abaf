package agent

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// fetchCounter counts the requests for each image repository file.
type fetchCounter struct {
	next http.Handler
	mu   sync.Mutex
	n    map[string]int
}

func (c *fetchCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.n[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

func (c *fetchCounter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// TestOneRefreshPerCycle: a poll cycle that installs a release runs the
// check pipeline once against the image repository — one timestamp.json,
// one snapshot and one product role fetch — in repository mode and in
// director mode (the release choice and the install share one verified
// session; the policy is checked once).
func TestOneRefreshPerCycle(t *testing.T) {
	for _, mode := range []string{"repository", "director"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			var e *serverEnv
			var a *Agent
			var assign func()
			if mode == "director" {
				de := newDirectorEnv(t)
				e, a = de.serverEnv, de.agent(t)
				id := de.enroll(t, a)
				assign = func() { de.dir.assign(t, imageTarget(t, de.v, "1.1.0"), id) }
			} else {
				e = newServerEnv(t)
				a = e.agent(t, "")
			}
			fc := &fetchCounter{next: e.api.repo, n: map[string]int{}}
			e.api.repo = fc
			if assign != nil {
				assign()
			}
			res, err := a.RunOnce(ctx)
			if err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
				t.Fatalf("RunOnce = %+v, %v; want committed 1.1.0", res, err)
			}
			n := fc.reset()
			for _, f := range []string{"timestamp.json", "snapshot.json", "acme.router-x1.json"} {
				got := 0
				for name, k := range n { // consistent snapshots: "<version>.<role>.json"
					if name == f || strings.HasSuffix(name, "."+f) {
						got += k
					}
				}
				if got != 1 {
					t.Errorf("%s fetched %d times in one cycle, want 1 (all: %v)", f, got, n)
				}
			}
		})
	}
}
