package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlockfw/airlock/device"
	"github.com/airlockfw/airlock/device/boot"
	"github.com/airlockfw/airlock/deviceapi"
)

// deviceAPI is a device API over real mTLS for the agent tests, speaking
// package deviceapi: enrollment with a token and a CSR, then check-in and
// status reports authenticated by the issued certificate. It reads and
// checks every request as the server does (size limit, strict decoding,
// Validate), so an agent test fails if the agent sends what the real server
// would refuse. It serves the repository under /repo/.
type deviceAPI struct {
	ca       *pki // device CA (issues client certificates)
	token    string
	interval int64
	repo     http.Handler
	// director, if set, serves the director repository under
	// PathDirector to enrolled devices; directorDown makes it answer 503.
	director     http.Handler
	directorDown atomic.Bool

	// statusFault, if set, decides the answer to a status report: code 0
	// accepts it; another code is answered instead, after recording the
	// report when record is set (the server stored it, and its answer was
	// lost on the way back). faulted counts these answers.
	statusFault func(r deviceapi.StatusReport) (code int, record bool)
	faulted     int

	mu       sync.Mutex
	enrolls  int
	checkins []deviceapi.CheckinRequest
	reports  []deviceapi.StatusReport
	serials  map[string]bool
}

func (s *deviceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) > 6 && r.URL.Path[:6] == "/repo/" {
		http.StripPrefix("/repo", s.repo).ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, deviceapi.PathDirector) && s.director != nil {
		switch {
		case !s.authenticated(r):
			http.Error(w, "client certificate required", http.StatusUnauthorized)
		case s.directorDown.Load():
			http.Error(w, "director offline", http.StatusServiceUnavailable)
		default:
			s.director.ServeHTTP(w, r)
		}
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch r.URL.Path {
	case deviceapi.PathEnroll:
		s.enroll(w, r)
	case deviceapi.PathCheckin, deviceapi.PathStatus:
		if !s.authenticated(r) {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == deviceapi.PathCheckin {
			var req deviceapi.CheckinRequest
			if !decodeBody(w, r, deviceapi.MaxCheckinRequestSize, &req) {
				return
			}
			s.mu.Lock()
			s.checkins = append(s.checkins, req)
			s.mu.Unlock()
			json.NewEncoder(w).Encode(deviceapi.CheckinResponse{
				PollIntervalSeconds: s.interval,
				Repository:          deviceapi.Repository{MetadataURL: "/repo/metadata", TargetsURL: "/repo/targets"},
				ServerTime:          time.Now().UTC(),
			})
			return
		}
		var rep deviceapi.StatusReport
		if !decodeBody(w, r, deviceapi.MaxStatusRequestSize, &rep) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		code, record := 0, true
		if s.statusFault != nil {
			code, record = s.statusFault(rep)
		}
		if record {
			s.reports = append(s.reports, rep)
		}
		if code != 0 {
			s.faulted++
			http.Error(w, "status report fault", code)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// decodeBody reads a request as the server does: at most limit bytes (413
// beyond), one JSON object without unknown fields or trailing data, then
// its Validate (400).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v interface{ Validate() error }) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		http.Error(w, "trailing data after the JSON object", http.StatusBadRequest)
		return false
	}
	if err := v.Validate(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (s *deviceAPI) authenticated(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serials[r.TLS.VerifiedChains[0][0].SerialNumber.String()]
}

func (s *deviceAPI) enroll(w http.ResponseWriter, r *http.Request) {
	var req deviceapi.EnrollRequest
	if !decodeBody(w, r, deviceapi.MaxEnrollRequestSize, &req) {
		return
	}
	if req.Token != s.token {
		http.Error(w, "invalid enrollment token", http.StatusForbidden)
		return
	}
	b, _ := pem.Decode([]byte(req.CSR))
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		http.Error(w, "bad csr", http.StatusBadRequest)
		return
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "bad csr", http.StatusBadRequest)
		return
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "dev-" + serial.String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.caCert, csr.PublicKey, s.ca.caKey)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	s.enrolls++
	s.serials[serial.String()] = true
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(deviceapi.EnrollResponse{
		DeviceID:            fmt.Sprintf("dev-%s", serial),
		Certificate:         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CAChain:             string(s.ca.caPEM),
		PollIntervalSeconds: 3600,
	})
}

func (s *deviceAPI) kinds() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.reports {
		out = append(out, r.Kind+" "+r.Version)
	}
	return out
}

func (s *deviceAPI) lastReport() deviceapi.StatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) == 0 {
		return deviceapi.StatusReport{}
	}
	return s.reports[len(s.reports)-1]
}

func (s *deviceAPI) resetReports() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = nil
}

