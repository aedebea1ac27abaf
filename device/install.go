package device

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// Names of the install checks: the check names of the one pipeline
// (package verify), which `airlock verify` reports too. The values of
// InstallError.Check.
const (
	CheckFormat   = verify.CheckFormat   // the bundle's framing
	CheckState    = verify.CheckState    // the device can install now (no trial pending, state readable)
	CheckMetadata = verify.CheckMetadata // TUF verification with the device's trusted state
	CheckTarget   = verify.CheckTarget   // target lookup through the delegations, hash policy
	CheckRelease  = verify.CheckRelease  // the target carries valid Airlock metadata for its path
	CheckPolicy   = verify.CheckPolicy   // model, hw_rev, channel, dependencies, version, security version
	// CheckTransparency: the release is in the witnessed transparency log
	// the trusted root requires, consistent with the device's view of it.
	CheckTransparency = verify.CheckTransparency
	CheckSlot         = verify.CheckSlot    // the image fits the inactive slot, the slot can be written
	CheckPayload      = verify.CheckPayload // length and digests of the streamed payload and installed image
)

var (
	// ErrTrialPending refuses an install while a trial boot awaits its
	// health check (run `device boot` and `device health` first).
	ErrTrialPending = errors.New("a trial boot is pending")
	// ErrInstall is wrapped by every *InstallError.
	ErrInstall = errors.New("install refused")
	// ErrEnvironment is wrapped when metadata or a release belongs to
	// another trust environment than the factory root.
	ErrEnvironment = verify.ErrEnvironment
)

// InstallError is a failed install: Check names the pipeline stage that
// refused it and Err is the cause (for example a *release.PolicyError, an
// error wrapping trust.ErrRollback or payload.ErrHash). For the same inputs
// and device facts, `airlock verify` fails with a *verify.Error of the same
// Check and Err text.
type InstallError struct {
	Check string
	Slot  boot.Slot // the inactive slot, "" if it was not touched
	Err   error
}

func (e *InstallError) Error() string {
	msg := fmt.Sprintf("install refused: %s check failed: %v", e.Check, e.Err)
	if e.Slot != "" {
		msg += fmt.Sprintf(" (slot %s marked invalid; the active slot, trusted metadata and counter are unchanged)", e.Slot)
	}
	return msg
}

// Unwrap returns ErrInstall and the pipeline's *verify.Error of the same
// Check and cause (which wraps verify.ErrVerification when the input was
// refused, as opposed to a device or source failure).
func (e *InstallError) Unwrap() []error {
	return []error{ErrInstall, &verify.Error{Check: e.Check, Err: e.Err}}
}

// refused converts an error of the pipeline into an *InstallError.
func refused(err error, slot boot.Slot) error {
	if ve, ok := errors.AsType[*verify.Error](err); ok {
		check := ve.Check
		if errors.Is(ve.Err, errSlotIO) {
			check = CheckSlot
		}
		return &InstallError{Check: check, Slot: slot, Err: ve.Err}
	}
	if errors.Is(err, errSlotIO) {
		return &InstallError{Check: CheckSlot, Slot: slot, Err: err}
	}
	return err
}

// InstallOptions are the operator's choices for one install.
type InstallOptions struct {
	// AllowDowngrade asks to install a version that is not newer than the
	// running one. It only takes effect when the release's signed metadata
	// also allows it (allow_downgrade), and never bypasses the security
	// version check.
	AllowDowngrade bool
	// FullDownload installs the whole payload from an online source even
	// when the running release could provide blocks (a delta install by
	// range requests).
	FullDownload bool
}

// InstallResult describes a successful install.
type InstallResult struct {
	Slot            boot.Slot // the slot written, now on trial
	TargetPath      string
	Version         string
	SecurityVersion uint32
	InstalledBytes  int64
	TransportBytes  int64
	// Delta says how a delta install was made ("delta bundle from 1.0.0",
	// or the blocks reused and bytes downloaded); "" for a whole payload.
	Delta string
}

