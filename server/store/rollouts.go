package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Rollout states as stored (package rollout defines their meaning).
const (
	RolloutDraft     = "draft"
	RolloutRunning   = "running"
	RolloutPaused    = "paused"
	RolloutCompleted = "completed"
	RolloutCancelled = "cancelled"
)

// Device states within a rollout and the failure reasons, as stored.
const (
	RolloutDeviceAssigned   = "assigned"
	RolloutDeviceInProgress = "in_progress"
	RolloutDeviceSucceeded  = "succeeded"
	RolloutDeviceFailed     = "failed"
)

// Limits of rollout records.
const (
	// MaxRolloutSpecLen bounds the stored filter, stages and window strings.
	MaxRolloutSpecLen = 1024
	// MaxRolloutStages bounds Rollout.Stage.
	MaxRolloutStages = 64
	// MaxRolloutCount bounds stored device counts (max_parallel, ack_failed).
	MaxRolloutCount = 1 << 40
	// MaxHeldDevices bounds what HeldDevices returns.
	MaxHeldDevices = 10_000_000
)

// Rollout is a staged rollout of a registered release. Its settings are
// stored in the canonical string forms package rollout parses.
type Rollout struct {
	ID               string // server-assigned; [A-Za-z0-9._-]
	ReleaseID        string // the registered release (Release.ID)
	Product          string
	Version          string
	TargetPath       string // the image repository's target path
	Filter           string // may be empty (every device of the product)
	Stages           string // required
	SuccessThreshold int    // hundredths of a percent, 1..10000
	FailureThreshold int    // hundredths of a percent, 0..9999
	MaxParallel      int    // 0: no limit
	Window           string // may be empty (always open)
	Forced           bool
	ReportDeadline   time.Duration // > 0
	State            string        // one of the Rollout* state constants
	Stage            int           // index of the current stage
	AckFailed        int           // failed devices acknowledged by the last resume
	Reason           string        // reason of the last transition
	CreatedBy        string        // user ID
	CreatedAt        time.Time
	UpdatedAt        time.Time // last change of State, Stage, AckFailed or Reason

	// Eligible is the eligible-fleet count the rollout ticker last
	// computed, and Target the current stage's cumulative target derived
	// from it: AssignRolloutDevice admits a device only while Assigned is
	// below Target. Both are written by CreateRollout, UpdateRollout and
	// SetRolloutEligible, so every server uses the same numbers.
	Eligible int
	Target   int
	// Assigned (every device of the rollout) and InFlight (those without
	// an outcome) are maintained by the store with every device change;
	// CreateRollout and UpdateRollout ignore them.
	Assigned int
	InFlight int
}

// Active reports whether the rollout holds its devices (draft, running or
// paused).
func (r Rollout) Active() bool {
	return r.State == RolloutDraft || r.State == RolloutRunning || r.State == RolloutPaused
}

// RolloutDevice is one device's progress in a rollout.
type RolloutDevice struct {
	RolloutID  string
	DeviceID   string
	Stage      int    // the stage it was assigned in
	State      string // one of the RolloutDevice* constants
	Reason     string // failure reason, "" unless failed
	AssignedAt time.Time
	UpdatedAt  time.Time // last report (or the assignment)
}

// RolloutCount is a number of devices of a rollout with one stage, state
// and reason. State is RolloutDeviceAssigned for every device without an
// outcome (assigned or in progress), else succeeded or failed.
type RolloutCount struct {
	Stage  int
	State  string
	Reason string
	N      int
}

// RolloutDeviceUpdate is a change of one device's state in a rollout.
type RolloutDeviceUpdate struct {
	RolloutID, DeviceID string
	// FromState and FromReason, when FromState is set, are the state and
	// reason the caller read: the update applies only if they are
	// unchanged. UpdatedBefore, when set, also requires the device's
	// UpdatedAt to be at or before it (a time-out must not overrule a
	// report that just arrived).
	FromState, FromReason string
	UpdatedBefore         time.Time
	State, Reason         string
	Now                   time.Time // the new UpdatedAt
}

// Errors of AssignRolloutDevice.
var (
	// ErrRolloutFull: the rollout's current stage is fully assigned, or
	// max_parallel devices are in flight.
	ErrRolloutFull = fmt.Errorf("%w: the rollout stage has no room", ErrConflict)
	// ErrRolloutMoved: the rollout is not running at the stage the caller
	// assumed (another server changed it).
	ErrRolloutMoved = fmt.Errorf("%w: the rollout is not running at that stage", ErrConflict)
)

