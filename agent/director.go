package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/strictjson"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// Director mode (Uptane's two-repository rule): the server's director signs,
// per device and with an online key, TUF metadata whose targets.json lists
// the one release assigned to the device; the vendor's image repository
// signs the releases with offline keys. The agent installs a target only
// when the director assigns it to THIS device and the image repository
// lists the same path with the same length and hashes.
const (
	// PathDirector is the director repository on the server (mTLS; the
	// server answers for the calling device only).
	PathDirector = "/api/v1/director/"
	// DirectorStoreDir is the director's TUF store inside the device
	// state directory (separate from the image repository's).
	DirectorStoreDir = "director"
	// MaxDirectorMetadataSize bounds the director's snapshot and targets
	// files: one device's assignment is small.
	MaxDirectorMetadataSize = 64 << 10
	// MaxDirectorCustomSize bounds the custom field of the assigned target.
	MaxDirectorCustomSize = 4 << 10
	// DirectorCustomKey is the key of the director's object in the
	// assigned target's custom field.
	DirectorCustomKey = "airlock_director"
)

var (
	// ErrDirector is wrapped by every refused director assignment.
	ErrDirector = errors.New("director assignment refused")
	// ErrDirectorUnavailable is wrapped when the director metadata could
	// not be fetched or is no longer fresh (expired): the agent keeps
	// running the current release and retries with backoff. It is not
	// reported to the server as an install failure.
	ErrDirectorUnavailable = errors.New("director unavailable")
	// ErrWrongDevice means the director's metadata assigns the release to
	// another device (a server bug, or metadata replayed from another
	// device).
	ErrWrongDevice = fmt.Errorf("%w: the assignment names another device", ErrDirector)
	// ErrNotAuthorized means the image repository does not list the
	// assigned target with the same length and hashes: the director (its
	// online key) assigned an image the vendor never signed. Either the
	// server is compromised, or the repositories are out of sync.
	ErrNotAuthorized = verify.ErrNotAuthorized
)

// DirectorAssignment is a verified director assignment.
type DirectorAssignment struct {
	Target  *trust.TargetFiles // path, length and hashes the director signed
	Device  string
	Rollout string
	// Forced is the operator's "install even if the device's own deferral
	// policy would wait" flag. It never bypasses a signature, the two
	// repository rule, the release policy or the security version; the
	// agent has no deferral policy yet, so it only shows in logs.
	Forced bool
}

type directorCustom struct {
	Device  string `json:"device"`
	Rollout string `json:"rollout"`
	Forced  bool   `json:"forced"`
}

// ParseDirectorCustom parses the custom field of an assigned target: a
// JSON object with the key DirectorCustomKey holding exactly {device,
// rollout, forced} (other top-level keys belong to other extensions and
// are ignored). It is strict within the director's object: no unknown or
// missing fields, one JSON value, within MaxDirectorCustomSize.
func ParseDirectorCustom(raw []byte) (device, rollout string, forced bool, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: custom: %s", ErrDirector, fmt.Sprintf(format, args...))
	}
	if len(raw) > MaxDirectorCustomSize {
		return "", "", false, bad("%d bytes, the limit is MaxDirectorCustomSize %d", len(raw), MaxDirectorCustomSize)
	}
	var outer map[string]json.RawMessage
	if err := strictjson.Unmarshal(raw, &outer); err != nil {
		return "", "", false, bad("%v", err)
	}
	inner, ok := outer[DirectorCustomKey]
	if !ok {
		return "", "", false, bad("no %q object", DirectorCustomKey)
	}
	var presence map[string]json.RawMessage
	if err := strictjson.Unmarshal(inner, &presence); err != nil {
		return "", "", false, bad("%s: %v", DirectorCustomKey, err)
	}
	for _, k := range []string{"device", "rollout", "forced"} {
		if _, ok := presence[k]; !ok {
			return "", "", false, bad("%s: missing %q", DirectorCustomKey, k)
		}
	}
	var dc directorCustom
	if err := strictjson.Unmarshal(inner, &dc); err != nil {
		return "", "", false, bad("%s: %v", DirectorCustomKey, err)
	}
	if dc.Device == "" {
		return "", "", false, bad("%s: empty device", DirectorCustomKey)
	}
	return dc.Device, dc.Rollout, dc.Forced, nil
}

// directorLimits bound the director's metadata.
var directorLimits = trust.Limits{SnapshotSize: MaxDirectorMetadataSize, TargetsSize: MaxDirectorMetadataSize}