// Update is one run of the check pipeline (package verify) from one source
// against the device: the metadata verified once, with the device's trusted
// state as the rollback reference, into an in-memory overlay that is
// persisted only by Install (after the payload passed) or Keep. The agent
// selects and installs through one Update per poll, so it refreshes once
// and checks policy once.
type Update struct {
	d       *Device
	ov      *trust.Overlay
	s       *verify.Session
	facts   verify.Facts
	checked bool   // a release was checked (an install was attempted)
	full    bool   // InstallOptions.FullDownload
	how     string // how the last payload was installed (a delta, or "")
}

// Begin runs the metadata stage from src against the device's trusted
// state and factory root. Refusals are *InstallError.
func (d *Device) Begin(ctx context.Context, src trust.Source, opt InstallOptions) (*Update, error) {
	facts, err := d.Facts()
	if err != nil {
		return nil, &InstallError{Check: CheckState, Err: err}
	}
	facts.AllowDowngrade = opt.AllowDowngrade
	ov := d.trustOverlay()
	s, err := verify.Open(ctx, verify.Config{Root: d.factoryRoot, Store: ov, Source: src, Now: d.opts.Now,
		RequireTimestamp: d.cfg.BundleFreshness == FreshnessTimestamp})
	if err != nil {
		return nil, refused(err, "")
	}
	return &Update{d: d, ov: ov, s: s, facts: facts, full: opt.FullDownload}, nil
}

// Session returns the verified metadata of the update.
func (u *Update) Session() *verify.Session { return u.s }

// Facts returns the device facts the update checks policy with.
func (u *Update) Facts() verify.Facts { return u.facts }

// Check runs the target, release and policy stages for targetPath.
// Refusals are *InstallError and are recorded as the last install result.
func (u *Update) Check(ctx context.Context, targetPath string) (*verify.Target, error) {
	u.checked = true
	t, err := u.s.Check(ctx, targetPath, u.facts)
	if err != nil {
		err = refused(err, "")
		u.d.recordResult("install", "", "", err, "")
		return nil, err
	}
	return t, nil
}

// Select returns the newest release of the device's product that passes
// the target, release and policy stages, nil when none does (the device is
// up to date), skipping the paths skip reports.
func (u *Update) Select(ctx context.Context, skip func(path string) bool) (*verify.Target, error) {
	t, err := u.s.Select(ctx, u.facts, verify.Selection{Skip: skip})
	if errors.Is(err, verify.ErrNoRelease) {
		return nil, nil
	}
	if err != nil {
		return nil, refused(err, "")
	}
	return t, nil
}

// Keep persists the metadata verified by Begin without installing anything
// (what a polling agent does when nothing is new): rollback and freeze
// floors advance as the TUF client workflow says. Slots and boot control are
// not touched.
func (u *Update) Keep() error {
	if err := u.ov.Commit(); err != nil {
		return fmt.Errorf("failed to store verified metadata: %w", err)
	}
	return nil
}

// Install runs the rest of the install for t, a target this update's Check
// or Select returned: it streams the payload into the inactive slot (the
// payload stage; the active slot is never opened for writing), then
// persists the verified metadata and the slot record and switches the boot
// control to try the new slot once. On any payload mismatch the slot stays
// invalid and nothing else changes. Refusals are *InstallError; the result
// is recorded for `device status`.
func (u *Update) Install(ctx context.Context, t *verify.Target) (*InstallResult, error) {
	res, slot, err := u.install(ctx, t)
	version := ""
	if res != nil {
		version = res.Version
	}
	msg := ""
	if err == nil {
		msg = fmt.Sprintf("installed %s into slot %s; boot to try it", t.Path, slot)
		if u.how != "" {
			msg = fmt.Sprintf("installed %s into slot %s (%s); boot to try it", t.Path, slot, u.how)
		}
	}
	u.d.recordResult("install", slot, version, err, msg)
	return res, err
}

