package server

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/keys"
	"github.com/airlockfw/airlock/server/pki"
	"github.com/airlockfw/airlock/server/store"
)

func TestEnrolledDeviceChecksInReportsStatusAndReadsOwnRecord(t *testing.T) {
	e := startServer(t, nil)
	for _, ed := range []bool{false, true} {
		key, csr := newCSR(t, ed)
		resp, data := e.do(e.client(nil), "POST", "/api/v1/enroll", "", enrollBody(e.enrollToken(EnrollmentTokenOptions{}), csr))
		wantStatus(t, resp, data, http.StatusCreated)
		var er deviceapi.EnrollResponse
		if err := json.Unmarshal(data, &er); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(er.DeviceID, "dev-") || er.PollIntervalSeconds != 30 || er.CAChain != string(e.srv.DeviceCAPEM()) {
			t.Fatalf("enroll response: %+v", er)
		}
		cert := tlsCert(t, []byte(er.Certificate), key)
		leaf := cert.Leaf
		if leaf.Subject.CommonName != er.DeviceID || len(leaf.ExtKeyUsage) != 1 || leaf.SerialNumber.BitLen() < 64 ||
			leaf.NotAfter.Sub(leaf.NotBefore) < DeviceCertValidity {
			t.Fatalf("issued certificate: CN %q EKU %v serial %v validity %v", leaf.Subject.CommonName, leaf.ExtKeyUsage, leaf.SerialNumber, leaf.NotAfter.Sub(leaf.NotBefore))
		}
		c := e.client(&cert)

		resp, data = e.do(c, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{CurrentVersion: "1.0.0", SecurityCounter: 3, State: "idle", Slot: "a"})
		wantStatus(t, resp, data, http.StatusOK)
		var cr deviceapi.CheckinResponse
		if err := json.Unmarshal(data, &cr); err != nil {
			t.Fatal(err)
		}
		if cr.PollIntervalSeconds != 30 || cr.Repository.MetadataURL != e.base+"/repo/metadata/" || cr.Repository.TargetsURL != e.base+"/repo/targets/" ||
			cr.ServerTime.IsZero() || strings.Contains(string(data), "assignment") {
			t.Fatalf("checkin response: %s", data)
		}

		resp, data = e.do(c, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: "committed", Version: "1.1.0", Message: "ok"})
		wantStatus(t, resp, data, http.StatusNoContent)
		resp, data = e.do(c, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: "exploded"})
		wantStatus(t, resp, data, http.StatusBadRequest)

		resp, data = e.do(c, "GET", "/api/v1/device", "", nil)
		wantStatus(t, resp, data, http.StatusOK)
		var d Device
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		if d.ID != er.DeviceID || d.CurrentVersion != "1.1.0" || d.State != "committed" || d.SecurityCounter != 3 ||
			d.HWRev != 2 || d.Product != "acme/router-x1" || d.LastSeen == nil || d.CertFingerprint != Fingerprint(leaf) {
			t.Fatalf("device record: %s", data)
		}
	}
}

func TestEnrollmentTokenRefusals(t *testing.T) {
	e := startServer(t, nil)
	used := e.enrollToken(EnrollmentTokenOptions{Uses: 1})
	_, csr := newCSR(t, false)
	resp, data := e.do(e.client(nil), "POST", "/api/v1/enroll", "", enrollBody(used, csr))
	wantStatus(t, resp, data, http.StatusCreated)
	expired := e.enrollToken(EnrollmentTokenOptions{TTL: time.Minute})
	restricted := e.enrollToken(EnrollmentTokenOptions{Product: "acme/other"})
	valid := e.enrollToken(EnrollmentTokenOptions{Uses: 10})
	e.clock.Advance(2 * time.Minute)

	tests := []struct {
		name  string
		token string
		mod   func(*deviceapi.EnrollRequest)
		code  int
	}{
		{"single-use token reused", used, nil, http.StatusUnauthorized},
		{"expired token", expired, nil, http.StatusUnauthorized},
		{"wrong token", strings.Repeat("A", EnrollmentTokenLen), nil, http.StatusUnauthorized},
		{"malformed token", "hunter2", nil, http.StatusUnauthorized},
		{"token for another product", restricted, nil, http.StatusForbidden},
		{"no token and no factory certificate", "", nil, http.StatusUnauthorized},
		{"CSR signed by another key", valid, func(r *deviceapi.EnrollRequest) { r.CSR = tamperedCSR(t) }, http.StatusBadRequest},
		{"CSR with a P-384 key", valid, func(r *deviceapi.EnrollRequest) { r.CSR = p384CSR(t) }, http.StatusBadRequest},
		{"missing model", valid, func(r *deviceapi.EnrollRequest) { r.Model = "" }, http.StatusBadRequest},
		{"control character in product", valid, func(r *deviceapi.EnrollRequest) { r.Product = "a\x00b" }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, csr := newCSR(t, false)
			req := enrollBody(tt.token, csr)
			if tt.mod != nil {
				tt.mod(&req)
			}
			resp, data := e.do(e.client(nil), "POST", "/api/v1/enroll", "", req)
			wantStatus(t, resp, data, tt.code)
		})
	}
	if strings.Contains(e.logs.String(), used) || strings.Contains(e.logs.String(), "CERTIFICATE REQUEST") {
		t.Fatal("a token or CSR leaked into the logs")
	}
}

