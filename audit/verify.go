package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// File names inside a log directory.
const (
	LogFile        = "audit.log"
	CheckpointFile = "checkpoints"
	PublicKeyFile  = "audit-key.pub"
	// TornFile receives a crash-torn last line moved out of audit.log by Open.
	TornFile = "audit.log.torn"
)

// tamperError is a sentinel that also matches ErrTampered.
type tamperError string

func (e tamperError) Error() string        { return string(e) }
func (e tamperError) Is(target error) bool { return target == ErrTampered }

// Verification failures. Every one of them matches [ErrTampered] with
// errors.Is; they arrive wrapped in an [*EntryError] or a [*CheckpointError]
// that says where.
var (
	// ErrTampered matches every verification failure below.
	ErrTampered = errors.New("audit log does not verify")
	// ErrEdited: an entry's bytes changed (hash chain or Merkle root mismatch).
	ErrEdited error = tamperError("entry edited")
	// ErrRemoved: entries are missing (seq gap, chain starting late, or fewer
	// entries than a signed checkpoint covers).
	ErrRemoved error = tamperError("entries removed")
	// ErrReordered: entries are out of order or repeated.
	ErrReordered error = tamperError("entries reordered")
	// ErrCheckpointSignature: a checkpoint is not validly signed by the log's
	// key (edited or forged).
	ErrCheckpointSignature error = tamperError("checkpoint signature invalid")
	// ErrCheckpointInconsistent: two checkpoints cannot both describe one
	// append-only log (reordered checkpoints, a consistency proof that fails).
	ErrCheckpointInconsistent error = tamperError("checkpoints inconsistent")
)

// Other errors.
var (
	ErrUnsupportedKey = errors.New("unsupported audit key")
	ErrKeyMismatch    = errors.New("signer does not match the log's public key file")
	ErrClosed         = errors.New("audit log is closed")
	ErrLocked         = errors.New("audit log is in use by another process")
)

// EntryError locates a failure at one entry of audit.log.
type EntryError struct {
	Seq    uint64 // position of the entry (0-based)
	Line   int    // line number in audit.log (1-based)
	Err    error  // ErrEdited, ErrRemoved, ErrReordered or ErrMalformed
	Detail string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %d (line %d): %v: %s", e.Seq, e.Line, e.Err, e.Detail)
}

func (e *EntryError) Unwrap() error { return e.Err }

// CheckpointError locates a failure at one signed checkpoint.
type CheckpointError struct {
	Index  int    // position in the checkpoints file (0-based); -1 for an external one
	Size   uint64 // the checkpoint's tree size, when it could be read
	Err    error
	Detail string
}

func (e *CheckpointError) Error() string {
	where := fmt.Sprintf("checkpoint %d", e.Index)
	if e.Index < 0 {
		where = "external checkpoint"
	}
	if e.Size > 0 {
		where += fmt.Sprintf(" (size %d)", e.Size)
	}
	return fmt.Sprintf("%s: %s", where, e.Detail)
}

func (e *CheckpointError) Unwrap() error { return e.Err }

// VerifyReport is what Verify checked.
type VerifyReport struct {
	Entries     uint64         // complete entries checked
	Checkpoints int            // signed checkpoints checked (file and external)
	Root        [HashSize]byte // Merkle root over all Entries
	Last        *Checkpoint    // the checkpoint with the largest size, if any
	// Unsigned is the number of entries after the last checkpoint: protected
	// only by the hash chain until the next checkpoint.
	Unsigned uint64
	// TornBytes is the length of an incomplete last line of audit.log, the
	// trace of a crash during an append; that entry was never acknowledged.
	TornBytes int64
	// TornCheckpointBytes is the same for the checkpoints file.
	TornCheckpointBytes int64
}

// VerifyOptions adjusts Verify.
type VerifyOptions struct {
	// External are signed checkpoint notes kept outside the log directory
	// (shipped off-box). Each must verify with the log's key and match the
	// log, which catches truncation of both files together.
	External [][]byte
}

// Verify checks the log in dir against the checkpoint public key pub (an
// ed25519.PublicKey). It streams audit.log once, with memory bounded by the
// number of checkpoints. On failure it returns the report so far and an
// error matching [ErrTampered] that names the first problem: a
// [*CheckpointError] or an [*EntryError].
func Verify(dir string, pub crypto.PublicKey) (*VerifyReport, error) {
	return VerifyWithOptions(dir, pub, VerifyOptions{})
}