// directorStore returns the director's TUF store, seeded with the
// provisioned director root on first use.
func (a *Agent) directorStore(c *cycle) (trust.Store, error) {
	cfg := c.dev.Config()
	dir := filepath.Join(cfg.Path(cfg.StateDir), DirectorStoreDir)
	st := trust.NewDirStore(durable.Confine(a.fs, cfg.Path(cfg.StateDir)), dir)
	if _, err := st.Get("root.json"); err == nil {
		return st, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	root, err := durable.ReadFile(a.fs, a.cfg.Path(a.cfg.DirectorRoot), trust.MaxRootSize)
	if err != nil {
		return nil, fmt.Errorf("failed to read director_root: %w", err)
	}
	// It must verify against itself before it is trusted.
	ms := trust.NewMemStore()
	if err := ms.Put("root.json", root); err != nil {
		return nil, err
	}
	if _, err := trust.New(ms, &trust.MapSource{}, trust.Config{}); err != nil {
		return nil, fmt.Errorf("director_root %s: %w", a.cfg.DirectorRoot, err)
	}
	if err := st.Put("root.json", root); err != nil {
		return nil, err
	}
	return st, nil
}

// refreshDirector refreshes the director repository (persisting verified
// metadata in its store, the reference for rollback and freeze checks)
// and returns the device's verified assignment, nil if none.
func (a *Agent) refreshDirector(ctx context.Context, c *cycle) (*DirectorAssignment, error) {
	st, err := a.directorStore(c)
	if err != nil {
		return nil, err
	}
	root, err := st.Get("root.json")
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(a.cfg.Server, "/") + PathDirector
	// The metadata stage of the pipeline, anchored at the director's
	// trusted root, with the director's limits.
	s, err := verify.Open(ctx, verify.Config{
		Root: root, Store: st, Source: a.directorSource(c, base), Now: a.opts.Now, Limits: directorLimits,
	})
	if err != nil {
		if errors.Is(err, verify.ErrVerification) && !errors.Is(err, trust.ErrExpired) {
			return nil, fmt.Errorf("%w: director metadata: %w", ErrDirector, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrDirectorUnavailable, err)
	}
	client := s.Client()
	tg := client.Trusted().Targets
	switch n := len(tg.Signed.Targets); {
	case n == 0:
		return nil, nil
	case n > 1:
		return nil, fmt.Errorf("%w: director targets list %d targets, a device is assigned at most one", ErrDirector, n)
	}
	var tf *trust.TargetFiles
	for _, path := range slices.Sorted(maps.Keys(tg.Signed.Targets)) {
		if tf, err = client.Target(ctx, path); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDirector, err)
		}
	}
	if tf.Custom == nil {
		return nil, fmt.Errorf("%w: assigned target %q has no custom field", ErrDirector, tf.Path)
	}
	dev, rollout, forced, err := ParseDirectorCustom(*tf.Custom)
	if err != nil {
		return nil, err
	}
	return &DirectorAssignment{Target: tf, Device: dev, Rollout: rollout, Forced: forced}, nil
}

// directorSource is the director repository's metadata source: the image
// repository's source settings (deadlines, throughput) at the director's
// URL.
func (a *Agent) directorSource(c *cycle, base string) trust.Source {
	d := *c
	d.meta, d.tgts = base, ""
	return a.source(&d)
}

// directorUpdate is update in director mode.
func (a *Agent) directorUpdate(ctx context.Context, c *cycle) (*Result, error) {
	fail := func(version string, err error) (*Result, error) {
		a.report(ctx, c, deviceapi.StateFailed, version, "director: "+err.Error())
		return &Result{Action: ActionFailed, Version: version, Message: err.Error()}, err
	}
	asg, err := a.refreshDirector(ctx, c)
	if errors.Is(err, ErrDirectorUnavailable) {
		// Keep running what runs; the next poll retries (with backoff).
		a.log.Warn("director unavailable; keeping the running release", "error", err)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: err.Error()}, err
	}
	if err != nil {
		return fail("", err)
	}
	if asg == nil {
		msg := "up to date: the director assigns no release to this device; version " + c.view.currentVersion() + " runs"
		a.log.Info(msg, "version", c.view.currentVersion())
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: msg}, nil
	}
	path := asg.Target.Path
	if asg.Device != c.deviceID {
		return fail("", fmt.Errorf("%w: %q is assigned to device %q, this device is %q", ErrWrongDevice, path, asg.Device, c.deviceID))
	}
	if path == c.view.currentPath {
		msg := "up to date: version " + c.view.currentVersion() + " runs, the release the director assigns to this device"
		a.log.Info(msg, "version", c.view.currentVersion(), "rollout", asg.Rollout)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: msg}, nil
	}
	if slices.Contains(c.view.rejected, path) {
		msg := fmt.Sprintf("the assigned release %s was rolled back on this device; not retrying it", path)
		a.log.Warn(msg, "rollout", asg.Rollout)
		return &Result{Action: ActionNone, Version: c.view.currentVersion(), Message: msg}, nil
	}
	a.log.Info("director assignment", "target", path, "rollout", asg.Rollout, "forced", asg.Forced)

	// The image repository must authorize exactly this target: the
	// pipeline runs once on it, then the two-repository rule.
	src := a.source(c)
	u, err := c.dev.Begin(ctx, src, device.InstallOptions{FullDownload: a.cfg.FullDownload})
	if err != nil {
		return a.failed(ctx, c, "", err)
	}
	t, err := u.Check(ctx, path)
	if err != nil {
		if errors.Is(err, trust.ErrTargetNotFound) {
			err = fmt.Errorf("%w: %w: %q is not in the image repository: %w", ErrDirector, ErrNotAuthorized, path, err)
		}
		return a.failed(ctx, c, "", err)
	}
	if err := verify.SameTarget(asg.Target, t.File); err != nil {
		return fail(t.Release.Version.String(), fmt.Errorf("%w: %w", ErrDirector, err))
	}
	return a.install(ctx, c, src, u, t)
}
