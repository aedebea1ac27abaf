package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/internal/durable"
	"github.com/airlockfw/airlock/tlog"
	"github.com/airlockfw/airlock/tlog/tlogtest"
	"github.com/airlockfw/airlock/trust"
	"github.com/airlockfw/airlock/verify"
)

// TestTransparencyVerdictEquality: a release validly signed but not in the
// log the root requires is refused with the same words by the agent (over
// HTTPS), a device install and `airlock verify` (verify.Repo with the
// device's state), leaving the device untouched; once logged, all three
// accept it.
func TestTransparencyVerdictEquality(t *testing.T) {
	e := newRepoEnv(t) // 1.0.0 (on the device) and 1.1.0
	lr := tlogtest.NewRepo(t, e.v.rt)
	lr.LogRelease("1.0.0") // the log exists; 1.1.0 is not in it
	devCfg, a := e.device(t, "2s")
	ctx := context.Background()
	before := fingerprint(t, devCfg)

	res, aerr := a.RunOnce(ctx)
	d, err := device.OpenConfig(durable.OS, devCfg, device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	facts, err := d.Facts()
	if err != nil {
		t.Fatal(err)
	}
	opts := verify.Options{Root: d.FactoryRoot(), Store: d.PreviewStore(), Facts: facts}
	_, verr := verify.Repo(ctx, e.v.r.PublicDir(), opts)
	_, derr := d.Install(ctx, trust.NewDirSource(e.v.r.PublicDir()), lr.TargetPath("1.1.0"), device.InstallOptions{})

	ve, vok := errors.AsType[*verify.Error](verr)
	ie, iok := errors.AsType[*device.InstallError](derr)
	if !vok || !iok || ve.Check != verify.CheckTransparency || ie.Check != verify.CheckTransparency {
		t.Fatalf("want both refused by the transparency check; verify: %v; device: %v", verr, derr)
	}
	if ve.Err.Error() != ie.Err.Error() {
		t.Errorf("verdicts differ:\nverify: %v\ndevice: %v", ve.Err, ie.Err)
	}
	if aerr == nil || res.Action != ActionFailed || res.Message != "transparency: "+ie.Err.Error() {
		t.Errorf("agent: %+v, %v; want failed with %q", res, aerr, "transparency: "+ie.Err.Error())
	}
	for _, err := range []error{aerr, verr, derr} {
		if !errors.Is(err, tlog.ErrNotLogged) || !errors.Is(err, verify.ErrVerification) {
			t.Errorf("%v: want a refusal wrapping tlog.ErrNotLogged", err)
		}
	}
	if after := fingerprint(t, devCfg); after != before {
		t.Fatal("a refused install changed the device")
	}

	// Logged: the agent installs and commits it.
	lr.LogRelease("1.1.0")
	if _, err := verify.Repo(ctx, e.v.r.PublicDir(), opts); err != nil {
		t.Fatalf("verify: %v", err)
	}
	res, err = a.RunOnce(ctx)
	if err != nil || res.Action != ActionCommitted || res.Version != "1.1.0" {
		t.Fatalf("agent after logging: %+v, %v", res, err)
	}
}