// VerifyWithOptions is Verify with options.
func VerifyWithOptions(dir string, pub crypto.PublicKey, opts VerifyOptions) (*VerifyReport, error) {
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: checkpoint key must be Ed25519, not %T", ErrUnsupportedKey, pub)
	}
	st, err := verifyDir(dir, edPub, opts)
	if st == nil {
		return nil, err
	}
	return &st.report, err
}

// logState is what verification learns; Open continues from it.
type logState struct {
	report  VerifyReport
	rng     *compact.Range
	last    [HashSize]byte // leaf hash of the last entry
	tail    tail           // the newest entries
	logGood int64          // bytes of audit.log up to the last complete line
	cpGood  int64          // bytes of checkpoints up to the last complete line
	lastCP  uint64         // size of the last checkpoint in the file
	origin  string         // origin of the checkpoints, "" if none
}

var hasher = rfc6962.DefaultHasher

func newRange() *compact.Range {
	f := &compact.RangeFactory{Hash: hasher.HashChildren}
	return f.NewEmptyRange(0)
}

type indexedCheckpoint struct {
	Checkpoint
	index int // in the file; -1 external
}

func verifyDir(dir string, pub ed25519.PublicKey, opts VerifyOptions) (*logState, error) {
	st := &logState{rng: newRange()}
	cps, good, torn, err := readCheckpoints(filepath.Join(dir, CheckpointFile), pub)
	if err != nil {
		return st, err
	}
	st.cpGood, st.report.TornCheckpointBytes = good, torn
	if len(cps) > 0 {
		st.lastCP = cps[len(cps)-1].Size
		st.origin = cps[0].Origin
	}
	for _, msg := range opts.External {
		c, err := OpenCheckpoint(msg, pub)
		if err != nil {
			return st, &CheckpointError{Index: -1, Err: errors.Unwrap(err), Detail: err.Error()}
		}
		cps = append(cps, indexedCheckpoint{c, -1})
	}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].Size < cps[j].Size })
	for i := 1; i < len(cps); i++ {
		if cps[i].Size == cps[i-1].Size && cps[i].Root != cps[i-1].Root {
			return st, &CheckpointError{Index: cps[i].index, Size: cps[i].Size, Err: ErrCheckpointInconsistent,
				Detail: fmt.Sprintf("%v: two signed checkpoints of size %d have different roots: the log was forked or rewritten", ErrCheckpointInconsistent, cps[i].Size)}
		}
		if cps[i].Origin != cps[0].Origin {
			return st, &CheckpointError{Index: cps[i].index, Size: cps[i].Size, Err: ErrCheckpointInconsistent,
				Detail: fmt.Sprintf("%v: origin %q differs from %q: checkpoint of another log", ErrCheckpointInconsistent, cps[i].Origin, cps[0].Origin)}
		}
	}
	st.report.Checkpoints = len(cps)
	if len(cps) > 0 {
		st.report.Last = &cps[len(cps)-1].Checkpoint
	}

	// The consistency proofs between consecutive checkpoints need these
	// perfect-subtree hashes, collected while streaming the leaves.
	need := map[compact.NodeID][]byte{}
	proofs := make([]proof.Nodes, len(cps))
	for i := 1; i < len(cps); i++ {
		p, err := proof.Consistency(cps[i-1].Size, cps[i].Size)
		if err != nil {
			return st, fmt.Errorf("internal error: %w", err)
		}
		proofs[i] = p
		for _, id := range p.IDs {
			need[id] = nil
		}
	}
	visit := func(id compact.NodeID, h []byte) {
		if _, ok := need[id]; ok {
			need[id] = h
		}
	}

	next := 0 // next checkpoint to check
	// checkAt checks every checkpoint of the current size.
	checkAt := func() error {
		for next < len(cps) && cps[next].Size == st.report.Entries {
			c := cps[next]
			root := hasher.EmptyRoot()
			if c.Size > 0 {
				root, _ = st.rng.GetRootHash(nil)
			}
			if !bytes.Equal(root, c.Root[:]) {
				from := uint64(0)
				if next > 0 {
					from = cps[next-1].Size
				}
				return &CheckpointError{Index: c.index, Size: c.Size, Err: ErrEdited, Detail: fmt.Sprintf(
					"%v: the Merkle root of the log's first %d entries differs from the signed root: an entry in [%d, %d) was edited, or the log was rewritten from there",
					ErrEdited, c.Size, from, c.Size)}
			}
			if next > 0 && cps[next-1].Size < c.Size {
				prev := cps[next-1]
				hashes := make([][]byte, len(proofs[next].IDs))
				for i, id := range proofs[next].IDs {
					hashes[i] = need[id]
				}
				pf, err := proofs[next].Rehash(hashes, hasher.HashChildren)
				if err == nil {
					err = proof.VerifyConsistency(hasher, prev.Size, c.Size, pf, prev.Root[:], c.Root[:])
				}
				if err != nil {
					return &CheckpointError{Index: c.index, Size: c.Size, Err: ErrCheckpointInconsistent, Detail: fmt.Sprintf(
						"%v: not consistent with the checkpoint of size %d: %v", ErrCheckpointInconsistent, prev.Size, err)}
				}
			}
			next++
		}
		return nil
	}

	f, err := os.Open(filepath.Join(dir, LogFile))
	if errors.Is(err, fs.ErrNotExist) && len(cps) == 0 {
		copy(st.report.Root[:], hasher.EmptyRoot())
		return st, nil // a log that was never written to
	}
	if err != nil {
		return st, fmt.Errorf("failed to open audit log: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, MaxEntrySize+1)
	line := 0
	for {
		b, err := r.ReadSlice('\n')
		if err == io.EOF {
			st.report.TornBytes = int64(len(b))
			break
		}
		line++
		seq := st.report.Entries
		if err == bufio.ErrBufferFull {
			return st, &EntryError{Seq: seq, Line: line, Err: ErrMalformed, Detail: fmt.Sprintf("line is longer than %d bytes", MaxEntrySize)}
		}
		if err != nil {
			return st, fmt.Errorf("failed to read audit log: %w", err)
		}
		b = b[:len(b)-1]
		e, err := ParseEntry(b)
		if err != nil {
			return st, &EntryError{Seq: seq, Line: line, Err: ErrMalformed, Detail: malformedDetail(err)}
		}
		if e.Seq != seq {
			return st, seqError(e.Seq, seq, line, r)
		}
		if e.Prev != st.last {
			if seq == 0 {
				return st, &EntryError{Seq: 0, Line: line, Err: ErrRemoved, Detail: "the first entry's prev is not zero: entries were removed from the start of the log"}
			}
			return st, &EntryError{Seq: seq - 1, Line: line - 1, Err: ErrEdited, Detail: fmt.Sprintf(
				"its hash does not match the prev recorded in entry %d: entry %d or %d was edited, or entries were removed or reordered and renumbered", seq, seq-1, seq)}
		}
		// Checkpoints of size seq are checked only now, after the chain
		// check, which names an edited entry more precisely.
		if err := checkAt(); err != nil {
			return st, err
		}
		leaf := hasher.HashLeaf(b)
		if err := st.rng.Append(leaf, visit); err != nil {
			return st, fmt.Errorf("internal error: %w", err)
		}
		copy(st.last[:], leaf)
		st.tail.add(e)
		st.report.Entries++
		st.logGood += int64(len(b)) + 1
	}
	if err := checkAt(); err != nil {
		return st, err
	}
	if st.report.Entries > 0 {
		root, _ := st.rng.GetRootHash(nil)
		copy(st.report.Root[:], root)
	} else {
		copy(st.report.Root[:], hasher.EmptyRoot())
	}
	if next < len(cps) {
		c := cps[len(cps)-1]
		lastGood := "the start"
		if next > 0 {
			lastGood = fmt.Sprintf("the checkpoint of size %d", cps[next-1].Size)
		}
		return st, &CheckpointError{Index: c.index, Size: c.Size, Err: ErrRemoved, Detail: fmt.Sprintf(
			"%v: the log ends after %d entries but a signed checkpoint covers %d: the log was truncated after %s",
			ErrRemoved, st.report.Entries, c.Size, lastGood)}
	}
	if st.report.Last != nil {
		st.report.Unsigned = st.report.Entries - st.report.Last.Size
	} else {
		st.report.Unsigned = st.report.Entries
	}
	return st, nil
}

// seqError classifies an entry whose seq is not its position: if the
// expected seq appears later, entries were reordered; otherwise removed.
func seqError(got, want uint64, line int, rest *bufio.Reader) error {
	if got < want {
		return &EntryError{Seq: want, Line: line, Err: ErrReordered, Detail: fmt.Sprintf("found seq %d where %d belongs: entries reordered or repeated", got, want)}
	}
	for {
		b, err := rest.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			break
		}
		var w struct {
			Seq *uint64 `json:"seq"`
		}
		if json.Unmarshal(bytes.TrimSuffix(b, []byte("\n")), &w) == nil && w.Seq != nil && *w.Seq == want {
			return &EntryError{Seq: want, Line: line, Err: ErrReordered, Detail: fmt.Sprintf("found seq %d where %d belongs, and %d later: entries reordered", got, want, want)}
		}
	}
	removed := fmt.Sprintf("entry %d was", want)
	if got-want > 1 {
		removed = fmt.Sprintf("entries %d to %d were", want, got-1)
	}
	return &EntryError{Seq: want, Line: line, Err: ErrRemoved, Detail: fmt.Sprintf("expected seq %d but found %d: %s removed", want, got, removed)}
}