func tamperedCSR(t *testing.T) string {
	_, csr := newCSR(t, false)
	b := []byte(csr)
	i := strings.Index(csr, "\n") + 60 // flip a base64 character inside the signed body
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func p384CSR(t *testing.T) string {
	k, err := keys.Generate(keys.ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	return csrFor(t, k)
}

func TestEnrollByManufacturingCertificate(t *testing.T) {
	mfg := newTestCA(t, "ACME factory CA")
	mfgFile := filepath.Join(t.TempDir(), "mfg.pem")
	if err := os.WriteFile(mfgFile, mfg.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	e := startServer(t, func(c *Config) { c.ManufacturingCAFile = mfgFile })
	factory := mfg.issue(t, "serial-0001", 4242)
	fc := e.client(&factory)

	key, csr := newCSR(t, false)
	resp, data := e.do(fc, "POST", "/api/v1/enroll", "", enrollBody("", csr))
	wantStatus(t, resp, data, http.StatusCreated)
	var er deviceapi.EnrollResponse
	json.Unmarshal(data, &er)
	if er.DeviceID != factoryDeviceID(factory.Leaf) {
		t.Fatalf("device ID %q, want one derived from the factory certificate", er.DeviceID)
	}

	t.Run("factory certificate is refused on the device API", func(t *testing.T) {
		resp, data := e.do(fc, "POST", "/api/v1/checkin", "", deviceapi.CheckinRequest{State: "idle"})
		wantStatus(t, resp, data, http.StatusForbidden)
	})
	t.Run("issued certificate works", func(t *testing.T) {
		cert := tlsCert(t, []byte(er.Certificate), key)
		resp, data := e.do(e.client(&cert), "GET", "/api/v1/device", "", nil)
		wantStatus(t, resp, data, http.StatusOK)
	})
	t.Run("re-enrollment keeps the device ID", func(t *testing.T) {
		_, csr := newCSR(t, false)
		resp, data := e.do(fc, "POST", "/api/v1/enroll", "", enrollBody("", csr))
		if _, ok := e.db.(CertRebinder); !ok {
			// The store cannot replace a certificate: refused, never a second identity.
			wantStatus(t, resp, data, http.StatusConflict)
			return
		}
		wantStatus(t, resp, data, http.StatusCreated)
		var er2 deviceapi.EnrollResponse
		json.Unmarshal(data, &er2)
		if er2.DeviceID != er.DeviceID {
			t.Fatalf("re-enrolled as %q, want %q", er2.DeviceID, er.DeviceID)
		}
	})
	t.Run("device-CA certificate cannot enroll without a token", func(t *testing.T) {
		cert := tlsCert(t, []byte(er.Certificate), key)
		_, csr := newCSR(t, false)
		resp, data := e.do(e.client(&cert), "POST", "/api/v1/enroll", "", enrollBody("", csr))
		wantStatus(t, resp, data, http.StatusUnauthorized)
	})
}

func TestDeviceAPIRefusesRequestsWithoutAValidDeviceIdentity(t *testing.T) {
	mfg := newTestCA(t, "ACME factory CA")
	e := startServer(t, nil)
	if err := os.WriteFile(filepath.Join(e.cfg.DataDir, ManufacturingCAFile), mfg.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	// Restart so the server picks up DATA/manufacturing-ca.pem.
	e.stop()
	e.start()

	// A certificate the real device CA signed, but for a serial never enrolled.
	deviceCAKey, err := pki.LoadCAKey(filepath.Join(e.cfg.DataDir, DeviceCAKeyFile), e.srv.kek)
	if err != nil {
		t.Fatal(err)
	}
	realCA := &testCA{cert: e.srv.deviceCA.Cert, key: deviceCAKey}
	unknown := realCA.issue(t, "dev-00000000000000000000000000000000", 99)
	attacker := newTestCA(t, "Airlock device CA").issue(t, "dev-00000000000000000000000000000000", 1)
	factory := mfg.issue(t, "factory-1", 7)

	for _, path := range []string{"/api/v1/checkin", "/api/v1/status", "/api/v1/device"} {
		method, body := "POST", any(deviceapi.CheckinRequest{State: "idle"})
		if path == "/api/v1/device" {
			method, body = "GET", nil
		} else if path == "/api/v1/status" {
			body = deviceapi.StatusReport{Kind: "failed"}
		}
		t.Run(path+"/no client certificate", func(t *testing.T) {
			resp, data := e.do(e.client(nil), method, path, "", body)
			wantStatus(t, resp, data, http.StatusUnauthorized)
		})
		t.Run(path+"/certificate from another CA", func(t *testing.T) {
			// GetClientCertificate sends the certificate even though the
			// server did not list its issuer as acceptable.
			c := e.client(nil)
			c.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return &attacker, nil
			}
			_, _, err := e.tryDo(c, method, path, "", body)
			if err == nil {
				t.Fatal("TLS handshake with a foreign client certificate succeeded")
			}
		})
		t.Run(path+"/manufacturing certificate", func(t *testing.T) {
			resp, data := e.do(e.client(&factory), method, path, "", body)
			wantStatus(t, resp, data, http.StatusForbidden)
		})
		t.Run(path+"/unknown serial from the device CA", func(t *testing.T) {
			resp, data := e.do(e.client(&unknown), method, path, "", body)
			wantStatus(t, resp, data, http.StatusForbidden)
		})
	}
}

func TestDeviceCannotReadOrWriteAnotherDevicesRecords(t *testing.T) {
	e := startServer(t, nil)
	certA, erA := e.enroll()
	_, erB := e.enroll()
	a := e.client(&certA)

	t.Run("forged device_id in JSON is rejected as an unknown field", func(t *testing.T) {
		for _, path := range []string{"/api/v1/checkin", "/api/v1/status"} {
			body := []byte(`{"device_id":"` + erB.DeviceID + `","state":"failed","kind":"failed","current_version":"6.6.6"}`)
			resp, data := e.do(a, "POST", path, "", body)
			wantStatus(t, resp, data, http.StatusBadRequest)
		}
	})
	t.Run("case-folded or duplicate keys are rejected", func(t *testing.T) {
		for _, body := range []string{
			`{"State":"idle"}`,
			`{"state":"idle","state":"failed"}`,
			`{"state":"idle"} {"state":"failed"}`,
			`[{"state":"idle"}]`,
			`{"state":{"x":1}}`,
		} {
			resp, data := e.do(a, "POST", "/api/v1/checkin", "", []byte(body))
			wantStatus(t, resp, data, http.StatusBadRequest)
		}
	})
	t.Run("A's reports change only A", func(t *testing.T) {
		resp, data := e.do(a, "POST", "/api/v1/status", "", deviceapi.StatusReport{Kind: "failed", Message: "boom"})
		wantStatus(t, resp, data, http.StatusNoContent)
		resp, data = e.do(a, "GET", "/api/v1/device", "", nil)
		wantStatus(t, resp, data, http.StatusOK)
		var d Device
		json.Unmarshal(data, &d)
		if d.ID != erA.DeviceID || d.State != "failed" {
			t.Fatalf("A's record: %s", data)
		}
		b, err := e.db.GetDevice(t.Context(), erB.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		if b.State != store.StateIdle || b.LastError != "" {
			t.Fatalf("B changed by A's report: %+v", b)
		}
	})
	t.Run("no device path takes an ID", func(t *testing.T) {
		for _, p := range []string{"/api/v1/device/" + erB.DeviceID, "/api/v1/device?id=" + erB.DeviceID} {
			resp, data := e.do(a, "GET", p, "", nil)
			if strings.Contains(string(data), erB.DeviceID+`"`) && resp.StatusCode == http.StatusOK && !strings.Contains(string(data), erA.DeviceID) {
				t.Fatalf("%s returned B's record: %s", p, data)
			}
			if resp.StatusCode == http.StatusOK {
				var d Device
				json.Unmarshal(data, &d)
				if d.ID != erA.DeviceID {
					t.Fatalf("%s: got record %q", p, d.ID)
				}
			}
		}
	})
	t.Run("admin device paths need an admin token, not a device certificate", func(t *testing.T) {
		resp, data := e.do(a, "GET", "/api/v1/admin/devices/"+erB.DeviceID, "", nil)
		wantStatus(t, resp, data, http.StatusUnauthorized)
	})
}

func TestOversizeBodiesAreRefusedWith413(t *testing.T) {
	e := startServer(t, nil)
	cert, _ := e.enroll()
	admin := e.adminToken(RoleAdmin)
	big := func(n int) []byte { return []byte(`{"message":"` + strings.Repeat("x", n) + `"}`) }
	tests := []struct {
		path, bearer string
		device       bool
		body         []byte
	}{
		{"/api/v1/enroll", "", false, big(deviceapi.MaxEnrollRequestSize)},
		{"/api/v1/checkin", "", true, big(deviceapi.MaxCheckinRequestSize)},
		{"/api/v1/status", "", true, big(deviceapi.MaxStatusRequestSize)},
		{"/api/v1/admin/enrollment-tokens", admin, false, big(MaxAdminBodySize)},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c := e.client(nil)
			if tt.device {
				c = e.client(&cert)
			}
			resp, data := e.do(c, "POST", tt.path, tt.bearer, tt.body)
			wantStatus(t, resp, data, http.StatusRequestEntityTooLarge)
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", e.base+"/api/v1/checkin", strings.NewReader(`{"state":"idle"}`))
		req.Header.Set("Content-Type", "text/plain")
		resp, err := e.client(&cert).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", resp.StatusCode)
		}
	})
}