func (u *Update) install(ctx context.Context, t *verify.Target) (*InstallResult, boot.Slot, error) {
	d := u.d
	if t == nil || t.Session() != u.s {
		return nil, "", errors.New("internal error: target was not checked by this update")
	}
	st, err := d.installable() // also for callers of Begin (the agent), not only Device.Install
	if err != nil {
		return nil, "", err
	}
	s := otherSlot(st.Good)
	res, err := u.installInto(ctx, t, s)
	if err != nil {
		return nil, s, err
	}
	// Try the new slot once.
	st.Trial = s
	st.BootCount = 0
	st.BootLimit = d.cfg.Boot.BootLimit
	st.Bad = slices.DeleteFunc(st.Bad, func(b boot.Slot) bool { return b == s })
	if err := d.ctl.Store(st); err != nil {
		return nil, s, fmt.Errorf("failed to switch boot control to slot %s: %w", s, err)
	}
	m := t.Release
	return &InstallResult{
		Slot: s, TargetPath: t.Path, Version: m.Version.String(), SecurityVersion: m.SecurityVersion,
		InstalledBytes: res.InstalledBytes, TransportBytes: res.TransportBytes, Delta: u.how,
	}, s, nil
}

// installInto streams t's payload into slot s (the payload stage), then
// persists the verified metadata and the slot record. The boot control is
// not touched.
func (u *Update) installInto(ctx context.Context, t *verify.Target, s boot.Slot) (payload.Result, error) {
	d := u.d
	slotFile, err := d.slotPath(s)
	if err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Err: err}
	}
	// The slot rule (slots.go) before anything is written.
	if err := checkSlot(d.fsys, d.cfg, s); err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Err: err}
	}
	// Invalidate the slot record durably, then stream into the slot.
	if err := d.invalidateSlot(s, "being written by install of "+t.Path); err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Err: err}
	}
	res, how, err := u.writePayload(ctx, t, s, slotFile)
	u.how = how
	if err != nil {
		// Mismatch: the slot stays invalid, nothing else changes.
		_ = d.invalidateSlot(s, fmt.Sprintf("install of %s failed: %v", t.Path, err))
		return res, refused(err, s)
	}
	// Persist the verified metadata (and the log checkpoint the release was
	// verified under: the device's view of the log advances only here),
	// then the slot record.
	if t.LogCheckpoint != nil {
		if err := u.ov.Put(trust.LogCheckpointFile, t.LogCheckpoint); err != nil {
			return res, fmt.Errorf("failed to store the log checkpoint: %w", err)
		}
	}
	if err := u.ov.Commit(); err != nil {
		return res, fmt.Errorf("failed to store verified metadata: %w", err)
	}
	m := t.Release
	rec := &SlotRecord{
		Slot: s, Status: StatusInstalled, TargetPath: t.Path, Version: m.Version.String(),
		SecurityVersion: m.SecurityVersion, InstalledLength: m.Installed.Length,
		InstalledSHA256: hex.EncodeToString(m.Installed.SHA256[:]), Custom: t.Custom,
		RootChain: t.RootChain, Targets: t.Targets,
	}
	for _, r := range t.Delegated {
		rec.Delegated = append(rec.Delegated, Role{Name: r.Name, Data: r.Data})
	}
	if err := d.writeSlotRecord(rec); err != nil {
		return res, err
	}
	return res, nil
}

// Install runs the whole pipeline for the target at targetPath offered by
// src (an offline bundle: verify.OpenBundle, or InstallBundle; an online
// repository: a trust.Source) and installs it into the inactive slot:
// Begin, Check and Update.Install. A refused install returns an
// *InstallError and changes neither the active slot, nor the trusted
// metadata, nor the counter.
func (d *Device) Install(ctx context.Context, src trust.Source, targetPath string, opt InstallOptions) (*InstallResult, error) {
	if _, err := d.installable(); err != nil {
		d.recordResult("install", "", "", err, "")
		return nil, err
	}
	u, err := d.Begin(ctx, src, opt)
	if err != nil {
		d.recordResult("install", "", "", err, "")
		return nil, err
	}
	t, err := u.Check(ctx, targetPath)
	if err != nil {
		return nil, err
	}
	return u.Install(ctx, t)
}

// InstallBundle reads the offline bundle in r (its payload within the
// transport limit, verify.MaxPayloadSize; the slot check bounds the
// installed image) and installs it with Install.
func (d *Device) InstallBundle(ctx context.Context, r io.Reader, opt InstallOptions) (*InstallResult, error) {
	src, err := verify.OpenBundle(r)
	if err != nil {
		err = refused(err, "")
		d.recordResult("install", "", "", err, "")
		return nil, err
	}
	return d.Install(ctx, src, src.TargetPath(), opt)
}

