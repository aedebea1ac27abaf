// Package witness is the witness side of C2SP tlog-witness
// (https://c2sp.org/tlog-witness): an http.Handler for
// POST /add-checkpoint that cosigns a log's checkpoint (C2SP
// tlog-cosignature, cosignature/v1) only if it is a consistent extension
// of the last checkpoint it cosigned for that log, whose state it keeps
// per log, crash-safely. It is vendor and infrastructure side (`airlock
// witness serve`, `airlock demo`); devices never link it.
package witness

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/airlockfw/airlock/internal/durable"
	atlog "github.com/airlockfw/airlock/tlog"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Limits.
const (
	// MaxKeyFile bounds the witness's key file.
	MaxKeyFile = 4 << 10
	// MaxLogs bounds the logs one witness knows.
	MaxLogs = 1024
)

// File names in the witness's directory.
const (
	KeyFile  = "witness.key"  // the note signer key, 0600
	VKeyFile = "witness.vkey" // its cosignature/v1 verifier key
	StateDir = "logs"         // one file per log: the last cosigned checkpoint
)

var (
	// ErrKey: the witness key is missing or malformed.
	ErrKey = errors.New("witness: key")
	// ErrConfig: a log key or the witness's options are invalid.
	ErrConfig = errors.New("witness: configuration")
)

// GenerateKey creates DIR/witness.key (0600, O_EXCL: never replaced) with
// a new Ed25519 note key named name, and returns its cosignature/v1
// verifier key (what a transparency policy lists for this witness).
func GenerateKey(dir, name string) (vkey string, err error) {
	skey, v, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if vkey, err = fnote.VKeyToCosignatureV1(v); err != nil {
		return "", fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := durable.CreateFile(durable.OS, filepath.Join(dir, KeyFile), []byte(skey+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := durable.WriteFile(durable.OS, filepath.Join(dir, VKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
		return "", err
	}
	return vkey, nil
}

// checkPair checks that the verifier key belongs to the signer.
func checkPair(s note.Signer, vkey string) error {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrKey, VKeyFile, err)
	}
	signed, err := note.Sign(&note.Note{Text: "witness key check\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"}, s)
	if err == nil {
		_, err = note.Open(signed, note.VerifierList(v))
	}
	if err != nil {
		return fmt.Errorf("%w: %s is not the public half of %s", ErrKey, VKeyFile, KeyFile)
	}
	return nil
}

// Witness cosigns checkpoints of the logs it knows. It is safe for
// concurrent use; one Witness must own its directory.
type Witness struct {
	dir    string
	signer note.Signer
	vkey   string
	logs   map[string]note.Verifier // the logs' keys, by origin
	mu     sync.Mutex
	held   map[string]*atlog.Checkpoint // origin → last cosigned
}

// Open opens the witness in dir (its key made by GenerateKey) for the logs
// whose note verifier keys are given (each key names its log's origin).
func Open(dir string, logKeys []string) (*Witness, error) {
	b, err := durable.ReadFile(durable.OS, filepath.Join(dir, KeyFile), MaxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	skey := strings.TrimSpace(string(b))
	signer, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, KeyFile, err)
	}
	vb, err := durable.ReadFile(durable.OS, filepath.Join(dir, VKeyFile), MaxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	vkey := strings.TrimSpace(string(vb))
	if err := checkPair(signer, vkey); err != nil {
		return nil, err
	}
	if len(logKeys) == 0 || len(logKeys) > MaxLogs {
		return nil, fmt.Errorf("%w: want 1 to %d logs, got %d", ErrConfig, MaxLogs, len(logKeys))
	}
	w := &Witness{dir: dir, signer: signer, vkey: vkey, logs: map[string]note.Verifier{}, held: map[string]*atlog.Checkpoint{}}
	for _, k := range logKeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, fmt.Errorf("%w: log key %q: %v", ErrConfig, k, err)
		}
		if _, dup := w.logs[v.Name()]; dup {
			return nil, fmt.Errorf("%w: two keys for log %q", ErrConfig, v.Name())
		}
		w.logs[v.Name()] = v
		raw, err := durable.ReadFile(durable.OS, w.statePath(v.Name()), atlog.MaxCheckpointSize)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			c, err := atlog.ParseHeld(raw)
			if err != nil || c.Origin != v.Name() {
				return nil, fmt.Errorf("witness: stored checkpoint of %q: %v", v.Name(), err)
			}
			w.held[v.Name()] = c
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, StateDir), 0o700); err != nil {
		return nil, err
	}
	return w, nil
}

