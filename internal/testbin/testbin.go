// Package testbin finds or builds the third-party servers some tests run
// against (versitygw for the S3 backend, transparency-dev's omniwitness for
// the transparency log), so every such test gets them the same way. It is
// test infrastructure: nothing in a shipped binary imports it.
//
// A tool is found, in order, at the path in its environment variable, on
// PATH, or in the user cache directory
// (~/.cache/airlock-test/<name>-<version>/<name>); if absent it is built
// there from the Go module proxy with `go install` (scripts/test.sh does it
// before the tests run).
package testbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ErrNotAvailable: the tool could not be found or built.
var ErrNotAvailable = errors.New("not available")

// Tool is a command built from a Go module.
type Tool struct {
	// Name is the command's name (the binary go install writes).
	Name string
	// Module is the package go install builds, without the version.
	Module string
	// Version is the module version built when none is installed.
	Version string
	// EnvVar names the environment variable that may give the binary's
	// path.
	EnvVar string
	// BuildTimeout bounds go install.
	BuildTimeout time.Duration

	once sync.Once
	path string
	err  error
}

// Require returns the path of the tool's binary, found or built once per
// test process. When it cannot be had, the test is skipped, or fails
// under scripts/test.sh and in CI (Required).
func (t *Tool) Require(tb testing.TB) string {
	tb.Helper()
	t.once.Do(func() { t.path, t.err = t.FindOrBuild() })
	if t.err != nil {
		if Required() {
			tb.Fatalf("AIRLOCK_REQUIRE_TOOLS=1 or CI set: %v", t.err)
		}
		tb.Skipf("skipping: %v (set %s, or let the test build it with network access)", t.err, t.EnvVar)
	}
	return t.path
}

// CacheDir is where the built binary is kept.
func (t *Tool) CacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "airlock-test", t.Name+"-"+t.Version), nil
}

// FindOrBuild returns the path of the tool's binary, building it if
// needed. Errors wrap ErrNotAvailable.
func (t *Tool) FindOrBuild() (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("%s %w: %w", t.Name, ErrNotAvailable, err)
	}
	if p := os.Getenv(t.EnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return fail(fmt.Errorf("%s: %w", t.EnvVar, err))
		}
		return p, nil
	}
	if p, err := exec.LookPath(t.Name); err == nil {
		return p, nil
	}
	dir, err := t.CacheDir()
	if err != nil {
		return fail(err)
	}
	bin := filepath.Join(dir, t.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fail(fmt.Errorf("no go command to build it: %w", err))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	// Build into a private directory, then rename: concurrent test
	// processes never see a partial binary.
	tmp, err := os.MkdirTemp(dir, ".build-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), t.BuildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "install", t.Module+"@"+t.Version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("go install %s@%s: %w\n%s", t.Module, t.Version, err, out))
	}
	if err := os.Rename(filepath.Join(tmp, t.Name), bin); err != nil {
		return fail(err)
	}
	return bin, nil
}

// Required reports whether a missing tool must fail the test rather than
// skip it: under scripts/test.sh (AIRLOCK_REQUIRE_TOOLS=1) and in CI.
func Required() bool {
	return os.Getenv("AIRLOCK_REQUIRE_TOOLS") == "1" || os.Getenv("CI") != ""
}