// installable refuses an install before any input is read when the device
// cannot take one (a trial boot is pending), and returns the boot control
// state it read.
func (d *Device) installable() (boot.State, error) {
	st, err := d.ctl.Load()
	if err != nil {
		return st, &InstallError{Check: CheckState, Err: fmt.Errorf("failed to read boot control: %w", err)}
	}
	if st.Trial != "" {
		return st, &InstallError{Check: CheckState, Err: fmt.Errorf("%w on slot %s: run `airlock device boot` and `airlock device health` first", ErrTrialPending, st.Trial)}
	}
	return st, nil
}

// Facts describes the device to the pipeline's policy stage: model,
// hardware revision, channel, product, trust environment, installed
// components, the running (committed) version, the anti-rollback counter and
// the slot size — every fact stated.
func (d *Device) Facts() (verify.Facts, error) {
	dev := release.Device{
		Model: d.cfg.Model, HWRev: d.cfg.HWRev, Channel: d.cfg.Channel, Product: d.cfg.Product,
		Environment: d.Environment(), Components: maps.Clone(d.cfg.Components),
	}
	f := verify.Facts{SlotSize: d.cfg.Slots.Size}
	ctr, err := d.ctr.Read()
	if err != nil {
		return f, err
	}
	dev.SecurityCounter = ctr
	st, err := d.ctl.Load()
	if err != nil {
		return f, err
	}
	rec, err := d.SlotRecord(st.Good)
	if err != nil {
		return f, err
	}
	if rec != nil && rec.Status != StatusInvalid {
		v, err := release.ParseVersion(rec.Version)
		if err != nil {
			return f, fmt.Errorf("%w: slot %s version: %v", ErrCorruptState, st.Good, err)
		}
		dev.Current = &v
	}
	f.Device = dev
	return f, nil
}

// FactoryRoot returns a copy of the device's factory root, its trust anchor.
func (d *Device) FactoryRoot() []byte { return slices.Clone(d.factoryRoot) }

// Environment returns the trust environment of the device's factory root.
func (d *Device) Environment() string { return verify.RootEnvironment(d.factoryRoot) }

// Refresh updates the device's trusted metadata from src without installing
// anything: the metadata stage of the pipeline, then Keep. Rollback, freeze
// and bad signatures are refused as in Install. Slots and boot control are
// not touched.
func (d *Device) Refresh(ctx context.Context, src trust.Source) error {
	u, err := d.Begin(ctx, src, InstallOptions{})
	if err != nil {
		return err
	}
	return u.Keep()
}

// errSlotIO marks errors writing the slot (as opposed to payload errors).
var errSlotIO = errors.New("slot write failed")

// writeSlotWith opens the slot file for reading and writing (a schema 2
// install reads the tree back), runs install on it, and syncs it.
func (d *Device) writeSlotWith(name string, install func(payload.Slot, payload.CopyOptions) (payload.Result, error)) (payload.Result, error) {
	s, err := d.slotAt(name)
	if err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Err: err}
	}
	f, err := openSlot(d.fsys, d.cfg, s, os.O_RDWR) // the slot rule (slots.go); the error wraps ErrSlot
	if err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Slot: s, Err: err}
	}
	defer f.Close()
	res, err := install(slotIO{f}, payload.CopyOptions{Written: func(off, n int64) { durable.StartWriteback(f, off, n) },
		ChunkBlocks: int((d.cfg.WriteChunk + 4095) / 4096)})
	if err != nil {
		return res, err
	}
	return res, syncSlot(f)
}

// syncSlot makes what was written to the slot durable and closes it.
func syncSlot(f durable.File) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: failed to sync slot: %w", errSlotIO, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: failed to close slot: %w", errSlotIO, err)
	}
	return nil
}

