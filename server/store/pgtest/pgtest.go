// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb into
// a fresh directory under /tmp, pg_ctl start on a free loopback port with
// trust authentication and fsync off, and pg_ctl -m immediate stop at the
// end. It is test infrastructure: the cluster trusts every local connection
// and must never hold real data.
//
// PostgreSQL refuses to run as root, so when the test runs as root the
// binaries run as the "postgres" user (or "nobody") and the cluster directory
// is created 0755 under /tmp, whose parents that user can traverse.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timeouts bounding each step of the cluster's life.
const (
	InitTimeout  = 2 * time.Minute
	StartTimeout = time.Minute
	StopTimeout  = 30 * time.Second
	// StartAttempts bounds retries when the chosen port is taken meanwhile.
	StartAttempts = 3
)

// ErrNotInstalled means no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("postgresql server binaries (initdb, pg_ctl) not found")

// User is the database superuser of the cluster.
const User = "airlock"

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir  string // base directory: data/, socket, log
	bin  string // directory holding initdb and pg_ctl
	port int
	cred *runAs
	dbs  atomic.Int64
}

// FindBinDir locates the directory holding initdb and pg_ctl: PATH first,
// then the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			// Resolve symlinks so pg_ctl finds the postgres binary next to it.
			if real, err := filepath.EvalSymlinks(p); err == nil {
				p = real
			}
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	best, bestVer := "", -1
	for _, m := range matches {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if err == nil && v > bestVer {
			best, bestVer = filepath.Dir(m), v
		}
	}
	if best == "" {
		return "", ErrNotInstalled
	}
	return best, nil
}

// Start initializes and starts a cluster. Call Stop when done, also on
// failure paths.
func Start(ctx context.Context) (*Cluster, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := unprivilegedUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "airlock-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("failed to create cluster directory: %w", err)
	}
	c := &Cluster{dir: dir, bin: bin, cred: cred}
	if err := os.Chmod(dir, 0o755); err != nil {
		c.remove()
		return nil, fmt.Errorf("failed to chmod cluster directory: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, cred.uid, cred.gid); err != nil {
			c.remove()
			return nil, fmt.Errorf("failed to chown cluster directory: %w", err)
		}
	}
	if err := c.run(ctx, InitTimeout, "initdb", "-D", c.dataDir(), "-U", User, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync"); err != nil {
		c.remove()
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			c.remove()
			return nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200", c.port, dir)
		err = c.run(ctx, StartTimeout, "pg_ctl", "-D", c.dataDir(), "-l", filepath.Join(dir, "log"),
			"-o", opts, "-w", "-t", strconv.Itoa(int(StartTimeout/time.Second)), "start")
		if err == nil {
			return c, nil
		}
		c.stop() // a half-started server must not outlive us
		if attempt == StartAttempts {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			c.remove()
			return nil, fmt.Errorf("%w\nserver log:\n%s", err, log)
		}
	}
}

// Port returns the TCP port the cluster listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DSN returns the connection string for database name.
func (c *Cluster) DSN(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", User, c.port, name)
}

// NewDatabase creates a fresh, uniquely named database and returns its DSN.
func (c *Cluster) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("airlock_test_%d", c.dbs.Add(1))
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("failed to connect to test cluster: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("failed to create database %s: %w", name, err)
	}
	return c.DSN(name), nil
}

// Stop stops the server immediately and removes the cluster directory.
func (c *Cluster) Stop() error {
	err := c.stop()
	return errors.Join(err, c.remove())
}

func (c *Cluster) stop() error {
	return c.run(context.Background(), StopTimeout, "pg_ctl", "-D", c.dataDir(), "-m", "immediate",
		"-w", "-t", strconv.Itoa(int(StopTimeout/time.Second)), "stop")
}

func (c *Cluster) remove() error { return os.RemoveAll(c.dir) }

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// run runs one of the PostgreSQL binaries, as the unprivileged user if any.
func (c *Cluster) run(ctx context.Context, timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	cmd.WaitDelay = 5 * time.Second
	if c.cred != nil {
		cmd.Env = append(cmd.Env, "HOME="+c.dir)
		setCredential(cmd, c.cred)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s failed: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

type runAs struct{ uid, gid int }

// unprivilegedUser returns the user to run PostgreSQL as when running as
// root, or nil otherwise.
func unprivilegedUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil {
			return &runAs{uid: uid, gid: gid}, nil
		}
	}
	return nil, errors.New("running as root and neither user postgres nor nobody exists to run postgresql as")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
