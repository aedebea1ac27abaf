package director

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/airlockfw/airlock/server/internal/httpx"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ImageRepoRecheck is how often the director re-verifies the image
// repository even when its timestamp.json did not change (expiry).
const ImageRepoRecheck = time.Minute

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// DB holds the devices' assignments and director states. Required.
	DB store.Store
	// Director signs the metadata. Required.
	Director *Director
	// Metadata is the served image repository's metadata directory
	// (REPO/public/metadata, or its objects in a bucket), verified from its
	// 1.root.json. Required.
	Metadata fs.FS
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives warnings; nil means discard.
	Log *slog.Logger
}

// Service serves each device its director metadata: the assignment the
// store holds for it, checked against the image repository's verified
// metadata, signed by the Director.
type Service struct {
	db     store.Store
	d      *Director
	now    func() time.Time
	log    *slog.Logger
	images *imageRepo
}

// NewService returns a Service.
func NewService(cfg ServiceConfig) *Service {
	sv := &Service{db: cfg.DB, d: cfg.Director, now: cfg.Now, log: cfg.Log}
	if sv.now == nil {
		sv.now = time.Now
	}
	if sv.log == nil {
		sv.log = slog.New(slog.DiscardHandler)
	}
	sv.images = &imageRepo{root: cfg.Metadata, now: sv.now}
	return sv
}

// imageRepo looks targets up in the served image repository through the
// device-side TUF client (signatures, delegations, expiry all verified),
// trusting REPO/public/metadata/1.root.json. Results are cached until
// timestamp.json changes or ImageRepoRecheck passes.
type imageRepo struct {
	root    fs.FS
	now     func() time.Time
	mu      sync.Mutex
	client  *trust.Client
	stamp   string // size and mtime of timestamp.json at the last refresh
	checked time.Time
	err     error
	cache   map[string]*trust.TargetFiles
}

// MetadataSource is a trust.Source over a served metadata directory (it
// never reads payloads).
type MetadataSource struct{ Root fs.FS }

// FetchMetadata implements trust.Source.
func (m MetadataSource) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	name := role + ".json"
	if version > 0 {
		name = strconv.FormatInt(version, 10) + "." + name
	}
	if strings.ContainsAny(role, "/\\") || strings.HasPrefix(role, ".") {
		return nil, fmt.Errorf("%w: role %q", trust.ErrNotFound, role)
	}
	f, err := m.Root.Open(name)
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

// OpenTarget implements trust.Source; the director never reads payloads.
func (m MetadataSource) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("%w: the director never reads payloads", trust.ErrNotFound)
}

// lookup returns the image repository's verified target at path.
func (ir *imageRepo) lookup(ctx context.Context, path string) (*trust.TargetFiles, error) {
	ir.mu.Lock()
	defer ir.mu.Unlock()
	now := ir.now()
	stamp := ""
	if fi, err := fs.Stat(ir.root, "timestamp.json"); err == nil {
		stamp = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
	}
	if ir.client == nil || stamp != ir.stamp || now.Sub(ir.checked) >= ImageRepoRecheck || now.Before(ir.checked) {
		ir.cache, ir.client, ir.err = map[string]*trust.TargetFiles{}, nil, nil
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
	src := MetadataSource{Root: ir.root}
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
func (sv *Service) deviceAssignment(ctx context.Context, dev store.Device) (*Assignment, error) {
	_, ro, err := sv.db.DeviceAssignment(ctx, dev.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ro.Product != dev.Product {
		return nil, nil
	}
	tf, err := sv.images.lookup(ctx, ro.TargetPath)
	if err != nil {
		// The image repository does not authorize it (any more): assign
		// nothing rather than anything unverified.
		sv.log.Warn("director: the assigned target does not verify in the image repository; assigning nothing",
			"device_id", dev.ID, "rollout", ro.ID, "target", ro.TargetPath, "err", err)
		return nil, nil
	}
	return &Assignment{DeviceID: dev.ID, RolloutID: ro.ID, Forced: ro.Forced, Target: tf}, nil
}

// state returns the device's current director state, signing a
// new version when the assignment changed or the metadata is (about to
// be) stale: less than half its lifetime left.
func (sv *Service) state(ctx context.Context, dev store.Device) (store.DirectorState, *Assignment, error) {
	a, err := sv.deviceAssignment(ctx, dev)
	if err != nil {
		return store.DirectorState{}, nil, err
	}
	fp := a.Fingerprint()
	for range 3 {
		cur, err := sv.db.GetDirectorState(ctx, dev.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.DirectorState{}, nil, err
		}
		now := sv.now().UTC()
		if sv.d.Fresh(cur, fp, now) {
			return cur, a, nil
		}
		next := sv.d.Next(cur, dev.ID, fp, now)
		err = sv.db.PutDirectorState(ctx, next, cur.Version)
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

// ServeMetadata serves GET Path{file}: the calling device's director metadata.
func (sv *Service) ServeMetadata(w http.ResponseWriter, r *http.Request, dev store.Device) {
	name := r.PathValue("file")
	version, role, ok := ParseMetadataName(name)
	if !ok {
		httpx.WriteError(w, r, httpx.Status(http.StatusNotFound, "no such director metadata file"))
		return
	}
	var data []byte
	var err error
	switch role {
	case metadata.ROOT:
		if version == 0 {
			version = sv.d.Roots()
		}
		root, ok, err := sv.d.RootContext(r.Context(), version, sv.now())
		if err != nil {
			httpx.WriteError(w, r, err)
			return
		}
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
		st, a, err2 := sv.state(r.Context(), dev)
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
			data, err = sv.d.SignTimestamp(st)
		case metadata.SNAPSHOT:
			data, err = sv.d.SignSnapshot(st)
		default:
			data, err = sv.d.SignTargets(st, a)
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
