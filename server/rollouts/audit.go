package rollouts

import (
	"context"
	"strconv"

	"github.com/airlockfw/airlock/server/store"
)

// AuditRolloutAssigned is the audit action of a device's assignment.
const AuditRolloutAssigned = "rollout.assigned"

// assignAudit returns ctx with the audit event of assigning device d to
// lr's current stage, to pass to the store call that assigns it: the event
// commits with the assignment or not at all. lr.mu must be held.
func (e *Engine) assignAudit(ctx context.Context, lr *liveRollout, d store.Device) context.Context {
	ctx = store.WithAudit(ctx)
	e.audit(ctx, systemActor, AuditRolloutAssigned, map[string]string{
		"rollout": lr.rec.ID, "release": lr.rec.Product + "@" + lr.rec.Version, "device": d.ID,
		"stage": lr.r.Stages[lr.r.Stage].Label(lr.r.Stage), "stage_index": strconv.Itoa(lr.r.Stage)})
	return ctx
}
