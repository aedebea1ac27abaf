package vendorcmd

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/internal/cli"
	"github.com/airlockfw/airlock/internal/cli/devicecmd"
	"github.com/airlockfw/airlock/internal/cli/servercmd"
)

// runCLI runs the full airlock command line in-process and returns the exit
// code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLIEnv(t, nil, args...)
}

// runCLIEnv is runCLI with the environment env (and nothing else).
func runCLIEnv(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cli.Env{Ctx: context.Background(), Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string { return env[k] }}
	code = run(e, args)
	return code, out.String(), errb.String()
}

// run runs the full airlock command line in e.
func run(e *cli.Env, args []string) int {
	return cli.New("airlock", Commands(), devicecmd.Commands(), devicecmd.SimCommands(), servercmd.Commands()).RunEnv(e, args)
}
