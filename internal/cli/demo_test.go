//go:build !airlock_device

package cli

import (
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's main-job command and checks that every chapter
// happened: the update, the tampered release, the downgrade, the rollback,
// and the staged rollout that a bad release pauses at its canary group.
func TestDemo(t *testing.T) {
	start := time.Now()
	code, out, errOut := runCLI(t, "demo") // the README command: embedded defaults
	// The README promises the demo finishes in under a minute.
	if took := time.Since(start); took > time.Minute {
		t.Errorf("demo took %v, the README promises under a minute", took)
	}
	if code != ExitOK {
		t.Fatalf("demo exited %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"dev-1: committed 1.1.0",
		"dev-2: committed 1.1.0",
		"dev-1: failed 1.2.0: payload",
		"payload hash mismatch",
		`policy check "version" failed`,
		"dev-2: rolled_back 1.3.0",
		"A staged rollout stops a bad release at the canary group",
		"paused at stage 0",
		"none runs 1.5.0",
		"All 9 steps did what they said",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q\n%s", want, out)
		}
	}
}
