package repo

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSecondMutatorGetsANamedLockedError: while one operation holds the
// repository lock, another fails (at once, or after its bounded wait) with
// a LockedError naming the holder's pid, command and operation.
func TestSecondMutatorGetsANamedLockedError(t *testing.T) {
	f := newFixture(t)
	unlock, err := f.r.lock("publish")
	if err != nil {
		t.Fatal(err)
	}
	for _, wait := range []time.Duration{-1, 150 * time.Millisecond} {
		r2, err := OpenWith(f.dir, Options{LockWait: wait})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = r2.Timestamp(f.tstamp)
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
			t.Fatalf("wait %v: Timestamp under a held lock = %v, want a LockedError", wait, err)
		}
		if le.Holder.PID != os.Getpid() || le.Holder.Operation != "publish" || le.Holder.Since.IsZero() || le.Holder.Command == "" {
			t.Errorf("holder = %+v, want this pid, operation publish, a command and a time", le.Holder)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("pid %d", os.Getpid())) || !strings.Contains(msg, "publish since") {
			t.Errorf("error does not name the holder: %s", msg)
		}
		if took := time.Since(start); wait > 0 && took < wait {
			t.Errorf("gave up after %v, want a wait of %v", took, wait)
		}
	}
	unlock()
	r2, _ := OpenWith(f.dir, Options{LockWait: -1})
	if _, err := r2.Timestamp(f.tstamp); err != nil {
		t.Fatalf("Timestamp after the lock was released: %v", err)
	}
}

// TestLockHeldByAnotherProcess: the lock is a flock on REPO/airlock-repo.lock,
// so it works across processes and names the other process.
func TestLockHeldByAnotherProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no flock")
	}
	f := newFixture(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHelperProcess$")
	cmd.Env = append(os.Environ(), "AIRLOCK_REPO_LOCK_HELPER="+f.dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	r2, _ := OpenWith(f.dir, Options{LockWait: -1})
	_, err = r2.Publish(f.snapshot, f.tstamp)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.PID != cmd.Process.Pid || le.Holder.Operation != "publish" {
		t.Fatalf("Publish while another process holds the lock = %v, want a LockedError naming pid %d", err, cmd.Process.Pid)
	}
	stdin.Close()
	cmd.Wait()
	if _, err := r2.Publish(f.snapshot, f.tstamp); err != nil {
		t.Fatalf("Publish after the other process exited: %v", err)
	}
}

func TestLockHelperProcess(t *testing.T) {
	dir := os.Getenv("AIRLOCK_REPO_LOCK_HELPER")
	if dir == "" {
		t.Skip("helper process for TestLockHeldByAnotherProcess")
	}
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := r.lock("publish")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	fmt.Println("locked")
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
}

// TestPublishAndTimestampRaceLosesNoRelease runs `repo publish` and `repo
// timestamp` (as cron would) concurrently on one repository, through two
// Repos, many times. Without the lock both can write timestamp version T+1
// and the timestamp's copy can point at the snapshot before the release, so
// the release is never referenced. With it: every timestamp version is
// written once, and the final timestamp references the newest snapshot,
// which references every release.
func TestPublishAndTimestampRaceLosesNoRelease(t *testing.T) {
	iterations := 40
	if testing.Short() {
		iterations = 8
	}
	f := newFixture(t)
	cron, err := Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]string{}
	for i := range iterations {
		version := fmt.Sprintf("1.0.%d", i)
		if _, err := f.r.AddRelease(ReleaseOptions{Product: "acme/router-x1", ImagePath: writeImage(t, 4096), Version: version,
			SecurityVersion: 1, Models: []string{"x1"}, Signers: []crypto.Signer{f.product[0], f.product[1]}}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var pubTS, cronTS int64
		var pubErr, cronErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			var res *PublishResult
			if res, pubErr = f.r.Publish(f.snapshot, f.tstamp); pubErr == nil {
				pubTS = res.TimestampVersion
			}
		}()
		go func() { defer wg.Done(); cronTS, cronErr = cron.Timestamp(f.tstamp) }()
		wg.Wait()
		if pubErr != nil || cronErr != nil {
			t.Fatalf("iteration %d: publish: %v, timestamp: %v", i, pubErr, cronErr)
		}
		for v, who := range map[int64]string{pubTS: "publish", cronTS: "timestamp"} {
			if prev, dup := seen[v]; dup {
				t.Fatalf("iteration %d: timestamp version %d written by %s and by %s", i, v, prev, who)
			}
			seen[v] = who
		}
		if pubTS == cronTS {
			t.Fatalf("iteration %d: publish and timestamp both wrote timestamp version %d", i, pubTS)
		}
		ts, err := f.r.PublishedTimestamp()
		if err != nil {
			t.Fatal(err)
		}
		snap, err := f.r.PublishedSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		if got := ts.Signed.Meta["snapshot.json"].Version; got != snap.Signed.Version {
			t.Fatalf("iteration %d: the timestamp references snapshot %d, the newest is %d: release %s is lost", i, got, snap.Signed.Version, version)
		}
		role, err := f.r.PublishedRole("acme.router-x1")
		if err != nil {
			t.Fatal(err)
		}
		if got := snap.Signed.Meta["acme.router-x1.json"].Version; got != role.Signed.Version {
			t.Fatalf("iteration %d: snapshot references product role %d, newest is %d", i, got, role.Signed.Version)
		}
		if n := len(role.Signed.Targets); n != i+1 {
			t.Fatalf("iteration %d: the product role holds %d releases, want %d", i, n, i+1)
		}
	}
	t.Logf("%d iterations of concurrent publish + timestamp: %d distinct timestamp versions, no release lost", iterations, len(seen))
}
