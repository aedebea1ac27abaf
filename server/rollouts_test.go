package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/store"
)

// TestRolloutAdvancesOnHealthAndPausesOnFailures drives a rollout end to
// end through the device API: the canary is assigned at check-in, its
// commits open the next stage, a health failure crosses the failure
// threshold and pauses the rollout, paused rollouts assign nobody, and
// every transition is audited with its reason.
func TestRolloutAdvancesOnHealthAndPausesOnFailures(t *testing.T) {
	re := startRolloutServer(t, nil)
	re.register("1.1.0", EnvDev)
	devs := make([]testDevice, 6)
	for i := range devs {
		devs[i] = re.device()
	}
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Filter: "model=x1 hw_rev>=2 version<1.1.0",
		Stages: "canary:2,100%", SuccessThreshold: "100%", FailureThreshold: "10%"})
	if ro.State != string(rollout.Draft) {
		t.Fatalf("new rollout is %s", ro.State)
	}
	// A draft assigns nobody.
	if cr := re.checkin(devs[0]); cr.Assignment != nil {
		t.Fatalf("draft rollout assigned %+v", cr.Assignment)
	}
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	re.srv.EvaluateRollouts(t.Context())

	var assigned []testDevice
	for _, d := range devs {
		if re.checkin(d).Assignment != nil {
			assigned = append(assigned, d)
		}
	}
	if len(assigned) != 2 {
		t.Fatalf("%d devices assigned to a canary of 2", len(assigned))
	}
	for _, d := range assigned {
		re.report(d, store.StateDownloading, "1.1.0", "downloading")
		re.report(d, store.StateCommitted, "1.1.0", "health check passed")
	}
	v := re.view(ro.ID)
	if v.State != "running" || v.Stage != 1 {
		t.Fatalf("after a healthy canary: %s stage %d (%s)", v.State, v.Stage, v.Reason)
	}
	if v.StageViews[0].Succeeded != 2 || v.StageViews[1].Target != 6 {
		t.Errorf("stage progress %+v", v.StageViews)
	}
	// The rest join stage 2; one fails its health check: 1 of 6 > 10%.
	var second []testDevice
	for _, d := range devs {
		if cr := re.checkin(d); cr.Assignment != nil && !containsDevice(assigned, d) {
			second = append(second, d)
		}
	}
	if len(second) != 4 {
		t.Fatalf("%d devices joined the 100%% stage, want 4", len(second))
	}
	re.report(second[0], store.StateRolledBack, "1.1.0", "health check failed: exit status 1")
	v = re.view(ro.ID)
	if v.State != "paused" || !strings.Contains(v.Reason, "failure threshold crossed") {
		t.Fatalf("after a health failure: %s (%s), want paused by the failure threshold", v.State, v.Reason)
	}
	if v.FailureReasons[string(rollout.ReasonHealthCheckFailed)] != 1 {
		t.Errorf("failure reasons %v", v.FailureReasons)
	}
	// Reports about another release do not count.
	re.report(second[1], store.StateFailed, "9.9.9", "payload: hash mismatch")
	if v := re.view(ro.ID); v.Total.Failed != 1 {
		t.Errorf("a report about another version counted: %+v", v.Total)
	}
	// Resume acknowledges the failure; the rest finish and it completes.
	re.action(ro.ID, rollout.ActionResume, http.StatusOK)
	for _, d := range second[1:] {
		re.report(d, store.StateCommitted, "1.1.0", "ok")
	}
	// 5 of 6 succeeded, below 100%: it keeps running (no new failure)
	// until the operator decides.
	if v = re.view(ro.ID); v.State != "running" || v.Total.Succeeded != 5 {
		t.Fatalf("after resume and commits: %s (%s) %+v", v.State, v.Reason, v.Total)
	}
	re.action(ro.ID, rollout.ActionPause, http.StatusOK)
	re.action(ro.ID, rollout.ActionStart, http.StatusConflict)
	re.action(ro.ID, rollout.ActionCancel, http.StatusOK)
	re.action(ro.ID, rollout.ActionResume, http.StatusConflict)

	re.mu.Lock()
	defer re.mu.Unlock()
	var reasons []string
	for _, a := range re.audit {
		if a["action"] == AuditRolloutTransition && a["rollout"] == ro.ID {
			if a["reason"] == "" {
				t.Errorf("transition without a reason: %v", a)
			}
			reasons = append(reasons, a["from"]+">"+a["to"])
		}
	}
	want := "draft>running running>running running>paused paused>running running>paused paused>cancelled"
	if got := strings.Join(reasons, " "); got != want {
		t.Errorf("audited transitions:\n got %s\nwant %s", got, want)
	}
}

func containsDevice(ds []testDevice, d testDevice) bool {
	for _, x := range ds {
		if x.id == d.id {
			return true
		}
	}
	return false
}

