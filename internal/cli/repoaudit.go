//go:build !airlock_device

package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"

	"github.com/airlockfw/airlock/audit"
	"github.com/airlockfw/airlock/repo"
)

// auditActor names the person running a vendor-side command:
// $AIRLOCK_ACTOR, else the login name.
func auditActor(e *Env) string {
	if a := e.Getenv("AIRLOCK_ACTOR"); a != "" {
		return a
	}
	if a := os.Getenv("AIRLOCK_ACTOR"); a != "" {
		return a
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "user:" + u.Username
	}
	return "user:unknown"
}

// ensureAuditKey creates the audit checkpoint key at path unless it exists.
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

// recordRepo appends entries to the repository's audit log (REPO/audit,
// checkpoints signed with the configured audit key), if it keeps one. The
// operation itself has already happened; a failure to record it is
// reported as an error so that it cannot go unnoticed.
func recordRepo(ctx context.Context, e *Env, r *repo.Repo, entries ...audit.Entry) error {
	dir := r.AuditDir()
	if dir == "" || len(entries) == 0 {
		return nil
	}
	signer, err := audit.LoadSigner(r.Config().AuditKey)
	if err != nil {
		return fmt.Errorf("done, but the audit log could not be written: %w", err)
	}
	log, err := audit.Open(dir, signer, audit.Options{})
	if err != nil {
		return fmt.Errorf("done, but the audit log could not be opened: %w", err)
	}
	actor := auditActor(e)
	for _, en := range entries {
		if en.Actor == "" {
			en.Actor = actor
		}
		if _, err := log.Append(ctx, en); err != nil {
			log.Close()
			return fmt.Errorf("done, but the audit log could not be written: %w", err)
		}
	}
	return log.Close()
}
