package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/rollout"
	"github.com/airlockfw/airlock/server/auth"
	"github.com/airlockfw/airlock/server/store"
	"github.com/airlockfw/airlock/trust"
)

// startReplicas starts two servers, A and B, on one PostgreSQL database,
// as replicas behind a load balancer run: each has its own data directory
// and its own store connections. They share the KEK and copies of the CAs
// (files the operator gives every replica); everything else they share is
// in the database, the director's keys included (B's data directory has
// none when it starts). They share the test clock.
func startReplicas(t *testing.T) (a, b *rolloutEnv) {
	t.Helper()
	open := postgresStores(t)
	repoDir := signedRepo(t)
	a = &rolloutEnv{}
	a.testEnv = startServer(t, func(c *Config) {
		c.RepoDir, c.RolloutTick, c.DB = repoDir, time.Hour, open()
	})

	dataB := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dataB, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAFile, CAKeyFile, DeviceCAFile, DeviceCAKeyFile} {
		data, err := os.ReadFile(filepath.Join(a.cfg.DataDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dataB, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b = &rolloutEnv{testEnv: a.startReplica(open(), func(c *Config) {
		c.DataDir, c.KEKFile = dataB, filepath.Join(a.cfg.DataDir, auth.KEKFile)
	})}
	a.op = a.adminToken(RoleOperator)
	b.op = a.op
	return a, b
}

// TestReplicasShareDashboardSessions: a dashboard login through replica A
// is valid on B (same CSRF token, flash messages set on one shown on the
// other), and a logout through B ends it on A.
func TestReplicasShareDashboardSessions(t *testing.T) {
	a, b := startReplicas(t)
	rel := a.register("1.1.0", EnvDev)
	u := a.newUser("alice", RoleApprover)
	ba, bb := a.browser(), b.browser()
	bb.c.Jar = ba.c.Jar // one browser; the cookie is host-only, and both are 127.0.0.1
	pageA := ba.login(u)

	resp, pageB := bb.get("/dashboard/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(pageB, "alice") {
		t.Fatalf("replica B after logging in on A: %d\n%s", resp.StatusCode, pageB)
	}
	if csrfOf(t, pageA) != csrfOf(t, pageB) {
		t.Error("the replicas give one session different CSRF tokens")
	}
	// A form posted to B with a wrong TOTP code: B's flash shows on A, once.
	resp, _ = bb.post("/dashboard/releases/"+rel.ID+"/approve", url.Values{"csrf": {csrfOf(t, pageB)}, "totp": {"000000"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve with a wrong code on B: %d", resp.StatusCode)
	}
	if _, page := ba.get("/dashboard/releases/" + rel.ID); !strings.Contains(page, "not done") {
		t.Errorf("B's flash message is not shown on A:\n%s", page)
	}
	if _, page := bb.get("/dashboard/releases/" + rel.ID); strings.Contains(page, "not done") {
		t.Error("the flash message was shown twice")
	}
	// The stored row is the cookie's hash, not the cookie.
	var cookie string
	for _, c := range ba.c.Jar.Cookies(&url.URL{Scheme: "https", Host: "127.0.0.1"}) {
		if c.Name == DashboardCookie {
			cookie = c.Value
		}
	}
	h := sha256.Sum256([]byte(cookie))
	now := a.clock.Now()
	if s, err := a.db.TouchDashboardSession(t.Context(), h[:], now, now.Add(-DashboardSessionIdle)); err != nil || s.UserID != u.ID {
		t.Fatalf("stored session under the cookie's hash: %+v, %v", s, err)
	}

	// Logout through B; A refuses the session at once.
	resp, _ = bb.post("/dashboard/logout", url.Values{"csrf": {csrfOf(t, pageB)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout on B: %d", resp.StatusCode)
	}
	ba2 := a.browser()
	ba2.c.Jar.SetCookies(&url.URL{Scheme: "https", Host: "127.0.0.1"}, []*http.Cookie{{Name: DashboardCookie, Value: cookie, Path: "/"}})
	if resp, _ := ba2.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard/login" {
		t.Fatalf("the logged-out session on A: %d %s, want a redirect to the login", resp.StatusCode, resp.Header.Get("Location"))
	}
	// The idle timeout applies whichever replica saw the last request.
	pageA = ba.login(u)
	a.clock.Advance(DashboardSessionIdle - time.Minute)
	if resp, _ := bb.get("/dashboard/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("B within the idle timeout: %d", resp.StatusCode)
	}
	a.clock.Advance(DashboardSessionIdle - time.Minute)
	if resp, _ := ba.get("/dashboard/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("A within the idle timeout of B's request: %d", resp.StatusCode)
	}
	a.clock.Advance(DashboardSessionIdle)
	if resp, _ := bb.get("/dashboard/"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("B after the idle timeout: %d, want a redirect to the login", resp.StatusCode)
	}
	_ = pageA
}

// TestReplicasShareTheTOTPLockout: wrong TOTP codes spread over two
// replicas lock the user out at MaxTOTPFailures in total, and concurrent
// guesses through both check at most MaxTOTPFailures codes.
func TestReplicasShareTheTOTPLockout(t *testing.T) {
	a, b := startReplicas(t)
	try := func(e *rolloutEnv, u testUser, code string) int {
		resp, _ := e.doTOTP("POST", "/api/v1/admin/enrollment-tokens", u.token, code, tokenBody)
		return resp.StatusCode
	}
	u := a.newUser("target", RoleAdmin)
	for i := range MaxTOTPFailures {
		e := []*rolloutEnv{a, b}[i%2]
		if got := try(e, u, "000000"); got != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d, want 401", i+1, got)
		}
	}
	for _, e := range []*rolloutEnv{a, b} {
		if got := try(e, u, a.code(u)); got != http.StatusTooManyRequests {
			t.Fatalf("right code after %d wrong ones on two replicas: %d, want 429", MaxTOTPFailures, got)
		}
	}
	a.clock.Advance(TOTPLockout)
	if got := try(b, u, a.code(u)); got != http.StatusCreated {
		t.Fatalf("right code after the lockout: %d, want 201", got)
	}

	// Concurrent guesses through both replicas: MaxTOTPFailures checked.
	v := a.newUser("victim", RoleAdmin)
	const guesses = 4 * MaxTOTPFailures
	var unauthorized, locked atomic.Int64
	var wg sync.WaitGroup
	for i := range guesses {
		e := []*rolloutEnv{a, b}[i%2]
		wg.Go(func() {
			switch got := try(e, v, fmt.Sprintf("%06d", i)); got {
			case http.StatusUnauthorized:
				unauthorized.Add(1)
			case http.StatusTooManyRequests:
				locked.Add(1)
			default:
				t.Errorf("guess %d: %d", i, got)
			}
		})
	}
	wg.Wait()
	if unauthorized.Load() != MaxTOTPFailures || locked.Load() != guesses-MaxTOTPFailures {
		t.Fatalf("%d concurrent guesses on two replicas: %d checked, %d locked out; want %d checked",
			guesses, unauthorized.Load(), locked.Load(), MaxTOTPFailures)
	}
}

// fetchLog records every director metadata file served, by device, role
// and version: one version must always mean the same bytes.
type fetchLog struct {
	mu   sync.Mutex
	seen map[string][sha256.Size]byte
	errs []string
}

func (l *fetchLog) add(device, role string, data []byte) {
	var md struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return // the client refuses it
	}
	key := fmt.Sprintf("%s %s v%d", device, role, md.Signed.Version)
	sum := sha256.Sum256(data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.seen[key]; ok && prev != sum {
		l.errs = append(l.errs, key+": two different files")
	}
	l.seen[key] = sum
}

// alternating is a device's view of a load balancer over the replicas:
// every metadata request goes to the next replica.
type alternating struct {
	device  string
	sources []trust.Source
	next    atomic.Int64
	log     *fetchLog
}

func (s *alternating) FetchMetadata(ctx context.Context, role string, version int64, maxLength int64) ([]byte, error) {
	src := s.sources[int(s.next.Add(1))%len(s.sources)]
	data, err := src.FetchMetadata(ctx, role, version, maxLength)
	if err == nil {
		s.log.add(s.device, role, data)
	}
	return data, err
}

func (s *alternating) OpenTarget(ctx context.Context, targetPath, hashPrefix string) (io.ReadCloser, error) {
	return nil, trust.ErrNotFound
}

// TestReplicasSignOneDirectorHistory: devices check in and refresh their
// director metadata through two replicas concurrently, alternating between
// them request by request, while assignments change and metadata goes
// stale. Every refresh verifies (same keys and roots on both replicas),
// versions never go back (the device's TUF client would refuse it), and a
// version always means the same bytes whichever replica signed it.
func TestReplicasSignOneDirectorHistory(t *testing.T) {
	a, b := startReplicas(t)
	root, err := DirectorRoot(a.cfg.DataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	rootB, err := os.ReadFile(filepath.Join(b.cfg.DataDir, "director", "1.root.json"))
	if err != nil || string(rootB) != string(root) {
		t.Fatalf("B's director root version 1 is not A's (%v)", err)
	}
	a.register("1.1.0", EnvDev)
	a.register("1.2.0", EnvDev)
	const devices, refreshes = 4, 12
	devs := make([]testDevice, devices)
	for i := range devs {
		devs[i] = a.device()
	}
	ro := a.createRollout(CreateRolloutRequest{Release: testProduct + "@1.1.0", Filter: "model=x1", Stages: "100%"})
	a.action(ro.ID, rollout.ActionStart, http.StatusOK)

	log := &fetchLog{seen: map[string][sha256.Size]byte{}}
	var wg sync.WaitGroup
	var refreshed atomic.Int64
	for _, d := range devs {
		// Two clients per device (a device and its retry, or two devices
		// with one identity): both must see one history.
		for range 2 {
			wg.Go(func() {
				st := trust.NewMemStore()
				if err := st.Put("root.json", root); err != nil {
					t.Error(err)
					return
				}
				src := &alternating{device: d.id, log: log, sources: []trust.Source{
					trust.NewHTTPSource(a.base+DirectorPath, "", d.client), trust.NewHTTPSource(b.base+DirectorPath, "", d.client)}}
				c, err := trust.New(st, src, trust.Config{Now: a.clock.Now})
				if err != nil {
					t.Error(err)
					return
				}
				last := int64(0)
				for i := range refreshes {
					e := []*rolloutEnv{a, b}[i%2]
					resp, data, err := e.tryDo(d.client, "POST", "/api/v1/checkin", "", checkinBody)
					if err != nil || resp.StatusCode != http.StatusOK {
						t.Errorf("check-in of %s on replica %d: %v %s", d.id, i%2, err, data)
						return
					}
					err = c.Refresh(t.Context())
					if errors.Is(err, trust.ErrNotFound) {
						continue // a version moved on between two files of one refresh: retried at the next
					}
					if err != nil {
						t.Errorf("device %s refresh %d through both replicas: %v", d.id, i, err)
						return
					}
					v := c.Trusted().Targets.Signed.Version
					if v < last {
						t.Errorf("device %s: targets version went back from %d to %d", d.id, last, v)
					}
					last = v
					refreshed.Add(1)
				}
			})
		}
	}
	// Meanwhile the assignments change and the metadata goes stale.
	for range 3 {
		time.Sleep(50 * time.Millisecond)
		a.clock.Advance(DefaultDirectorTimestampExpiry)
	}
	a.action(ro.ID, rollout.ActionCancel, http.StatusOK)
	wg.Wait()
	if len(log.errs) > 0 {
		t.Fatalf("one version, several metadata sets:\n%s", strings.Join(log.errs, "\n"))
	}
	t.Logf("%d of %d refreshes verified, %d distinct files", refreshed.Load(), 2*devices*refreshes, len(log.seen))
	if got := refreshed.Load(); got < devices*refreshes {
		t.Errorf("%d of %d refreshes verified; want at least half", got, 2*devices*refreshes)
	}
	// The versions are in the one database: each device's last state
	// verifies on both replicas.
	for _, d := range devs {
		st, err := a.db.GetDirectorState(t.Context(), d.id)
		if err != nil || st.Version < 2 {
			t.Errorf("director state of %s: %+v, %v; want re-signed versions", d.id, st, err)
		}
		t.Logf("device %s: director version %d", d.id, st.Version)
	}
}

var checkinBody = deviceapi.CheckinRequest{CurrentVersion: "1.0.0", State: store.StateIdle}