// malformedDetail drops the sentinel's text from a ParseEntry error, which
// EntryError prints already.
func malformedDetail(err error) string {
	return strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": ")
}

// maxCheckpointLine bounds one base64 line of the checkpoints file.
const maxCheckpointLine = (MaxCheckpointSize+2)/3*4 + 1

// readCheckpoints reads and verifies the checkpoints file. A missing file
// means no checkpoints. It returns the byte length up to the last complete
// line and the length of a torn last line.
func readCheckpoints(path string, pub ed25519.PublicKey) (cps []indexedCheckpoint, good, torn int64, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, 0, nil
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("failed to open checkpoints: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxCheckpointLine+1)
	for i := 0; ; i++ {
		b, err := r.ReadSlice('\n')
		if err == io.EOF {
			return cps, good, int64(len(b)), nil
		}
		if err == bufio.ErrBufferFull {
			return nil, 0, 0, &CheckpointError{Index: i, Err: ErrMalformed, Detail: fmt.Sprintf("%v: line is longer than %d bytes", ErrMalformed, maxCheckpointLine)}
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("failed to read checkpoints: %w", err)
		}
		if i >= MaxCheckpoints {
			return nil, 0, 0, &CheckpointError{Index: i, Err: ErrMalformed, Detail: fmt.Sprintf("%v: more than %d checkpoints", ErrMalformed, MaxCheckpoints)}
		}
		msg, err := base64.StdEncoding.Strict().DecodeString(string(b[:len(b)-1]))
		if err != nil {
			return nil, 0, 0, &CheckpointError{Index: i, Err: ErrMalformed, Detail: fmt.Sprintf("%v: not base64", ErrMalformed)}
		}
		c, err := OpenCheckpoint(msg, pub)
		if err != nil {
			return nil, 0, 0, &CheckpointError{Index: i, Err: errors.Unwrap(err), Detail: err.Error()}
		}
		if n := len(cps); n > 0 && c.Size <= cps[n-1].Size {
			return nil, 0, 0, &CheckpointError{Index: i, Size: c.Size, Err: ErrCheckpointInconsistent, Detail: fmt.Sprintf(
				"%v: size %d is not larger than the previous checkpoint's %d: checkpoints reordered or replayed", ErrCheckpointInconsistent, c.Size, cps[n-1].Size)}
		}
		cps = append(cps, indexedCheckpoint{c, i})
		good += int64(len(b))
	}
}

// ReadCheckpointNotes reads a copy of a checkpoints file (one base64 signed
// note per line, as Log writes it) kept outside the log directory, for
// VerifyOptions.External. Signatures are checked by Verify, not here. A torn
// last line is ignored.
func ReadCheckpointNotes(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open checkpoints: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, maxCheckpointLine+1)
	var out [][]byte
	for i := 0; ; i++ {
		b, err := r.ReadSlice('\n')
		if err == io.EOF {
			return out, nil
		}
		if err == bufio.ErrBufferFull || i >= MaxCheckpoints {
			return nil, &CheckpointError{Index: i, Err: ErrMalformed, Detail: fmt.Sprintf("%v: line longer than %d bytes or more than %d checkpoints", ErrMalformed, maxCheckpointLine, MaxCheckpoints)}
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read checkpoints: %w", err)
		}
		msg, err := base64.StdEncoding.Strict().DecodeString(string(b[:len(b)-1]))
		if err != nil {
			return nil, &CheckpointError{Index: i, Err: ErrMalformed, Detail: fmt.Sprintf("%v: not base64", ErrMalformed)}
		}
		out = append(out, msg)
	}
}
