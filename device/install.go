package device

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/internal/payload"
	"github.com/airlockfw/airlock/release"
	"github.com/airlockfw/airlock/trust"
)

// Names of the install checks, in pipeline order: the values of
// InstallError.Check.
const (
	CheckState    = "state"    // the device can install now (no trial pending, state readable)
	CheckMetadata = "metadata" // TUF verification with the device's trusted state
	CheckRelease  = "release"  // the target carries valid Airlock metadata for its path
	CheckPolicy   = "policy"   // model, hw_rev, channel, dependencies, version, security version
	CheckSlot     = "slot"     // the image fits the inactive slot, the slot can be written
	CheckPayload  = "payload"  // length and digests of the streamed payload and installed image
)

var (
	// ErrTrialPending refuses an install while a trial boot awaits its
	// health check (run `device boot` and `device health` first).
	ErrTrialPending = errors.New("a trial boot is pending")
	// ErrInstall is wrapped by every *InstallError.
	ErrInstall = errors.New("install refused")
)

// InstallError is a failed install: Check names the step that refused it
// and Err is the cause (for example a *release.PolicyError, an error
// wrapping trust.ErrRollback or payload.ErrHash).
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

// Unwrap returns ErrInstall and the cause.
func (e *InstallError) Unwrap() []error { return []error{ErrInstall, e.Err} }

// InstallOptions are the operator's choices for one install.
type InstallOptions struct {
	// AllowDowngrade asks to install a version that is not newer than the
	// running one. It only takes effect when the release's signed metadata
	// also allows it (allow_downgrade), and never bypasses the security
	// version check.
	AllowDowngrade bool
}

// InstallResult describes a successful install.
type InstallResult struct {
	Slot            boot.Slot // the slot written, now on trial
	TargetPath      string
	Version         string
	SecurityVersion uint32
	InstalledBytes  int64
	TransportBytes  int64
}

// installed is what installInto verified.
type installed struct {
	targetPath string
	meta       *release.Metadata
	res        payload.Result
}

// Install runs the install pipeline for the target at targetPath offered by
// src (an offline bundle: OpenBundle; an online repository: a trust.Source):
//
//  1. verify the metadata with the device's TUF state (in an in-memory
//     overlay: nothing is persisted yet);
//  2. check the release policy before reading any payload byte;
//  3. mark the inactive slot invalid, stream the payload into it
//     (length-limited, hashed, decompressed, constant memory);
//  4. on any digest mismatch the slot stays invalid and nothing else changes;
//  5. persist the verified metadata and the slot record, then switch the
//     boot control to try the new slot once.
//
// The active slot is never opened for writing. A refused install returns an
// *InstallError.
func (d *Device) Install(ctx context.Context, src trust.Source, targetPath string, opt InstallOptions) (*InstallResult, error) {
	res, slot, err := d.install(ctx, src, targetPath, opt)
	version := ""
	if res != nil {
		version = res.Version
	}
	msg := ""
	if err == nil {
		msg = fmt.Sprintf("installed %s into slot %s; boot to try it", targetPath, slot)
	}
	d.recordResult("install", slot, version, err, msg)
	return res, err
}

func (d *Device) install(ctx context.Context, src trust.Source, targetPath string, opt InstallOptions) (*InstallResult, boot.Slot, error) {
	st, err := d.ctl.Load()
	if err != nil {
		return nil, "", &InstallError{Check: CheckState, Err: fmt.Errorf("failed to read boot control: %w", err)}
	}
	if st.Trial != "" {
		return nil, "", &InstallError{Check: CheckState, Err: fmt.Errorf("%w on slot %s: run `airlock device boot` and `airlock device health` first", ErrTrialPending, st.Trial)}
	}
	inactive := otherSlot(st.Good)
	in, err := d.installInto(ctx, src, targetPath, inactive, opt)
	if err != nil {
		return nil, "", err
	}
	// Step 5, last part: try the new slot once.
	st.Trial = inactive
	st.BootCount = 0
	st.BootLimit = d.cfg.Boot.BootLimit
	st.Bad = slices.DeleteFunc(st.Bad, func(s boot.Slot) bool { return s == inactive })
	if err := d.ctl.Store(st); err != nil {
		return nil, inactive, fmt.Errorf("failed to switch boot control to slot %s: %w", inactive, err)
	}
	return &InstallResult{
		Slot: inactive, TargetPath: targetPath, Version: in.meta.Version.String(),
		SecurityVersion: in.meta.SecurityVersion, InstalledBytes: in.res.InstalledBytes, TransportBytes: in.res.TransportBytes,
	}, inactive, nil
}

