package repo

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/keys"
)

// Options configures how an open repository acts. The zero value records
// the login name as the actor, checks no key environment registry and
// waits DefaultLockWait for the repository lock.
type Options struct {
	// Actor names who acts, in the audit log (e.g. "user:alice"). Empty
	// means "user:" and the login name of the process.
	Actor string
	// Keyring, if not nil, enforces the environment rule: every signer
	// handed to an operation must not be registered for another trust
	// environment than the repository's, keys the repository enrolls
	// (Init's keys, Delegate's product keys) must not be either, and are
	// registered for it.
	Keyring *keys.Keyring
	// LockWait is how long a mutating operation waits for the repository
	// lock (see LockFile). Zero means DefaultLockWait; negative means fail
	// at once.
	LockWait time.Duration
	// Progress, if not nil, is called when AddRelease starts copying an
	// image or CreateBundle a payload, with its length; every byte copied
	// is then also written to the writer it returns (a progress display),
	// which must not fail.
	Progress func(total int64) io.Writer
	// LogSigner is the transparency log's key (Ed25519; a file or PKCS#11
	// key, see Config.LogKey). Publish needs it when the published root
	// carries a transparency policy (tlog.PolicyField): every release that
	// becomes installable is then appended to the log first.
	LogSigner crypto.Signer
	// LogHTTPClient sends checkpoints to the policy's witnesses (C2SP
	// tlog-witness). Nil means a client with DefaultWitnessTimeout.
	LogHTTPClient *http.Client
	// LogTimeout bounds how long Publish waits for its log entries to be
	// integrated and a (witnessed) checkpoint covering them to be
	// published. Zero means DefaultLogTimeout.
	LogTimeout time.Duration
	// ExternalLog says the transparency log is kept by another system
	// (for example a log service on tessera's database driver, serving
	// its tiles under the repository's log/ path): Publish then neither
	// appends to REPO/public/log nor needs LogSigner. It is the
	// publisher's duty to log a release before it publishes it; devices
	// refuse a release the log does not hold either way.
	ExternalLog bool
}

// OpenWith opens an existing repository with options.
func OpenWith(dir string, opts Options) (*Repo, error) {
	r, err := Open(dir)
	if err != nil {
		return nil, err
	}
	r.opts = opts
	return r, nil
}

// ErrAudit is wrapped when an operation was done but its audit entry could
// not be appended; the error cannot go unnoticed.
var ErrAudit = errors.New("done, but the audit log could not be written")

func (r *Repo) actor() string {
	if r.opts.Actor != "" {
		return r.opts.Actor
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "user:" + u.Username
	}
	return "user:unknown"
}

// record appends entries to the repository's audit log (REPO/audit,
// checkpoints signed with the configured audit key), if it keeps one. It is
// called by every mutating operation after it acted, under the repository
// lock, so the log's order is the repository's.
func (r *Repo) record(entries ...audit.Entry) error {
	dir := r.AuditDir()
	if dir == "" || len(entries) == 0 {
		return nil
	}
	signer, err := audit.LoadSigner(r.cfg.AuditKey)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	log, err := audit.Open(dir, signer, audit.Options{})
	if err != nil {
		return fmt.Errorf("%w: failed to open it: %w", ErrAudit, err)
	}
	actor := r.actor()
	for _, en := range entries {
		if en.Actor == "" {
			en.Actor = actor
		}
		if _, err := log.Append(ctxTODO(), en); err != nil {
			log.Close()
			return fmt.Errorf("%w: %w", ErrAudit, err)
		}
	}
	if err := log.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrAudit, err)
	}
	return nil
}

// ensureAuditKey creates the audit checkpoint key at path unless it exists
// and returns its absolute path.
func ensureAuditKey(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); errors.Is(err, fs.ErrNotExist) {
		if _, err := audit.GenerateKey(abs); err != nil {
			return "", fmt.Errorf("failed to create the audit key: %w", err)
		}
	} else if err != nil {
		return "", err
	}
	return abs, nil
}

// checkSigners enforces the environment rule on signers (see
// Options.Keyring).
func (r *Repo) checkSigners(signers ...crypto.Signer) error {
	if r.opts.Keyring == nil {
		return nil
	}
	return r.opts.Keyring.CheckSigners(r.Environment(), signers...)
}

// ctxTODO is the context of audit appends: the repository API takes no
// context yet.
func ctxTODO() context.Context { return context.Background() }
