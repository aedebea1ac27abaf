package proc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var out bytes.Buffer
	err := Run(ctx, []string{"sh", "-c", `echo "out $X"; echo err >&2; pwd`}, dir, []string{"X=42", "PATH=" + os.Getenv("PATH")}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "out 42\nerr\n"+dir+"\n"; got != want {
		t.Errorf("output %q, want %q", got, want)
	}
	if err := Run(ctx, []string{"false"}, "", nil, nil); err == nil || err.Error() != "exit status 1" {
		t.Errorf("false = %v, want exit status 1", err)
	}
	if err := Run(ctx, []string{"no-such-program-airlock"}, "", nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing program = %v, want ErrNotFound", err)
	}
	if err := Run(ctx, nil, "", nil, nil); err == nil {
		t.Error("empty command line succeeded")
	}
	// An explicit path is not looked up, and a relative one is relative to dir.
	script := filepath.Join(dir, "check.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho checked\n"), 0o755)
	out.Reset()
	if err := Run(ctx, []string{"./check.sh"}, dir, nil, &out); err != nil || out.String() != "checked\n" {
		t.Errorf("./check.sh in dir = %v, %q", err, out.String())
	}
	// Output to a file goes straight to it.
	f, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(ctx, []string{"echo", "to file"}, "", nil, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if data, _ := os.ReadFile(filepath.Join(dir, "log")); string(data) != "to file\n" {
		t.Errorf("file got %q", data)
	}
}

// TestRunDeadline: a command past the deadline is killed, and a command
// that leaves a background process holding its output does not hold Run.
func TestRunDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Run(ctx, []string{"sleep", "30"}, "", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "killed") {
		t.Errorf("sleep past the deadline = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("kill took %v", d)
	}
	start = time.Now()
	var out bytes.Buffer
	// The child outlives the bound below by far, so a Run that waited for
	// it would fail the test.
	if err := Run(context.Background(), []string{"sh", "-c", "echo started; sleep 20 &"}, "", nil, &out); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > OutputDelay+5*time.Second {
		t.Errorf("a background child held Run for %v", d)
	}
	if out.String() != "started\n" {
		t.Errorf("output %q", out.String())
	}
}