// installInto runs steps 1 to 5 (without the boot switch) into slot s.
func (d *Device) installInto(ctx context.Context, src trust.Source, targetPath string, s boot.Slot, opt InstallOptions) (*installed, error) {
	fail := func(check string, err error) error { return &InstallError{Check: check, Err: err} }

	// 1. Metadata, verified against an overlay of the trusted store.
	ov := newOverlay(trust.NewDirStore(d.fsys, d.statePath(trustDir)))
	client, err := trust.New(ov, src, trust.Config{Now: d.opts.Now})
	if err != nil {
		return nil, fail(CheckMetadata, err)
	}
	if err := client.Refresh(ctx); err != nil {
		return nil, fail(CheckMetadata, d.diagnoseEnvironment(ctx, src, targetPath, err))
	}
	if err := d.checkTrustedEnvironment(client); err != nil {
		return nil, fail(CheckMetadata, err)
	}
	tf, err := client.Target(ctx, targetPath)
	if err != nil {
		return nil, fail(CheckMetadata, d.diagnoseEnvironment(ctx, src, targetPath, err))
	}
	chain, targets, delegated, err := client.Chain(targetPath)
	if err != nil {
		return nil, fail(CheckMetadata, err)
	}
	// The record must be bootable: verify it exactly as boot will, from
	// the factory root.
	if _, err := trust.VerifyBootChain(d.factoryRoot, chain, targets, delegated, targetPath); err != nil {
		return nil, fail(CheckMetadata, fmt.Errorf("release does not verify from the factory root: %w", err))
	}
	if tf.Custom == nil {
		return nil, fail(CheckRelease, release.ErrNoMetadata)
	}
	custom := []byte(*tf.Custom)
	m, err := release.ParseCustom(custom)
	if err != nil {
		return nil, fail(CheckRelease, err)
	}
	if err := release.CheckTargetPath(m, targetPath); err != nil {
		return nil, fail(CheckRelease, err)
	}

	// 2. Policy, before any payload byte.
	dev, err := d.policyDevice()
	if err != nil {
		return nil, fail(CheckState, err)
	}
	if err := release.Check(m, dev, release.CheckOptions{AllowReinstallOrDowngrade: opt.AllowDowngrade}); err != nil {
		return nil, fail(CheckPolicy, err)
	}
	if m.Install.Kind != release.InstallRaw {
		return nil, fail(CheckRelease, fmt.Errorf("unsupported install kind %q", m.Install.Kind))
	}
	if m.Installed.Length > d.cfg.Slots.Size {
		return nil, fail(CheckSlot, fmt.Errorf("installed image is %d bytes, slot %s holds %d", m.Installed.Length, s, d.cfg.Slots.Size))
	}
	slotFile, err := d.slotPath(s)
	if err != nil {
		return nil, fail(CheckSlot, err)
	}

	// 3. Invalidate the slot record durably, then stream into the slot.
	if err := d.invalidateSlot(s, "being written by install of "+targetPath); err != nil {
		return nil, fail(CheckSlot, err)
	}
	prefix, err := hashPrefix(client, tf)
	if err != nil {
		return nil, &InstallError{Check: CheckPayload, Slot: s, Err: err}
	}
	rc, err := src.OpenTarget(ctx, targetPath, prefix)
	if err != nil {
		return nil, &InstallError{Check: CheckPayload, Slot: s, Err: fmt.Errorf("failed to open payload: %w", err)}
	}
	res, err := d.writeSlot(slotFile, rc, expectOf(tf, m))
	rc.Close()
	if err != nil {
		// 4. Mismatch: the slot stays invalid, nothing else changes.
		_ = d.invalidateSlot(s, fmt.Sprintf("install of %s failed: %v", targetPath, err))
		check := CheckPayload
		if errors.Is(err, errSlotIO) {
			check = CheckSlot
		}
		return nil, &InstallError{Check: check, Slot: s, Err: err}
	}

	// 5. Persist the verified metadata, then the slot record.
	if err := ov.commit(); err != nil {
		return nil, fmt.Errorf("failed to store verified metadata: %w", err)
	}
	rec := &SlotRecord{
		Slot: s, Status: StatusInstalled, TargetPath: targetPath, Version: m.Version.String(),
		SecurityVersion: m.SecurityVersion, InstalledLength: m.Installed.Length,
		InstalledSHA256: hex.EncodeToString(m.Installed.SHA256[:]), Custom: custom,
		RootChain: chain, Targets: targets,
	}
	for _, r := range delegated {
		rec.Delegated = append(rec.Delegated, Role{Name: r.Name, Data: r.Data})
	}
	if err := d.writeSlotRecord(rec); err != nil {
		return nil, err
	}
	return &installed{targetPath: targetPath, meta: m, res: res}, nil
}

