// Command airlock-tuf-conformance runs the Airlock device TUF client (package
// trust, the same code paths and limits the device uses) behind the CLI
// protocol of the public TUF conformance suite
// (github.com/theupdateframework/tuf-conformance, CLIENT-CLI.md). See
// docs/conformance.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/trust"
)

const usage = `usage:
  airlock-tuf-conformance --metadata-dir MD init TRUSTED_ROOT_FILE
  airlock-tuf-conformance --metadata-url URL --metadata-dir MD refresh
  airlock-tuf-conformance --metadata-url URL --metadata-dir MD --target-name T [--target-name T2 ...] \
      --target-dir TD --target-base-url TURL download

All flags come before the command. Exit status 0 on success, 1 on any failure.
When FAKETIME is set (running under libfaketime), the reference time is taken
from the output of date(1), since Go's clock ignores libfaketime.
`

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

type names []string

func (n *names) String() string     { return strings.Join(*n, ",") }
func (n *names) Set(v string) error { *n = append(*n, v); return nil }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("airlock-tuf-conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var mdDir, mdURL, targetDir, targetURL string
	var targets names
	fs.StringVar(&mdDir, "metadata-dir", "", "trusted metadata directory")
	fs.StringVar(&mdURL, "metadata-url", "", "repository metadata base URL")
	fs.StringVar(&targetDir, "target-dir", "", "directory for downloaded targets")
	fs.StringVar(&targetURL, "target-base-url", "", "repository targets base URL")
	fs.Var(&targets, "target-name", "target path to download (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "airlock-tuf-conformance: error: %v\n", err)
		return 1
	}
	if mdDir == "" || fs.NArg() == 0 {
		fs.Usage()
		return 1
	}
	ctx := context.Background()
	switch cmd := fs.Arg(0); {
	case cmd == "init" && fs.NArg() == 2:
		return exit(initCmd(mdDir, fs.Arg(1)), fail)
	case cmd == "refresh" && fs.NArg() == 1 && mdURL != "":
		_, err := refresh(ctx, mdDir, mdURL, "")
		return exit(err, fail)
	case cmd == "download" && fs.NArg() == 1 && mdURL != "" && len(targets) > 0 && targetDir != "" && targetURL != "":
		return exit(downloadCmd(ctx, mdDir, mdURL, targetURL, targetDir, targets), fail)
	}
	fs.Usage()
	return 1
}

func exit(err error, fail func(error) int) int {
	if err != nil {
		return fail(err)
	}
	return 0
}

// initCmd copies the trusted root into the metadata directory; no network.
func initCmd(mdDir, rootFile string) error {
	f, err := os.Open(rootFile)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, trust.MaxRootSize+1))
	if err != nil {
		return err
	}
	if len(data) > trust.MaxRootSize {
		return fmt.Errorf("trusted root: %w", trust.ErrTooLarge)
	}
	return trust.NewDirStore(durable.OS, mdDir).Put("root.json", data)
}

// now returns the reference time: the libfaketime time of the C library when
// FAKETIME is set, else Go's clock.
func now() (func() time.Time, error) {
	if os.Getenv("FAKETIME") == "" {
		return time.Now, nil
	}
	out, err := exec.Command("date", "+%s").Output()
	if err != nil {
		return nil, fmt.Errorf("failed to read faked time with date +%%s: %w", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("failed to parse date +%%s output %q: %w", out, err)
	}
	t := time.Unix(sec, 0).UTC()
	return func() time.Time { return t }, nil
}

func refresh(ctx context.Context, mdDir, mdURL, targetURL string) (*trust.Client, error) {
	clock, err := now()
	if err != nil {
		return nil, err
	}
	c, err := trust.New(trust.NewDirStore(durable.OS, mdDir), trust.NewHTTPSource(mdURL, targetURL, nil), trust.Config{Now: clock})
	if err != nil {
		return nil, err
	}
	return c, c.Refresh(ctx)
}

// localName maps a target path to one file name in the target directory.
func localName(targetPath string) (string, error) {
	n := url.PathEscape(targetPath)
	if n == "" || n == "." || n == ".." {
		return "", fmt.Errorf("%w: target path %q", trust.ErrInvalidName, targetPath)
	}
	return n, nil
}

func downloadCmd(ctx context.Context, mdDir, mdURL, targetURL, targetDir string, targets []string) error {
	c, err := refresh(ctx, mdDir, mdURL, targetURL)
	if err != nil {
		return err
	}
	for _, p := range targets {
		if err := downloadOne(ctx, c, targetDir, p); err != nil {
			return err
		}
	}
	return nil
}

func downloadOne(ctx context.Context, c *trust.Client, dir, targetPath string) error {
	tf, err := c.Target(ctx, targetPath)
	if err != nil {
		return err
	}
	name, err := localName(targetPath)
	if err != nil {
		return err
	}
	dst := filepath.Join(dir, name)
	if matches(dst, tf) {
		return nil // cached copy already verified against current metadata
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+name+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := durable.OS.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = c.Download(ctx, tf, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = durable.OS.Rename(tmp, dst)
	}
	if err != nil {
		durable.OS.Remove(tmp) // unverified bytes never reach dst
		return err
	}
	return durable.OS.SyncDir(dir)
}

// matches stream-hashes an existing file against tf.
func matches(path string, tf *trust.TargetFiles) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = trust.Verify(f, tf)
	return err == nil
}