// newAPIClient starts a deviceAPI on loopback and returns an apiClient that
// presents an enrolled client certificate.
func newAPIClient(t *testing.T) (*deviceAPI, *apiClient) {
	t.Helper()
	ca := newPKI(t, "device api")
	api := &deviceAPI{ca: ca, interval: 60, serials: map[string]bool{}}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial := big.NewInt(77)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "dev-77"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca.caCert, key.Public(), ca.caKey)
	if err != nil {
		t.Fatal(err)
	}
	api.serials[serial.String()] = true
	pool := x509.NewCertPool()
	pool.AddCert(ca.caCert)
	srv := startTLS(t, "127.0.0.1:0", api, ca.server, pool)
	base, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient(pool, ca.fingerprint(), &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil)
	t.Cleanup(c.CloseIdleConnections)
	return api, &apiClient{base: base, client: c}
}

// TestStatusReportOfCommandOutputIsNotRefused: a status message is often a
// command's output (health check, reboot command): cut inside a UTF-8
// character at the length limit, or carrying carriage returns and terminal
// escapes, it must still be a report the server accepts, not a 400 that
// loses the report.
func TestStatusReportOfCommandOutputIsNotRefused(t *testing.T) {
	api, c := newAPIClient(t)
	for _, tt := range []struct{ name, msg string }{
		{"cut inside a character", strings.Repeat("x", deviceapi.MaxMessageLength-1) + "é and more"},
		{"carriage returns", "check 1 ok\r\ncheck 2 failed\r\n"},
		{"terminal escapes", "\x1b[31mFAIL\x1b[0m"},
		{"invalid utf-8", "read \xff\xfe from the sensor"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.status(t.Context(), deviceapi.StatusReport{Kind: deviceapi.StateFailed, Version: "1.1.0", Message: tt.msg}); err != nil {
				t.Fatalf("status report refused: %v", err)
			}
			if got := api.lastReport(); got.Kind != deviceapi.StateFailed || got.Message == "" {
				t.Fatalf("server received %+v", got)
			}
		})
	}
	if _, _, err := c.checkin(t.Context(), deviceapi.CheckinRequest{State: deviceapi.StateIdle, Slot: deviceapi.SlotA, LastError: "boot\r\nfailed \xff"}); err != nil {
		t.Fatalf("check-in with a raw last error refused: %v", err)
	}
}

// TestAgentRefusesToSendAnInvalidCheckin: a state or slot the server would
// refuse fails locally with ErrAPI and is never sent.
func TestAgentRefusesToSendAnInvalidCheckin(t *testing.T) {
	api, c := newAPIClient(t)
	for _, req := range []deviceapi.CheckinRequest{
		{State: "trial"}, {State: deviceapi.StateIdle, Slot: "A"}, {State: deviceapi.StateIdle, Slot: "r"},
	} {
		if _, _, err := c.checkin(t.Context(), req); !errors.Is(err, ErrAPI) {
			t.Errorf("checkin(%+v) = %v, want ErrAPI", req, err)
		}
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.checkins) != 0 {
		t.Fatalf("invalid check-ins reached the server: %+v", api.checkins)
	}
}

// TestCheckinStateAndSlotAreDeviceAPINames: the agent reports its boot
// control as the server's state and slot names.
func TestCheckinStateAndSlotAreDeviceAPINames(t *testing.T) {
	for _, tt := range []struct {
		name        string
		v           deviceView
		state, slot string
	}{
		{"committed A", deviceView{boot: boot.State{Good: boot.SlotA}}, deviceapi.StateIdle, deviceapi.SlotA},
		{"committed B", deviceView{boot: boot.State{Good: boot.SlotB}}, deviceapi.StateIdle, deviceapi.SlotB},
		{"installed into B, reboot pending", deviceView{boot: boot.State{Good: boot.SlotA, Trial: boot.SlotB}}, deviceapi.StateInstalled, deviceapi.SlotA},
		{"booted B on trial", deviceView{boot: boot.State{Good: boot.SlotA, Trial: boot.SlotB},
			booted: &device.Booted{Slot: boot.SlotB, Trial: true}}, deviceapi.StateRebooted, deviceapi.SlotA},
		{"no boot control", deviceView{}, deviceapi.StateIdle, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			state, slot := tt.v.state(), tt.v.slot()
			if state != tt.state || slot != tt.slot {
				t.Fatalf("state %q slot %q, want %q %q", state, slot, tt.state, tt.slot)
			}
			if err := (deviceapi.CheckinRequest{State: state, Slot: slot}).Validate(); err != nil {
				t.Fatalf("the server would refuse this check-in: %v", err)
			}
		})
	}
}