// writeSlot streams src into the slot file, writing in WriteChunk pieces
// from a second goroutine (so that hashing and decompressing overlap the
// writes; memory is two chunks), and syncs it. The slot is opened for
// writing only, without truncation (a block device keeps its size).
func (d *Device) writeSlot(name string, p *verify.Payload) (payload.Result, error) {
	s, err := d.slotAt(name)
	if err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Err: err}
	}
	if _, indexed := p.Target().Indexed(); indexed {
		// Schema 2: every block verified before it is written.
		return d.writeSlotWith(name, func(slot payload.Slot, o payload.CopyOptions) (payload.Result, error) {
			return verify.InstallPayload(slot, p, o)
		})
	}
	f, err := openSlot(d.fsys, d.cfg, s, os.O_WRONLY) // the slot rule (slots.go); the error wraps ErrSlot
	if err != nil {
		return payload.Result{}, &InstallError{Check: CheckSlot, Slot: s, Err: err}
	}
	defer f.Close()
	aw := newAsyncWriter(f, int(d.cfg.WriteChunk), func(off, n int64) { durable.StartWriteback(f, off, n) })
	res, err := verify.CopyPayload(aw, p)
	if werr := aw.Close(); err == nil && werr != nil {
		err = fmt.Errorf("%w: %w", errSlotIO, werr)
	}
	if err != nil {
		return res, err
	}
	return res, syncSlot(f)
}

// slotIO marks the slot's own read and write errors as errSlotIO.
type slotIO struct{ f durable.File }

func (s slotIO) WriteAt(b []byte, off int64) (int, error) {
	n, err := s.f.WriteAt(b, off)
	if err != nil {
		err = fmt.Errorf("%w: %w", errSlotIO, err)
	}
	return n, err
}

func (s slotIO) ReadAt(b []byte, off int64) (int, error) {
	n, err := s.f.ReadAt(b, off)
	if err != nil && !(err == io.EOF && n == len(b)) {
		err = fmt.Errorf("%w: %w", errSlotIO, err)
	}
	return n, err
}

// asyncWriter writes to w in pieces of exactly chunk bytes (the last one may
// be shorter) from its own goroutine, double-buffered. Writes are issued in
// order; the first write error is returned by every later Write and by
// Close.
type asyncWriter struct {
	cur  []byte
	full chan []byte
	free chan []byte
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// asyncBuffers is how many chunks may wait for the slot writer besides the
// one being filled: with 1 MiB chunks, 3 MiB in all. Each chunk is ~1 MiB
// of peak RSS; a third waiting chunk bought no measurable speed
// (bench/device-install.sh, docs/benchmarks.md).
const asyncBuffers = 2

// writeback, if not nil, is called after each chunk is written with its
// offset and length (to start the kernel's writeback early).
func newAsyncWriter(w io.Writer, chunk int, writeback func(off, n int64)) *asyncWriter {
	a := &asyncWriter{full: make(chan []byte, asyncBuffers), free: make(chan []byte, asyncBuffers+1), done: make(chan struct{})}
	a.cur = make([]byte, 0, chunk)
	for range asyncBuffers {
		a.free <- make([]byte, 0, chunk)
	}
	go func() {
		defer close(a.done)
		var off int64
		for b := range a.full {
			if a.getErr() == nil {
				if _, err := w.Write(b); err != nil {
					a.mu.Lock()
					a.err = err
					a.mu.Unlock()
				} else if writeback != nil {
					writeback(off, int64(len(b)))
				}
				off += int64(len(b))
			}
			a.free <- b[:0]
		}
	}()
	return a
}

func (a *asyncWriter) getErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if err := a.getErr(); err != nil {
			return n, err
		}
		k := copy(a.cur[len(a.cur):cap(a.cur)], p)
		a.cur = a.cur[:len(a.cur)+k]
		n += k
		p = p[k:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// ReadFrom reads r into the chunk buffers directly (no intermediate copy)
// until EOF. Write errors are wrapped in errSlotIO.
func (a *asyncWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if err := a.getErr(); err != nil {
			return total, fmt.Errorf("%w: %w", errSlotIO, err)
		}
		n, err := io.ReadFull(r, a.cur[len(a.cur):cap(a.cur)])
		a.cur = a.cur[:len(a.cur)+n]
		total += int64(n)
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = <-a.free
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}

// Close writes the last partial chunk, waits for every write and returns
// the first write error.
func (a *asyncWriter) Close() error {
	if len(a.cur) > 0 {
		a.full <- a.cur
		a.cur = nil
	}
	close(a.full)
	<-a.done
	return a.getErr()
}