// DirectorState is the version state of one device's director metadata:
// the server signs timestamp, snapshot and targets all with Version, so
// identical state always yields identical metadata.
type DirectorState struct {
	DeviceID         string
	Version          int64  // 1.. (0 in a zero value: none yet)
	Assignment       string // fingerprint of the signed assignment
	TimestampExpires time.Time
	Expires          time.Time // snapshot and targets
	UpdatedAt        time.Time
}

// RolloutStore is the part of Store for rollouts and the director.
type RolloutStore interface {
	// CreateRollout stores a new rollout. ErrExists if the ID is taken;
	// ErrNotFound if the release or creator does not exist.
	CreateRollout(ctx context.Context, r Rollout) error

	// GetRollout returns a rollout, or ErrNotFound.
	GetRollout(ctx context.Context, id string) (Rollout, error)

	// ListRollouts returns up to limit (0 means DefaultListLimit)
	// rollouts, newest first; with product set only that product's, with
	// activeOnly only draft, running and paused ones.
	ListRollouts(ctx context.Context, product string, activeOnly bool, limit int) ([]Rollout, error)

	// UpdateRollout changes a rollout's state, stage, acknowledged failures,
	// reason, eligible count and stage target if its state and stage are
	// still fromState and fromStage (ErrConflict otherwise: someone else
	// moved it). Moving to completed or cancelled releases its devices to
	// join other rollouts.
	UpdateRollout(ctx context.Context, id, fromState string, fromStage int, to Rollout, now time.Time) error

	// SetRolloutEligible stores a rollout's eligible-fleet count and its
	// current stage's target if it is still active at stage (ErrConflict
	// otherwise). It does not change UpdatedAt.
	SetRolloutEligible(ctx context.Context, id string, stage, eligible, target int) error

	// AssignRolloutDevice adds a device to a running rollout in the
	// rollout's current stage d.Stage, if the stage has room: the rollout's
	// Assigned is below its Target and, with MaxParallel set, its InFlight
	// below MaxParallel. The admission is a conditional update of the
	// rollout's counters in the transaction of the insert, so concurrent
	// servers never assign more than Target. ErrRolloutFull if there is no
	// room; ErrRolloutMoved if the rollout is not running at d.Stage;
	// ErrExists if the device is already in an active rollout of the
	// product (this one or another) or was in this one; ErrNotFound if the
	// rollout or device does not exist; ErrConflict if the device is of
	// another product.
	AssignRolloutDevice(ctx context.Context, d RolloutDevice) error

	// UpdateRolloutDevice changes a device's state and reason in a rollout
	// and sets its UpdatedAt, adjusting the rollout's counters in the same
	// transaction. With u.FromState set, only if the device is still in
	// FromState with FromReason (and, with UpdatedBefore set, its UpdatedAt
	// is at or before it): ErrConflict otherwise. ErrNotFound if the device
	// is not in the rollout.
	UpdateRolloutDevice(ctx context.Context, u RolloutDeviceUpdate) error

	// DeviceAssignment returns the device's most recent assignment whose
	// rollout is not cancelled, with its rollout; ErrNotFound if none.
	DeviceAssignment(ctx context.Context, deviceID string) (RolloutDevice, Rollout, error)

	// RolloutCounts counts a rollout's devices by stage, state and reason
	// (see RolloutCount), from counters kept with every device change.
	RolloutCounts(ctx context.Context, rolloutID string) ([]RolloutCount, error)

	// OverdueRolloutDevices returns up to limit devices of a rollout with
	// no outcome (assigned or in progress) whose UpdatedAt is at or before
	// before, oldest first.
	OverdueRolloutDevices(ctx context.Context, rolloutID string, before time.Time, limit int) ([]RolloutDevice, error)

	// HeldDevices returns the IDs of the devices of product that are in an
	// active rollout, with that rollout's ID.
	HeldDevices(ctx context.Context, product string) (map[string]string, error)

	// SetDeviceTags replaces a device's tags (validated like
	// Device.Tags). ErrNotFound if there is no such device.
	SetDeviceTags(ctx context.Context, deviceID string, tags []string) error

	// GetDirectorState returns a device's director state, or ErrNotFound.
	GetDirectorState(ctx context.Context, deviceID string) (DirectorState, error)

	// PutDirectorState stores st if the stored version is prevVersion (0:
	// none stored) and st.Version is greater; ErrConflict otherwise.
	PutDirectorState(ctx context.Context, st DirectorState, prevVersion int64) error
}

