package repo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// LockFile is the repository lock inside the repository directory (never
// served). Every mutating operation holds an exclusive flock(2) on it for
// its whole duration; the holder writes who it is into the file.
const LockFile = "airlock-repo.lock"

// Lock limits.
const (
	// DefaultLockWait is how long a mutating operation waits for the
	// repository lock held by another process before failing with a
	// LockedError. Every mutation is short (a publish takes seconds), so a
	// cron `repo timestamp` that meets a running `repo publish` waits for
	// it instead of failing; a lock held longer means a stuck process,
	// which the error names.
	DefaultLockWait = 30 * time.Second
	// lockPoll is the interval between attempts while waiting.
	lockPoll = 20 * time.Millisecond
	// maxLockInfo bounds what is read of the lock file's holder record.
	maxLockInfo = 4096
)

// ErrLocked is wrapped by LockedError.
var ErrLocked = errors.New("repository is locked by another operation")

// LockedError is returned by a mutating operation when another process (or
// another Repo in this process) holds the repository lock for longer than
// the wait.
type LockedError struct {
	Dir string
	// Holder is what the holder wrote into the lock file; zero fields if
	// it could not be read.
	Holder LockHolder
	Waited time.Duration
}

// LockHolder identifies the holder of the repository lock.
type LockHolder struct {
	PID       int
	Command   string // the holder's command line
	Operation string // the repository operation, e.g. "publish"
	Since     time.Time
}

func (e *LockedError) Error() string {
	h := e.Holder
	who := "an unknown process"
	if h.PID != 0 {
		who = fmt.Sprintf("pid %d (%q, %s since %s)", h.PID, h.Command, h.Operation, h.Since.Format(time.RFC3339))
	}
	return fmt.Sprintf("%v: %s is held by %s; waited %s (if that process is gone, the lock is released with it; never delete %s while it runs)",
		ErrLocked, e.Dir, who, e.Waited.Round(time.Millisecond), LockFile)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// lock takes the repository lock for op, waiting up to the configured
// wait, and returns the function that releases it.
func (r *Repo) lock(op string) (unlock func(), err error) {
	path := r.path(LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("failed to open the repository lock: %w", err)
	}
	wait := r.opts.LockWait
	if wait == 0 {
		wait = DefaultLockWait
	}
	start := time.Now()
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("failed to lock %s: %w", path, err)
		}
		if ok {
			break
		}
		if waited := time.Since(start); wait < 0 || waited >= wait {
			holder := readHolder(f)
			f.Close()
			return nil, &LockedError{Dir: r.dir, Holder: holder, Waited: waited}
		}
		time.Sleep(lockPoll)
	}
	// Record the holder for whoever waits. Not durable on purpose: the
	// lock does not outlive the process, and neither need the record.
	rec := fmt.Sprintf("pid %d\ncommand %s\noperation %s\nsince %s\n", os.Getpid(), strings.Join(os.Args, " "), op, time.Now().UTC().Format(time.RFC3339Nano))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(rec), 0)
	}
	return func() {
		f.Truncate(0)
		f.Close() // releases the flock
	}, nil
}

// readHolder parses the holder record of a lock file.
func readHolder(f *os.File) LockHolder {
	data, _ := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, maxLockInfo), maxLockInfo))
	var h LockHolder
	for line := range strings.Lines(string(data)) {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		switch k {
		case "pid":
			h.PID, _ = strconv.Atoi(v)
		case "command":
			h.Command = v
		case "operation":
			h.Operation = v
		case "since":
			h.Since, _ = time.Parse(time.RFC3339Nano, v)
		}
	}
	return h
}
