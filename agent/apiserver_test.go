package agent

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// deviceAPI is a device API over real mTLS for the agent tests, following
// the shapes of docs/server.md: enrollment with a token and a CSR, then
// check-in and status reports authenticated by the issued certificate.
// It serves the repository under /repo/.
type deviceAPI struct {
	ca       *pki // device CA (issues client certificates)
	token    string
	interval int64
	repo     http.Handler
	// director, if set, serves the director repository under
	// PathDirector to enrolled devices; directorDown makes it answer 503.
	director     http.Handler
	directorDown atomic.Bool

	mu       sync.Mutex
	enrolls  int
	checkins []CheckinRequest
	reports  []StatusReport
	serials  map[string]bool
}

func (s *deviceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Path) > 6 && r.URL.Path[:6] == "/repo/" {
		http.StripPrefix("/repo", s.repo).ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, PathDirector) && s.director != nil {
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
	case PathEnroll:
		s.enroll(w, r)
	case PathCheckin, PathStatus:
		if !s.authenticated(r) {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == PathCheckin {
			var req CheckinRequest
			if !decodeBody(w, r, &req) {
				return
			}
			s.mu.Lock()
			s.checkins = append(s.checkins, req)
			s.mu.Unlock()
			json.NewEncoder(w).Encode(CheckinResponse{
				PollIntervalSeconds: s.interval,
				Repository:          Repository{MetadataURL: "/repo/metadata", TargetsURL: "/repo/targets"},
				ServerTime:          time.Now().UTC(),
			})
			return
		}
		var rep StatusReport
		if !decodeBody(w, r, &rep) {
			return
		}
		s.mu.Lock()
		s.reports = append(s.reports, rep)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
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
	var req EnrollRequest
	if !decodeBody(w, r, &req) {
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
	json.NewEncoder(w).Encode(EnrollResponse{
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

func (s *deviceAPI) lastReport() StatusReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reports) == 0 {
		return StatusReport{}
	}
	return s.reports[len(s.reports)-1]
}

func (s *deviceAPI) resetReports() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = nil
}