// VerifierKey returns the witness's cosignature/v1 verifier key.
func (w *Witness) VerifierKey() string { return w.vkey }

// Name returns the witness's key name.
func (w *Witness) Name() string { return w.signer.Name() }

// Held returns the size of the last checkpoint cosigned for origin (0 if
// none).
func (w *Witness) Held(origin string) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.held[origin]; c != nil {
		return c.Size
	}
	return 0
}

func (w *Witness) statePath(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return filepath.Join(w.dir, StateDir, hex.EncodeToString(h[:16]))
}

// Handler returns the witness's HTTP handler: POST /add-checkpoint.
func (w *Witness) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", w.addCheckpoint)
	return mux
}

// reply is a status and, for 200 and 409, a body.
type reply struct {
	status int
	body   []byte
	ctype  string
	msg    string
}

func (w *Witness) addCheckpoint(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, int64(MaxRequestSize)))
	var rep reply
	if err != nil {
		rep = reply{status: http.StatusRequestEntityTooLarge, msg: err.Error()}
		if !errors.As(err, new(*http.MaxBytesError)) {
			rep.status = http.StatusBadRequest
		}
	} else {
		rep = w.add(body)
	}
	if rep.ctype == "" {
		rep.ctype = "text/plain; charset=utf-8"
	}
	rw.Header().Set("Content-Type", rep.ctype)
	rw.WriteHeader(rep.status)
	if rep.body != nil {
		rw.Write(rep.body)
	} else if rep.msg != "" {
		io.WriteString(rw, rep.msg+"\n")
	}
}

func (w *Witness) add(body []byte) reply {
	req, err := ParseRequest(body)
	if err != nil {
		return reply{status: http.StatusBadRequest, msg: err.Error()}
	}
	origin, _, _ := strings.Cut(string(req.Checkpoint), "\n")
	lk, ok := w.logs[origin]
	if !ok {
		return reply{status: http.StatusNotFound, msg: fmt.Sprintf("unknown log %q", origin)}
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(lk))
	if err != nil {
		return reply{status: http.StatusForbidden, msg: "the checkpoint is not signed by the log's key"}
	}
	// The signature is verified (above); the body is parsed as strictly as
	// a device parses it.
	next, err := atlog.ParseHeld(req.Checkpoint)
	if err != nil {
		return reply{status: http.StatusBadRequest, msg: err.Error()}
	}
	if next.Size == 0 && next.Hash != emptyRoot {
		return reply{status: http.StatusUnprocessableEntity, msg: "a checkpoint of size 0 must have the empty tree's root"}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	held := w.held[origin]
	var heldSize uint64
	if held != nil {
		heldSize = held.Size
	}
	switch {
	case req.OldSize > next.Size:
		return reply{status: http.StatusBadRequest, msg: fmt.Sprintf("old size %d is larger than the checkpoint's size %d", req.OldSize, next.Size)}
	case req.OldSize != heldSize:
		return reply{status: http.StatusConflict, body: fmt.Appendf(nil, "%d\n", heldSize), ctype: "text/x.tlog.size"}
	case held == nil || heldSize == 0:
		if len(req.Proof) != 0 {
			return reply{status: http.StatusUnprocessableEntity, msg: "a consistency proof from size 0 must be empty"}
		}
	case next.Size == heldSize:
		if next.Hash != held.Hash || len(req.Proof) != 0 {
			return reply{status: http.StatusUnprocessableEntity, msg: fmt.Sprintf("split view: a checkpoint of size %d with another root than the one cosigned", next.Size)}
		}
	default:
		if err := tlog.CheckTree(req.Proof, int64(next.Size), next.Hash, int64(heldSize), held.Hash); err != nil {
			return reply{status: http.StatusUnprocessableEntity, msg: fmt.Sprintf("the consistency proof from size %d does not verify: %v", heldSize, err)}
		}
	}
	// Remember it before cosigning: the witness never cosigns a
	// checkpoint it could forget in a crash.
	if held == nil || next.Size > heldSize {
		if err := durable.WriteFile(durable.OS, w.statePath(origin), req.Checkpoint, 0o600); err != nil {
			return reply{status: http.StatusInternalServerError, msg: "cannot store the checkpoint"}
		}
		w.held[origin] = next
	}
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		return reply{status: http.StatusInternalServerError, msg: "cannot sign"}
	}
	_, sig, _ := bytes.Cut(signed, []byte("\n\n"))
	return reply{status: http.StatusOK, body: sig}
}

var emptyRoot = tlog.Hash(sha256.Sum256(nil))
