package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/director"
	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/rollouts"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
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
	DirectorDir                    = director.Dir
	DirectorRootKeyFile            = director.RootKeyFile
	DirectorOnlineKeyFile          = director.OnlineKeyFile
	DirectorPath                   = director.Path
	DirectorCustomKey              = director.CustomKey
	DefaultDirectorTimestampExpiry = director.DefaultTimestampExpiry
	DefaultDirectorExpiry          = director.DefaultExpiry
	MinDirectorExpiry              = director.MinExpiry
	MaxDirectorExpiry              = director.MaxExpiry
	DirectorRootExpiry             = director.RootExpiry
	DirectorRootRenewBefore        = director.RootRenewBefore
	MaxDirectorRootVersions        = director.MaxRootVersions
	MaxDirectorKeyFileSize         = director.MaxKeyFileSize
	// ImageRepoRecheck is how often the director re-verifies the image
	// repository even when its timestamp.json did not change (expiry).
	ImageRepoRecheck = time.Minute
)

// ErrDirectorKeys: the director's key files are missing, unreadable or do
// not open with the KEK.
var ErrDirectorKeys = director.ErrKeys

// imageRepo looks targets up in the served image repository through the
// device-side TUF client (signatures, delegations, expiry all verified),
// trusting REPO/public/metadata/1.root.json. Results are cached until
// timestamp.json changes or ImageRepoRecheck passes.
type imageRepo struct {
	s       *Server
	mu      sync.Mutex
	client  *trust.Client
	stamp   string // size and mtime of timestamp.json at the last refresh
	checked time.Time
	err     error
	cache   map[string]*metadata.TargetFiles
}

// metaRootSource is a trust.Source over the served metadata directory.
type metaRootSource struct{ s *Server }

func (m metaRootSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	name := role + ".json"
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	if strings.ContainsAny(role, "/\\") || strings.HasPrefix(role, ".") {
		return nil, fmt.Errorf("%w: role %q", trust.ErrNotFound, role)
	}
	f, err := m.s.metaRoot.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, trust.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: %w", name, trust.ErrTooLarge)
	}
	return data, nil
}

func (m metaRootSource) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: the director never reads payloads", trust.ErrNotFound)
}