// policyDevice describes the device for release.Check: the running version
// is the version of the committed (good) slot.
func (d *Device) policyDevice() (release.Device, error) {
	dev := release.Device{Model: d.cfg.Model, HWRev: d.cfg.HWRev, Channel: d.cfg.Channel, Product: d.cfg.Product, Environment: d.Environment()}
	ctr, err := d.ctr.Read()
	if err != nil {
		return dev, err
	}
	dev.SecurityCounter = ctr
	st, err := d.ctl.Load()
	if err != nil {
		return dev, err
	}
	rec, err := d.SlotRecord(st.Good)
	if err != nil {
		return dev, err
	}
	if rec != nil && rec.Status != StatusInvalid {
		v, err := release.ParseVersion(rec.Version)
		if err != nil {
			return dev, fmt.Errorf("%w: slot %s version: %v", ErrCorruptState, st.Good, err)
		}
		dev.Current = &v
	}
	return dev, nil
}

func expectOf(tf *metadata.TargetFiles, m *release.Metadata) payload.Expect {
	e := payload.Expect{
		Length: tf.Length, Hashes: map[string][]byte{}, Compression: string(m.Install.Compression),
		InstalledLength: m.Installed.Length, InstalledSHA256: m.Installed.SHA256[:],
	}
	for alg, h := range tf.Hashes {
		e.Hashes[alg] = []byte(h)
	}
	return e
}

// hashPrefix returns the file name prefix of a target under consistent
// snapshots (TUF 5.7.3), "" otherwise.
func hashPrefix(c *trust.Client, tf *metadata.TargetFiles) (string, error) {
	root := c.Trusted().Root
	if root == nil || !root.Signed.ConsistentSnapshot {
		return "", nil
	}
	for _, alg := range []string{"sha256", "sha512"} {
		if h, ok := tf.Hashes[alg]; ok {
			return hex.EncodeToString(h), nil
		}
	}
	return "", trust.ErrUnsupportedHash
}

// errSlotIO marks errors writing the slot (as opposed to payload errors).
var errSlotIO = errors.New("slot write failed")

// writeSlot streams src into the slot file, writing in WriteChunk pieces
// from a second goroutine (so that hashing and decompressing overlap the
// writes; memory is two chunks), and syncs it. The slot is opened for
// writing only, without truncation (a block device keeps its size).
func (d *Device) writeSlot(name string, src io.Reader, e payload.Expect) (payload.Result, error) {
	f, err := d.fsys.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return payload.Result{}, fmt.Errorf("%w: failed to open slot: %w", errSlotIO, err)
	}
	defer f.Close()
	aw := newAsyncWriter(f, int(d.cfg.WriteChunk), func(off, n int64) { durable.StartWriteback(f, off, n) })
	res, err := payload.Copy(aw, src, e)
	if werr := aw.Close(); err == nil && werr != nil {
		err = fmt.Errorf("%w: %w", errSlotIO, werr)
	}
	if err != nil {
		return res, err
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("%w: failed to sync slot: %w", errSlotIO, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("%w: failed to close slot: %w", errSlotIO, err)
	}
	return res, nil
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
// one being filled: with 1 MiB chunks, memory stays at a few MiB.
const asyncBuffers = 3

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

// overlay is a trust.Store that reads through to base and keeps Puts in
// memory until commit, so that a refused install leaves the trusted
// metadata on disk untouched.
type overlay struct {
	base  trust.Store
	puts  map[string][]byte
	order []string
}

func newOverlay(base trust.Store) *overlay {
	return &overlay{base: base, puts: map[string][]byte{}}
}

func (o *overlay) Get(name string) ([]byte, error) {
	if d, ok := o.puts[name]; ok {
		return slices.Clone(d), nil
	}
	return o.base.Get(name)
}

func (o *overlay) Put(name string, data []byte) error {
	if _, err := trust.NewMemStore().Get(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err // invalid name
	}
	if _, ok := o.puts[name]; !ok {
		o.order = append(o.order, name)
	}
	o.puts[name] = slices.Clone(data)
	return nil
}

// commit writes the Puts to base in the order they were made (so a root
// history copy lands before root.json, as the client intends).
func (o *overlay) commit() error {
	for _, name := range o.order {
		if old, err := o.base.Get(name); err == nil && string(old) == string(o.puts[name]) {
			continue
		}
		if err := o.base.Put(name, o.puts[name]); err != nil {
			return err
		}
	}
	return nil
}

// Refresh updates the device's trusted metadata from src without installing
// anything (what a polling agent does when nothing is assigned to it): the
// TUF client workflow runs against the trusted store and persists each file
// once verified. Rollback, freeze and bad signatures are refused as in
// Install. Slots and boot control are not touched.
func (d *Device) Refresh(ctx context.Context, src trust.Source) error {
	client, err := trust.New(trust.NewDirStore(d.fsys, d.statePath(trustDir)), src, trust.Config{Now: d.opts.Now})
	if err != nil {
		return &InstallError{Check: CheckMetadata, Err: err}
	}
	if err := client.Refresh(ctx); err != nil {
		return &InstallError{Check: CheckMetadata, Err: err}
	}
	return nil
}
