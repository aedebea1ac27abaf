package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/director"
	"github.com/airlockfw/airlock/server/rollouts"
)

// DirectorRoot returns version 1 of the director repository's root
// metadata of the server data directory dataDir (devices are provisioned
// with it), creating the director's keys and root on first use; kekFile is
// the KEK file (empty: dataDir/kek.key, created if missing).
func DirectorRoot(dataDir, kekFile string) ([]byte, error) {
	if kekFile == "" {
		kekFile = filepath.Join(dataDir, auth.KEKFile)
	}
	kek, _, err := auth.LoadOrCreateKEK(kekFile)
	if err != nil {
		return nil, err
	}
	d, err := director.Open(filepath.Join(dataDir, director.Dir), kek, time.Now(), 0, 0)
	if err != nil {
		return nil, err
	}
	root, _ := d.Root(1)
	return root, nil
}

// Director constants and errors (see package server/director).
const (
	DirectorPath                   = director.Path
	DirectorCustomKey              = director.CustomKey
	DefaultDirectorTimestampExpiry = director.DefaultTimestampExpiry
	DefaultDirectorExpiry          = director.DefaultExpiry
	MinDirectorExpiry              = director.MinExpiry
	MaxDirectorExpiry              = director.MaxExpiry
)

// ErrDirectorKeys: the director's key files are missing, unreadable or do
// not open with the KEK.
var ErrDirectorKeys = director.ErrKeys

// initRollouts opens the director (creating its keys and root on first
// start) and loads the rollout engine.
func (s *Server) initRollouts() error {
	if s.cfg.RolloutTick == 0 {
		s.cfg.RolloutTick = DefaultRolloutTick
	}
	if s.cfg.RolloutTick < MinRolloutTick || s.cfg.RolloutTick > MaxRolloutTick {
		return fmt.Errorf("%w: rollout tick %v outside %v..%v", ErrConfig, s.cfg.RolloutTick, MinRolloutTick, MaxRolloutTick)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	d, err := director.OpenShared(ctx, s.db, filepath.Join(s.cfg.DataDir, director.Dir), s.kek, s.now(), s.cfg.DirectorTimestampExpiry, s.cfg.DirectorExpiry)
	if errors.Is(err, director.ErrExpiry) {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return err
	}
	s.director = director.NewService(director.ServiceConfig{DB: s.db, Director: d, Metadata: s.metaFS, Now: s.now, Log: s.log})
	s.rollouts, err = rollouts.New(rollouts.Config{DB: s.db, RequiredApprovals: s.requiredApprovals, Now: s.now, Log: s.log,
		Audit: s.cfg.Audit, Metrics: s.metrics.Reg, LeaseTTL: s.cfg.RolloutLeaseTTL, RefreshInterval: s.cfg.RolloutRefresh})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return s.rollouts.Refresh(ctx)
}
