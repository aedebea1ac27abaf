// Package proc runs a command without a shell, under a deadline: the
// device's health check and the agent's reboot command.
//
// It is the small part of os/exec a device needs (PATH lookup, working
// directory, environment, output to a writer, kill at the deadline), on
// os.StartProcess, because os/exec costs the device binary 15 KB of code.
//
// Threat model: the command line comes from the device's own configuration
// (trusted, root-owned); nothing from an update or the network is ever
// part of it. No shell is involved, so arguments are never re-parsed.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// OutputDelay bounds how long Run waits, after the command exited, for its
// output to end: a process it left running in the background may hold the
// output open.
const OutputDelay = time.Second

// ErrNotFound is wrapped when the program is not found in $PATH.
var ErrNotFound = errors.New("executable file not found in $PATH")

// Run runs argv[0] with the arguments argv[1:] and waits for it. A program
// name without a slash is looked up in $PATH. The command runs in dir ("":
// the current directory) with env (nil: the current environment), reads
// /dev/null, and writes its stdout and stderr to out (nil: discarded). When
// ctx is done before it exits, it is killed and Run returns an error
// wrapping ctx.Err(). A non-zero exit is an error naming the exit status.
func Run(ctx context.Context, argv []string, dir string, env []string, out io.Writer) error {
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("no command")
	}
	path, err := lookPath(argv[0])
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer stdin.Close()
	w, _ := out.(*os.File)
	var r *os.File
	copied := make(chan struct{})
	if w == nil {
		if r, w, err = os.Pipe(); err != nil {
			return err
		}
		defer r.Close()
		if out == nil {
			out = io.Discard
		}
		go func() {
			io.Copy(out, r)
			close(copied)
		}()
	} else {
		close(copied)
	}
	p, err := os.StartProcess(path, argv, &os.ProcAttr{Dir: dir, Env: env, Files: []*os.File{stdin, w, w}})
	if r != nil {
		w.Close() // the child holds its own copy
	}
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			p.Kill()
		case <-done:
		}
	}()
	st, err := p.Wait()
	close(done)
	select {
	case <-copied:
	case <-time.After(OutputDelay):
		r.Close() // a background process kept the output open
		<-copied
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("killed: %w", ctx.Err())
	case err != nil:
		return err
	case !st.Success():
		return errors.New(st.String())
	}
	return nil
}

// lookPath finds name in $PATH unless it contains a slash.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		if dir == "" {
			continue // an empty element is the current directory: never searched
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w", name, ErrNotFound)
}