func checkRolloutState(field, s string) error {
	switch s {
	case RolloutDraft, RolloutRunning, RolloutPaused, RolloutCompleted, RolloutCancelled:
		return nil
	}
	return invalid(field, "%q is not a rollout state", truncate(s))
}

func checkRolloutDeviceState(field, s string) error {
	switch s {
	case RolloutDeviceAssigned, RolloutDeviceInProgress, RolloutDeviceSucceeded, RolloutDeviceFailed:
		return nil
	}
	return invalid(field, "%q is not a rollout device state", truncate(s))
}

func checkCount(field string, n, max int) error {
	if n < 0 || int64(n) > int64(max) {
		return invalid(field, "%d outside 0..%d", n, max)
	}
	return nil
}

func validateRollout(r Rollout) error {
	for _, c := range []struct{ f, v string }{{"rollout id", r.ID}, {"rollout release id", r.ReleaseID}, {"rollout creator", r.CreatedBy}} {
		if err := checkID(c.f, c.v); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		f, v string
		req  bool
	}{{"rollout product", r.Product, true}, {"rollout version", r.Version, true}, {"rollout target path", r.TargetPath, true}} {
		if err := checkString(c.f, c.v, c.req); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		f, v string
		req  bool
	}{{"rollout filter", r.Filter, false}, {"rollout stages", r.Stages, true}, {"rollout window", r.Window, false}} {
		if err := checkText(c.f, c.v, MaxRolloutSpecLen, c.req, false); err != nil {
			return err
		}
	}
	if err := checkMessage("rollout reason", r.Reason); err != nil {
		return err
	}
	if err := checkRolloutState("rollout state", r.State); err != nil {
		return err
	}
	switch {
	case r.SuccessThreshold < 1 || r.SuccessThreshold > 10000:
		return invalid("rollout success threshold", "%d outside 1..10000", r.SuccessThreshold)
	case r.FailureThreshold < 0 || r.FailureThreshold > 9999:
		return invalid("rollout failure threshold", "%d outside 0..9999", r.FailureThreshold)
	case r.ReportDeadline <= 0:
		return invalid("rollout report deadline", "%v, want > 0", r.ReportDeadline)
	case r.Stage < 0 || r.Stage >= MaxRolloutStages:
		return invalid("rollout stage", "%d outside 0..%d", r.Stage, MaxRolloutStages-1)
	}
	if err := checkCount("rollout max parallel", r.MaxParallel, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkCount("rollout ack failed", r.AckFailed, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkCount("rollout eligible", r.Eligible, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkCount("rollout target", r.Target, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkTime("rollout created at", r.CreatedAt); err != nil {
		return err
	}
	return checkTime("rollout updated at", r.UpdatedAt)
}

const rolloutColumns = `id, release_id, product, version, target_path, filter, stages, success_threshold,
	failure_threshold, max_parallel, window_spec, forced, report_deadline, state, stage, ack_failed, reason,
	created_by, created_at, updated_at, eligible, stage_target, assigned, in_flight`

// rolloutColumnsR is rolloutColumns of the table aliased r.
var rolloutColumnsR = "r." + strings.Join(strings.Fields(strings.ReplaceAll(rolloutColumns, ",", " ")), ", r.")

func scanRollout(r row, extra ...any) (Rollout, error) {
	var ro Rollout
	var succ, fail, par, forced, deadline, stage, ack, created, updated, elig, target, assigned, inflight int64
	dest := append([]any{&ro.ID, &ro.ReleaseID, &ro.Product, &ro.Version, &ro.TargetPath, &ro.Filter, &ro.Stages,
		&succ, &fail, &par, &ro.Window, &forced, &deadline, &ro.State, &stage, &ack, &ro.Reason,
		&ro.CreatedBy, &created, &updated, &elig, &target, &assigned, &inflight}, extra...)
	if err := r.Scan(dest...); err != nil {
		return Rollout{}, err
	}
	ro.Eligible, ro.Target, ro.Assigned, ro.InFlight = int(elig), int(target), int(assigned), int(inflight)
	ro.SuccessThreshold, ro.FailureThreshold, ro.MaxParallel = int(succ), int(fail), int(par)
	ro.Forced, ro.ReportDeadline = forced != 0, time.Duration(deadline)*time.Microsecond
	ro.Stage, ro.AckFailed = int(stage), int(ack)
	ro.CreatedAt, ro.UpdatedAt = fromDBTime(created), fromDBTime(updated)
	return ro, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (s *sqlStore) CreateRollout(ctx context.Context, r Rollout) error {
	if err := validateRollout(r); err != nil {
		return err
	}
	err := s.b.inTx(ctx, func(q querier) error {
		if err := userExists(ctx, q, r.CreatedBy); err != nil {
			return err
		}
		if _, err := getRelease(ctx, q, r.ReleaseID); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO rollouts (`+rolloutColumns+`) VALUES
			($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, 0, 0)`,
			r.ID, r.ReleaseID, r.Product, r.Version, r.TargetPath, r.Filter, r.Stages, int64(r.SuccessThreshold),
			int64(r.FailureThreshold), int64(r.MaxParallel), r.Window, boolInt(r.Forced), r.ReportDeadline.Microseconds(),
			r.State, int64(r.Stage), int64(r.AckFailed), r.Reason, r.CreatedBy, dbTime(r.CreatedAt), dbTime(r.UpdatedAt),
			int64(r.Eligible), int64(r.Target))
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to create rollout %q: %w", r.ID, s.mapErr(err))
	}
	return nil
}

func getRollout(ctx context.Context, q querier, id string) (Rollout, error) {
	r, err := scanRollout(q.queryRow(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = $1`, id))
	if isNoRows(err) {
		return Rollout{}, fmt.Errorf("rollout %q: %w", id, ErrNotFound)
	}
	return r, err
}

func (s *sqlStore) GetRollout(ctx context.Context, id string) (Rollout, error) {
	if err := checkID("rollout id", id); err != nil {
		return Rollout{}, err
	}
	r, err := getRollout(ctx, s.b.reader(), id)
	if err != nil {
		return Rollout{}, fmt.Errorf("failed to get rollout: %w", err)
	}
	return r, nil
}

func (s *sqlStore) ListRollouts(ctx context.Context, product string, activeOnly bool, limit int) ([]Rollout, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	if err := checkString("product", product, false); err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT `+rolloutColumns+` FROM rollouts
		WHERE ($1 = '' OR product = $1) AND ($2 = 0 OR state IN ('draft', 'running', 'paused'))
		ORDER BY created_at DESC, id LIMIT $3`, product, boolInt(activeOnly), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("failed to list rollouts: %w", err)
	}
	defer rs.Close()
	var out []Rollout
	for rs.Next() {
		r, err := scanRollout(rs)
		if err != nil {
			return nil, fmt.Errorf("failed to list rollouts: %w", err)
		}
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list rollouts: %w", err)
	}
	return out, nil
}

func (s *sqlStore) UpdateRollout(ctx context.Context, id, fromState string, fromStage int, to Rollout, now time.Time) error {
	if err := checkID("rollout id", id); err != nil {
		return err
	}
	if err := checkRolloutState("from state", fromState); err != nil {
		return err
	}
	if err := checkRolloutState("rollout state", to.State); err != nil {
		return err
	}
	if to.Stage < 0 || to.Stage >= MaxRolloutStages {
		return invalid("rollout stage", "%d outside 0..%d", to.Stage, MaxRolloutStages-1)
	}
	if err := checkCount("rollout ack failed", to.AckFailed, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkMessage("rollout reason", to.Reason); err != nil {
		return err
	}
	if err := checkCount("rollout eligible", to.Eligible, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkCount("rollout target", to.Target, MaxRolloutCount); err != nil {
		return err
	}
	if err := checkTime("now", now); err != nil {
		return err
	}
	err := s.b.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `UPDATE rollouts SET state = $1, stage = $2, ack_failed = $3, reason = $4, updated_at = $5,
			eligible = $9, stage_target = $10
			WHERE id = $6 AND state = $7 AND stage = $8`,
			to.State, int64(to.Stage), int64(to.AckFailed), to.Reason, dbTime(now), id, fromState, int64(fromStage),
			int64(to.Eligible), int64(to.Target))
		if err != nil {
			return err
		}
		if n == 0 {
			if _, err := getRollout(ctx, q, id); err != nil {
				return err
			}
			return fmt.Errorf("%w: rollout %q is no longer %s at stage %d", ErrConflict, id, fromState, fromStage)
		}
		if to.State == RolloutCompleted || to.State == RolloutCancelled {
			_, err = q.exec(ctx, `UPDATE rollout_devices SET active = 0 WHERE rollout_id = $1`, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("failed to update rollout %q: %w", id, err)
	}
	return nil
}

const rolloutDeviceColumns = `rd.rollout_id, rd.device_id, rd.stage, rd.state, rd.reason, rd.assigned_at, rd.updated_at`

func scanRolloutDevice(r row, extra ...any) (RolloutDevice, error) {
	var d RolloutDevice
	var stage, assigned, updated int64
	dest := append([]any{&d.RolloutID, &d.DeviceID, &stage, &d.State, &d.Reason, &assigned, &updated}, extra...)
	if err := r.Scan(dest...); err != nil {
		return RolloutDevice{}, err
	}
	d.Stage, d.AssignedAt, d.UpdatedAt = int(stage), fromDBTime(assigned), fromDBTime(updated)
	return d, nil
}

func (s *sqlStore) DeviceAssignment(ctx context.Context, deviceID string) (RolloutDevice, Rollout, error) {
	if err := checkID("device id", deviceID); err != nil {
		return RolloutDevice{}, Rollout{}, err
	}
	// One statement: the check-in path runs it for every device.
	var d RolloutDevice
	var stage, assigned, updated int64
	r, err := scanRollout(s.b.reader().queryRow(ctx, `SELECT `+rolloutColumnsR+`, `+rolloutDeviceColumns+`
		FROM rollout_devices rd JOIN rollouts r ON r.id = rd.rollout_id
		WHERE rd.device_id = $1 AND r.state <> 'cancelled'
		ORDER BY rd.assigned_at DESC, rd.rollout_id DESC LIMIT 1`, deviceID),
		&d.RolloutID, &d.DeviceID, &stage, &d.State, &d.Reason, &assigned, &updated)
	if isNoRows(err) {
		return RolloutDevice{}, Rollout{}, fmt.Errorf("assignment of device %q: %w", deviceID, ErrNotFound)
	}
	if err != nil {
		return RolloutDevice{}, Rollout{}, fmt.Errorf("failed to get the assignment of device %q: %w", deviceID, err)
	}
	d.Stage, d.AssignedAt, d.UpdatedAt = int(stage), fromDBTime(assigned), fromDBTime(updated)
	return d, r, nil
}

func (s *sqlStore) RolloutCounts(ctx context.Context, rolloutID string) ([]RolloutCount, error) {
	if err := checkID("rollout id", rolloutID); err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT stage, state, reason, n FROM rollout_counts
		WHERE rollout_id = $1 AND n <> 0 ORDER BY stage, state, reason`, rolloutID)
	if err != nil {
		return nil, fmt.Errorf("failed to count rollout devices: %w", err)
	}
	defer rs.Close()
	var out []RolloutCount
	for rs.Next() {
		var c RolloutCount
		var stage, n int64
		if err := rs.Scan(&stage, &c.State, &c.Reason, &n); err != nil {
			return nil, fmt.Errorf("failed to count rollout devices: %w", err)
		}
		c.Stage, c.N = int(stage), int(n)
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to count rollout devices: %w", err)
	}
	return out, nil
}

func (s *sqlStore) OverdueRolloutDevices(ctx context.Context, rolloutID string, before time.Time, limit int) ([]RolloutDevice, error) {
	if err := checkID("rollout id", rolloutID); err != nil {
		return nil, err
	}
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	if err := checkTime("before", before); err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT `+rolloutDeviceColumns+` FROM rollout_devices rd
		WHERE rd.rollout_id = $1 AND rd.state IN ('assigned', 'in_progress') AND rd.updated_at <= $2
		ORDER BY rd.updated_at, rd.device_id LIMIT $3`, rolloutID, dbTime(before), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("failed to list overdue rollout devices: %w", err)
	}
	defer rs.Close()
	var out []RolloutDevice
	for rs.Next() {
		d, err := scanRolloutDevice(rs)
		if err != nil {
			return nil, fmt.Errorf("failed to list overdue rollout devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list overdue rollout devices: %w", err)
	}
	return out, nil
}

func (s *sqlStore) HeldDevices(ctx context.Context, product string) (map[string]string, error) {
	if err := checkString("product", product, true); err != nil {
		return nil, err
	}
	rs, err := s.b.reader().query(ctx, `SELECT device_id, rollout_id FROM rollout_devices
		WHERE product = $1 AND active = 1 LIMIT $2`, product, int64(MaxHeldDevices))
	if err != nil {
		return nil, fmt.Errorf("failed to list held devices: %w", err)
	}
	defer rs.Close()
	out := map[string]string{}
	for rs.Next() {
		var dev, ro string
		if err := rs.Scan(&dev, &ro); err != nil {
			return nil, fmt.Errorf("failed to list held devices: %w", err)
		}
		out[dev] = ro
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("failed to list held devices: %w", err)
	}
	return out, nil
}

func (s *sqlStore) SetDeviceTags(ctx context.Context, deviceID string, tags []string) error {
	if err := checkID("device id", deviceID); err != nil {
		return err
	}
	if err := validateTags(tags); err != nil {
		return err
	}
	if tags == nil {
		tags = []string{}
	}
	data, err := json.Marshal(tags)
	if err != nil {
		return fmt.Errorf("failed to encode device tags: %w", err)
	}
	n, err := s.b.writer().exec(ctx, `UPDATE devices SET tags = $1 WHERE id = $2`, string(data), deviceID)
	if err != nil {
		return fmt.Errorf("failed to set tags of device %q: %w", deviceID, err)
	}
	if n == 0 {
		return fmt.Errorf("device %q: %w", deviceID, ErrNotFound)
	}
	return nil
}

func (s *sqlStore) GetDirectorState(ctx context.Context, deviceID string) (DirectorState, error) {
	if err := checkID("device id", deviceID); err != nil {
		return DirectorState{}, err
	}
	st := DirectorState{DeviceID: deviceID}
	var tsExp, exp, updated int64
	err := s.b.reader().queryRow(ctx, `SELECT version, assignment, timestamp_expires, expires, updated_at
		FROM director_state WHERE device_id = $1`, deviceID).Scan(&st.Version, &st.Assignment, &tsExp, &exp, &updated)
	if isNoRows(err) {
		return DirectorState{}, fmt.Errorf("director state of device %q: %w", deviceID, ErrNotFound)
	}
	if err != nil {
		return DirectorState{}, fmt.Errorf("failed to get the director state of device %q: %w", deviceID, err)
	}
	st.TimestampExpires, st.Expires, st.UpdatedAt = fromDBTime(tsExp), fromDBTime(exp), fromDBTime(updated)
	return st, nil
}

func (s *sqlStore) PutDirectorState(ctx context.Context, st DirectorState, prevVersion int64) error {
	if err := checkID("device id", st.DeviceID); err != nil {
		return err
	}
	if st.Version <= prevVersion || prevVersion < 0 {
		return invalid("director version", "%d is not greater than the previous %d", st.Version, prevVersion)
	}
	if err := checkString("director assignment", st.Assignment, false); err != nil {
		return err
	}
	for _, c := range []struct {
		f string
		t time.Time
	}{{"timestamp expires", st.TimestampExpires}, {"expires", st.Expires}, {"updated at", st.UpdatedAt}} {
		if err := checkTime(c.f, c.t); err != nil {
			return err
		}
	}
	err := s.b.inTx(ctx, func(q querier) error {
		var n int64
		var err error
		if prevVersion == 0 {
			var one int64
			if e := q.queryRow(ctx, `SELECT 1 FROM devices WHERE id = $1`, st.DeviceID).Scan(&one); isNoRows(e) {
				return fmt.Errorf("device %q: %w", st.DeviceID, ErrNotFound)
			} else if e != nil {
				return e
			}
			n, err = q.exec(ctx, `INSERT INTO director_state (device_id, version, assignment, timestamp_expires, expires, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id) DO NOTHING`,
				st.DeviceID, st.Version, st.Assignment, dbTime(st.TimestampExpires), dbTime(st.Expires), dbTime(st.UpdatedAt))
		} else {
			n, err = q.exec(ctx, `UPDATE director_state SET version = $1, assignment = $2, timestamp_expires = $3,
				expires = $4, updated_at = $5 WHERE device_id = $6 AND version = $7`,
				st.Version, st.Assignment, dbTime(st.TimestampExpires), dbTime(st.Expires), dbTime(st.UpdatedAt), st.DeviceID, prevVersion)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: director state of device %q is no longer at version %d", ErrConflict, st.DeviceID, prevVersion)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("failed to store the director state of device %q: %w", st.DeviceID, err)
	}
	return nil
}