// TestSilentDeviceTimesOutAndPausesRollout proves the report deadline: an
// assigned device that never reports counts as failed (timed out).
func TestSilentDeviceTimesOutAndPausesRollout(t *testing.T) {
	re := startRolloutServer(t, nil)
	re.register("1.1.0", EnvDev)
	d := re.device()
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: "canary:1,100%", ReportDeadline: "1h"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	if re.checkin(d).Assignment == nil {
		t.Fatal("not assigned")
	}
	re.srv.EvaluateRollouts(t.Context())
	if v := re.view(ro.ID); v.State != "running" {
		t.Fatalf("paused before the deadline: %s", v.Reason)
	}
	re.clock.Advance(2 * time.Hour)
	re.srv.EvaluateRollouts(t.Context())
	v := re.view(ro.ID)
	if v.State != "paused" || v.FailureReasons[string(rollout.ReasonTimedOut)] != 1 {
		t.Fatalf("after the deadline: %s (%s), reasons %v", v.State, v.Reason, v.FailureReasons)
	}
}

// TestProductionRolloutNeedsApprovals proves that a rollout of a "prod"
// release cannot start before the release has its k approvals from
// distinct approvers, and that viewers cannot manage rollouts.
func TestProductionRolloutNeedsApprovals(t *testing.T) {
	re := startRolloutServer(t, func(c *Config) { c.ProdApprovals = 2 })
	rel := re.register("1.2.0", EnvProd)
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.2.0", Stages: "canary:1,100%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusConflict)
	re.api("POST", "/api/v1/admin/releases/"+rel.ID+"/approve", re.adminToken(RoleApprover), nil, nil, http.StatusOK)
	re.action(ro.ID, rollout.ActionStart, http.StatusConflict)
	tok2, _, err := CreateAdminToken(t.Context(), re.db, "approver-2", RoleApprover, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	re.enrollTOTP(tok2, "approver-2")
	re.api("POST", "/api/v1/admin/releases/"+rel.ID+"/approve", tok2, nil, nil, http.StatusOK)
	if v := re.action(ro.ID, rollout.ActionStart, http.StatusOK); v.State != "running" {
		t.Fatalf("approved prod rollout: %s", v.State)
	}
	viewer := re.adminToken(RoleViewer)
	re.api("POST", "/api/v1/admin/rollouts/"+ro.ID+"/pause", viewer, nil, nil, http.StatusForbidden)
	re.api("GET", "/api/v1/admin/rollouts", viewer, nil, nil, http.StatusOK)
}

// TestRolloutRequestsAreValidated checks the admin API's input errors.
func TestRolloutRequestsAreValidated(t *testing.T) {
	re := startRolloutServer(t, nil)
	// Enroll first: the test clock runs ahead with every TOTP-protected
	// request, and TLS checks certificates against the real clock.
	d, other := re.device(), re.device()
	re.register("1.1.0", EnvDev)
	good := CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: "canary:10,100%"}
	for name, tc := range map[string]struct {
		mod  func(*CreateRolloutRequest)
		want int
	}{
		"bad stages":           {func(r *CreateRolloutRequest) { r.Stages = "50%,10%" }, 400},
		"bad filter":           {func(r *CreateRolloutRequest) { r.Filter = "colour=red" }, 400},
		"bad threshold":        {func(r *CreateRolloutRequest) { r.SuccessThreshold = "95" }, 400},
		"bad window":           {func(r *CreateRolloutRequest) { r.Window = "0 2 * * *,4h,Mars/Base" }, 400},
		"bad deadline":         {func(r *CreateRolloutRequest) { r.ReportDeadline = "forever" }, 400},
		"bad release name":     {func(r *CreateRolloutRequest) { r.Release = "acme" }, 400},
		"unregistered release": {func(r *CreateRolloutRequest) { r.Release = testProduct + "@1.2.0" }, 404},
	} {
		t.Run(name, func(t *testing.T) {
			req := good
			tc.mod(&req)
			re.api("POST", "/api/v1/admin/rollouts", re.op, req, nil, tc.want)
		})
	}
	re.api("GET", "/api/v1/admin/rollouts/ro-missing", re.op, nil, nil, http.StatusNotFound)
	// Tags: set by an operator, used by filters.
	var dev Device
	re.api("POST", "/api/v1/admin/devices/"+d.id+"/tags", re.op, TagsRequest{Tags: "lab,eu"}, &dev, http.StatusOK)
	if len(dev.Tags) != 2 {
		t.Errorf("tags %v", dev.Tags)
	}
	re.api("POST", "/api/v1/admin/devices/"+d.id+"/tags", re.op, TagsRequest{Tags: "Not A Tag"}, nil, http.StatusBadRequest)
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Filter: "tag=lab", Stages: "100%"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	if re.checkin(other).Assignment != nil {
		t.Error("a device without the tag was assigned")
	}
	if re.checkin(d).Assignment == nil {
		t.Error("the tagged device was not assigned")
	}
}
