package demo_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
	"github.com/airlockfw/airlock/internal/cli/vendorcmd"
	"github.com/airlockfw/airlock/internal/demo"
)

// runAirlock runs the vendor and device commands the demo narrates.
func runAirlock(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	p := cli.New("airlock", vendorcmd.Commands(), devicecmd.Commands(), devicecmd.SimCommands())
	return p.RunEnv(&cli.Env{Ctx: ctx, Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: getenv}, args)
}

// TestDemo runs the README's main-job story and checks that every chapter
// happened: the update, the tampered release, the downgrade, the rollback,
// and the staged rollout that a bad release pauses at its canary group.
func TestDemo(t *testing.T) {
	start := time.Now()
	var out bytes.Buffer
	err := demo.Run(context.Background(), demo.Config{Stdout: &out, Run: runAirlock})
	// The README promises the demo finishes in under a minute.
	if took := time.Since(start); took > time.Minute {
		t.Errorf("demo took %v, the README promises under a minute", took)
	}
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
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
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q\n%s", want, out.String())
		}
	}
}

func TestDemoRefusesBadConfig(t *testing.T) {
	for _, cfg := range []demo.Config{
		{Devices: demo.MaxDevices + 1, Stdout: io.Discard, Run: runAirlock},
		{Devices: -1, Stdout: io.Discard, Run: runAirlock},
		{Stdout: io.Discard},
	} {
		if err := demo.Run(context.Background(), cfg); err == nil {
			t.Errorf("Run(%+v) succeeded", cfg)
		}
	}
}
