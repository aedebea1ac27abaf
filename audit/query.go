package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// MaxQueryResults bounds the entries Query returns; use Scan to stream more.
const MaxQueryResults = 100_000

// ErrTooManyResults is returned by Query when more than MaxQueryResults
// entries match.
var ErrTooManyResults = errors.New("too many matching audit entries")

// Filter selects entries. Zero fields match everything.
type Filter struct {
	Since   time.Time // entries at or after Since
	Until   time.Time // entries before Until
	Actor   string
	Release string // "product@version"
	Device  string
	Action  Action
}

// Match reports whether e passes f.
func (f *Filter) Match(e *Entry) bool {
	return (f.Since.IsZero() || !e.Time.Before(f.Since)) &&
		(f.Until.IsZero() || e.Time.Before(f.Until)) &&
		(f.Actor == "" || e.Actor == f.Actor) &&
		(f.Release == "" || e.Release == f.Release) &&
		(f.Device == "" || e.Device == f.Device) &&
		(f.Action == "" || e.Action == f.Action)
}

// Scan streams the entries of the log in dir that match f, in log order, to
// fn; an error from fn stops the scan and is returned. Every line is parsed
// strictly, but Scan does not verify the chain or checkpoints: run Verify
// when the answer must be trusted. A torn last line is skipped.
func Scan(dir string, f Filter, fn func(Entry) error) error {
	file, err := os.Open(filepath.Join(dir, LogFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open audit log: %w", err)
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, MaxEntrySize+1)
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if err == io.EOF {
			return nil
		}
		if err == bufio.ErrBufferFull {
			return &EntryError{Line: line, Seq: uint64(line - 1), Err: ErrMalformed, Detail: fmt.Sprintf("line is longer than %d bytes", MaxEntrySize)}
		}
		if err != nil {
			return fmt.Errorf("failed to read audit log: %w", err)
		}
		e, err := ParseEntry(b[:len(b)-1])
		if err != nil {
			return &EntryError{Line: line, Seq: uint64(line - 1), Err: ErrMalformed, Detail: malformedDetail(err)}
		}
		if f.Match(&e) {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
}

// Query returns the entries of the log in dir that match f, in log order.
// Like Scan, it does not verify the log.
func Query(dir string, f Filter) ([]Entry, error) {
	var out []Entry
	err := Scan(dir, f, func(e Entry) error {
		if len(out) == MaxQueryResults {
			return fmt.Errorf("%w: more than %d; narrow the filter or use Scan", ErrTooManyResults, MaxQueryResults)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Event is one thing that happened to a release, for ReleaseSummary.
type Event struct {
	Seq     uint64
	Time    time.Time
	Actor   string
	Action  Action
	Device  string
	Details map[string]string
}

// ReleaseSummary answers "who added, signed, approved, published and
// distributed release X, and which devices installed it".
type ReleaseSummary struct {
	Release    string
	Added      []Event // release.added
	Signed     []Event // release.signed, release.delta_added
	Approved   []Event // release.approved and release.rejected
	Published  []Event // release.published and release.revoked
	Rollouts   []Event // release.deployed and rollout.* but the following
	Assigned   []Event // rollout.assigned, rollout.reconciled
	Installed  []Event // device.updated
	RolledBack []Event // device.rolled_back
	Failed     []Event // device.failed
}

// Summarize groups the entries of one release (as returned by Query with
// Filter.Release set) by what they say about it. Entries of other releases
// are ignored.
func Summarize(release string, entries []Entry) *ReleaseSummary {
	s := &ReleaseSummary{Release: release}
	for i := range entries {
		e := &entries[i]
		if e.Release != release {
			continue
		}
		ev := Event{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Action: e.Action, Device: e.Device, Details: e.Details}
		switch e.Action {
		case ReleaseAdded:
			s.Added = append(s.Added, ev)
		case ReleaseSigned, ReleaseDeltaAdded:
			s.Signed = append(s.Signed, ev)
		case ReleaseApproved, ReleaseRejected:
			s.Approved = append(s.Approved, ev)
		case ReleasePublished, ReleaseRevoked:
			s.Published = append(s.Published, ev)
		case ReleaseDeployed:
			s.Rollouts = append(s.Rollouts, ev)
		case RolloutStarted, RolloutPaused, RolloutResumed, RolloutAdvanced, RolloutCancelled, RolloutCompleted,
			RolloutCreated, RolloutTransition:
			s.Rollouts = append(s.Rollouts, ev)
		case RolloutAssigned, RolloutReconciled:
			s.Assigned = append(s.Assigned, ev)
		case DeviceUpdated:
			s.Installed = append(s.Installed, ev)
		case DeviceRolledBack:
			s.RolledBack = append(s.RolledBack, ev)
		case DeviceFailed:
			s.Failed = append(s.Failed, ev)
		}
	}
	return s
}
