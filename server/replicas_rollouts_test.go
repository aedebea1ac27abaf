package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/pki"
	"github.com/airlockfw/airlock/server/store"
)

// TestReplicasAssignExactlyAStage is the concurrency acceptance test of
// issue 16 over the real server: three Servers (each with its own
// PostgreSQL connection pool, sharing the data directory like replicas
// behind a load balancer) on one PostgreSQL; a rollout created and started
// through the first; 2,000 concurrent TLS check-ins spread over the three.
// Exactly the stage's 100 devices are assigned, and the rollout's counters
// equal its rows.
func TestReplicasAssignExactlyAStage(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 TLS check-ins")
	}
	const devices, stage = 2000, 100
	openPG := postgresStores(t)
	db := openPG()
	const refresh = 100 * time.Millisecond
	re := startRolloutServer(t, func(c *Config) { c.DB, c.RolloutRefresh = db, refresh })
	servers := []*testEnv{re.testEnv}
	for range 2 {
		servers = append(servers, re.startReplica(openPG(), nil))
	}

	// Devices enrolled directly with certificates of the device CA (one
	// key for all: enrollment is not under test here).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := re.clock.Now()
	certs := make([]tls.Certificate, devices)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range certs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id := fmt.Sprintf("dev-%05d", i)
			cert, _, err := pki.IssueDeviceCert(re.srv.deviceCA, id, key.Public(), now)
			if err != nil {
				t.Error(err)
				return
			}
			certs[i] = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
			if err := db.CreateDevice(t.Context(), store.Device{ID: id, Model: "x1", Product: testProduct, HWRev: 2,
				CurrentVersion: "1.0.0", State: store.StateIdle, CertSerial: pki.SerialHex(cert), CertFingerprint: Fingerprint(cert),
				EnrolledAt: now}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	re.register("1.1.0", EnvDev)
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: fmt.Sprintf("canary:%d,100%%", stage)})
	v := re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	if v.StageViews[0].Target != stage || v.Eligible != devices {
		t.Fatalf("started: target %d of %d eligible", v.StageViews[0].Target, v.Eligible)
	}
	time.Sleep(2 * refresh) // the other replicas learn of the rollout

	// Every check-in is started at once; at most maxInFlight are in
	// their TLS handshake or request at a time, so that two shared cores
	// doing 2,000 handshakes do not run into the server's read timeouts.
	const maxInFlight = 256
	var assigned, failed atomic.Int32
	start := make(chan struct{})
	inflight := make(chan struct{}, maxInFlight)
	begin := time.Now()
	for i := range certs {
		wg.Go(func() {
			s := servers[i%len(servers)]
			c := s.client(&certs[i])
			<-start
			inflight <- struct{}{}
			defer func() { <-inflight }()
			resp, data := s.do(c, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: "1.0.0", State: store.StateIdle})
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
				return
			}
			var cr deviceapi.CheckinResponse
			if err := json.Unmarshal(data, &cr); err != nil {
				t.Error(err)
			} else if cr.Assignment != nil {
				assigned.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d concurrent TLS check-ins over 3 replicas on PostgreSQL in %v", devices, time.Since(begin).Round(time.Millisecond))
	if failed.Load() != 0 {
		t.Fatalf("%d check-ins failed", failed.Load())
	}
	if assigned.Load() != stage {
		t.Fatalf("%d check-ins got an assignment, want %d", assigned.Load(), stage)
	}
	ctx := context.Background()
	held, err := db.HeldDevices(ctx, testProduct)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := db.GetRollout(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := db.RolloutCounts(ctx, ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	counted := 0
	for _, c := range cs {
		counted += c.N
	}
	if len(held) != stage || rec.Assigned != stage || rec.InFlight != stage || counted != stage {
		t.Fatalf("rows %d, counters assigned %d in_flight %d, counts %d; want %d each", len(held), rec.Assigned, rec.InFlight, counted, stage)
	}
}

// TestCheckinReconcilesLostReports: over the real server, a canary device
// whose reports were all lost (it timed out) checks in idle running the
// release: its row turns succeeded and the stage advances; a device still
// on trial is not counted.
func TestCheckinReconcilesLostReports(t *testing.T) {
	re := startRolloutServer(t, nil)
	re.register("1.1.0", EnvDev)
	devs := []testDevice{re.device(), re.device(), re.device()}
	ro := re.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Stages: "canary:2,100%",
		FailureThreshold: "60%", ReportDeadline: "1m"})
	re.action(ro.ID, rollout.ActionStart, http.StatusOK)
	var canary []testDevice
	for _, d := range devs {
		if re.checkin(d).Assignment != nil {
			canary = append(canary, d)
		}
	}
	if len(canary) != 2 {
		t.Fatalf("%d canary devices, want 2", len(canary))
	}
	checkin := func(d testDevice, version, state string) {
		t.Helper()
		resp, data := re.do(d.client, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: version, State: state})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("checkin: %d %s", resp.StatusCode, data)
		}
	}
	re.report(canary[0], store.StateCommitted, "1.1.0", "")
	re.clock.Advance(2 * time.Minute)
	re.srv.EvaluateRollouts(t.Context())
	if v := re.view(ro.ID); v.Total.Failed != 1 || v.Stage != 0 {
		t.Fatalf("after the time-out: stage %d %+v", v.Stage, v.Total)
	}
	checkin(canary[1], "1.1.0", store.StateRebooted) // on trial: not yet a success
	if v := re.view(ro.ID); v.Total.Succeeded != 1 {
		t.Fatalf("a device on trial counted: %+v", v.Total)
	}
	checkin(canary[1], "1.1.0", store.StateIdle)
	v := re.view(ro.ID)
	if v.Stage != 1 || v.StageViews[0].Succeeded != 2 || v.Total.Failed != 0 {
		t.Fatalf("after the reconciling check-in: %s stage %d %+v (%s)", v.State, v.Stage, v.Total, v.Reason)
	}
	re.mu.Lock()
	defer re.mu.Unlock()
	n := 0
	for _, a := range re.audit {
		if a["action"] == "rollout.reconciled" && a["device"] == canary[1].id && a["from"] == "failed/timed_out" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d rollout.reconciled audit events for the device, want 1", n)
	}
}