// lookup returns the image repository's verified target at path.
func (ir *imageRepo) lookup(ctx context.Context, path string) (*metadata.TargetFiles, error) {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	now := ir.s.now()
	stamp := ""
	if fi, err := ir.s.metaRoot.Stat("timestamp.json"); err == nil {
		stamp = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	if ir.client == nil || stamp != ir.stamp || now.Sub(ir.checked) >= ImageRepoRecheck || now.Before(ir.checked) {
		ir.cache, ir.client, ir.err = map[string]*metadata.TargetFiles{}, nil, nil
		ir.stamp, ir.checked = stamp, now
		ir.client, ir.err = ir.refresh(ctx, now)
	}
	if ir.err != nil {
		return nil, ir.err
	}
	if tf, ok := ir.cache[path]; ok {
		return tf, nil
	}
	tf, err := ir.client.Target(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	ir.cache[path] = tf
	return tf, nil
}

func (ir *imageRepo) refresh(ctx context.Context, now time.Time) (*trust.Client, error) {
	src := metaRootSource{ir.s}
	root, err := src.FetchMetadata(ctx, metadata.ROOT, 1, trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("image repository root: %w", err)
	}
	st := trust.NewMemStore()
	if err := st.Put("root.json", root); err != nil {
		return nil, err
	}
	c, err := trust.New(st, src, trust.Config{Now: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	if err := c.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("image repository: %w", err)
	}
	return c, nil
}

// deviceAssignment returns what the director assigns to device dev: its
// current assignment (if its rollout is not cancelled), with the target's
// length and hashes from the image repository; nil if none.
func (s *Server) deviceAssignment(ctx context.Context, dev store.Device) (*director.Assignment, error) {
	_, ro, err := s.db.DeviceAssignment(ctx, dev.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ro.Product != dev.Product {
		return nil, nil
	}
	tf, err := s.images.lookup(ctx, ro.TargetPath)
	if err != nil {
		// The image repository does not authorize it (any more): assign
		// nothing rather than anything unverified.
		s.log.Warn("director: the assigned target does not verify in the image repository; assigning nothing",
			"device_id", dev.ID, "rollout", ro.ID, "target", ro.TargetPath, "err", err)
		return nil, nil
	}
	return &director.Assignment{DeviceID: dev.ID, RolloutID: ro.ID, Forced: ro.Forced, Target: tf}, nil
}

// directorState returns the device's current director state, signing a
// new version when the assignment changed or the metadata is (about to
// be) stale: less than half its lifetime left.
func (s *Server) directorState(ctx context.Context, dev store.Device) (store.DirectorState, *director.Assignment, error) {
	a, err := s.deviceAssignment(ctx, dev)
	if err != nil {
		return store.DirectorState{}, nil, err
	}
	fp := a.Fingerprint()
	for range 3 {
		cur, err := s.db.GetDirectorState(ctx, dev.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.DirectorState{}, nil, err
		}
		now := s.now().UTC()
		if s.director.Fresh(cur, fp, now) {
			return cur, a, nil
		}
		next := s.director.Next(cur, dev.ID, fp, now)
		err = s.db.PutDirectorState(ctx, next, cur.Version)
		if errors.Is(err, store.ErrConflict) {
			continue // a concurrent request of the same device won; re-read
		}
		if err != nil {
			return store.DirectorState{}, nil, err
		}
		return next, a, nil
	}
	return store.DirectorState{}, nil, fmt.Errorf("%w: director state of %s keeps changing", store.ErrConflict, dev.ID)
}

// handleDirector serves the calling device's director metadata.
func (s *Server) handleDirector(w http.ResponseWriter, r *http.Request, dev store.Device) {
	name := r.PathValue("file")
	version, role, ok := director.ParseMetadataName(name)
	if !ok {
		httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "no such director metadata file"))
		return
	}
	var data []byte
	var err error
	switch role {
	case metadata.ROOT:
		if version == 0 {
			version = s.director.Roots()
		}
		root, ok := s.director.Root(version)
		if !ok {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "no director root version %d", version))
			return
		}
		data = root
	case metadata.TIMESTAMP, metadata.SNAPSHOT, metadata.TARGETS:
		if role == metadata.TIMESTAMP && version != 0 {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "timestamp.json is not versioned"))
			return
		}
		st, a, err2 := s.directorState(r.Context(), dev)
		if err2 != nil {
			httpx.WriteError(w, r, err2)
			return
		}
		if version != 0 && version != st.Version {
			httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "%s version %d is not current (%d); refresh from timestamp.json", role, version, st.Version))
			return
		}
		switch role {
		case metadata.TIMESTAMP:
			data, err = s.director.SignTimestamp(st)
		case metadata.SNAPSHOT:
			data, err = s.director.SignSnapshot(st)
		default:
			data, err = s.director.SignTargets(st, a)
		}
	default:
		httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "no such director role"))
		return
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

// initRollouts opens the director (creating its keys and root on first
// start) and loads the rollout engine.
func (s *Server) initRollouts() error {
	if s.cfg.RolloutTick == 0 {
		s.cfg.RolloutTick = DefaultRolloutTick
	}
	if s.cfg.RolloutTick < MinRolloutTick || s.cfg.RolloutTick > MaxRolloutTick {
		return fmt.Errorf("%w: rollout tick %v outside %v..%v", ErrConfig, s.cfg.RolloutTick, MinRolloutTick, MaxRolloutTick)
	}
	d, err := director.Open(filepath.Join(s.cfg.DataDir, director.Dir), s.kek, s.now(), s.cfg.DirectorTimestampExpiry, s.cfg.DirectorExpiry)
	if errors.Is(err, director.ErrExpiry) {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		return err
	}
	s.director = d
	s.images = &imageRepo{s: s}
	s.rollouts = rollouts.New(rollouts.Config{DB: s.db, RequiredApprovals: s.requiredApprovals, Now: s.now, Log: s.log,
		Audit: s.cfg.Audit, Metrics: s.metrics.reg})
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	return s.rollouts.Load(ctx)
}
