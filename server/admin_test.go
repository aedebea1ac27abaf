package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/airlockfw/airlock/deviceapi"
)

func TestAdminAPIRequiresAValidToken(t *testing.T) {
	e := startServer(t, nil)
	viewer := e.adminToken(RoleViewer)
	paths := []string{"/api/v1/admin/devices", "/api/v1/admin/stats", "/metrics", "/api/v1/admin/devices/dev-x", "/api/v1/admin/devices/dev-x/events"}
	for _, p := range paths {
		for _, tt := range []struct {
			name, auth string
		}{
			{"no token", ""},
			{"wrong token", "Bearer " + strings.Repeat("A", EnrollmentTokenLen)},
			{"malformed token", "Bearer x"},
			{"basic auth", "Basic " + viewer},
			{"enrollment token", "Bearer " + e.enrollToken(EnrollmentTokenOptions{})},
		} {
			t.Run(p+"/"+tt.name, func(t *testing.T) {
				req, _ := http.NewRequestWithContext(t.Context(), "GET", e.base+p, nil)
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				resp, err := e.client(nil).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
					t.Fatalf("status %d, want 401 with WWW-Authenticate", resp.StatusCode)
				}
			})
		}
	}
	t.Run("viewer cannot create enrollment tokens", func(t *testing.T) {
		resp, data := e.do(e.client(nil), "POST", "/api/v1/admin/enrollment-tokens", viewer, CreateEnrollmentTokenRequest{Uses: 1, TTLSeconds: 60})
		wantStatus(t, resp, data, http.StatusForbidden)
	})
}

func TestAdminAPIListsDevicesEventsStatsAndCreatesTokens(t *testing.T) {
	e := startServer(t, nil)
	admin := e.adminToken(RoleAdmin)
	viewer := e.adminToken(RoleViewer)
	c := e.client(nil)

	resp, data := e.do(c, "POST", "/api/v1/admin/enrollment-tokens", admin, CreateEnrollmentTokenRequest{Product: "acme/router-x1", Uses: 2, TTLSeconds: 3600})
	wantStatus(t, resp, data, http.StatusCreated)
	var tr CreateEnrollmentTokenResponse
	json.Unmarshal(data, &tr)
	if len(tr.Token) != EnrollmentTokenLen || tr.ID == "" || tr.Uses != 2 || tr.ExpiresAt.IsZero() {
		t.Fatalf("token response: %s", data)
	}
	_, csr := newCSR(t, false)
	resp, data = e.do(c, "POST", "/api/v1/enroll", "", enrollBody(tr.Token, csr))
	wantStatus(t, resp, data, http.StatusCreated)
	var er deviceapi.EnrollResponse
	json.Unmarshal(data, &er)
	e.enroll()

	for _, tt := range []struct {
		name string
		body CreateEnrollmentTokenRequest
	}{
		{"zero uses", CreateEnrollmentTokenRequest{Uses: 0, TTLSeconds: 60}},
		{"ttl too long", CreateEnrollmentTokenRequest{Uses: 1, TTLSeconds: 1 << 40}},
		{"zero ttl", CreateEnrollmentTokenRequest{Uses: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, data := e.do(c, "POST", "/api/v1/admin/enrollment-tokens", admin, tt.body)
			wantStatus(t, resp, data, http.StatusBadRequest)
		})
	}

	resp, data = e.do(c, "GET", "/api/v1/admin/devices", viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	var dl DeviceList
	json.Unmarshal(data, &dl)
	if len(dl.Devices) != 2 || dl.Limit != 100 {
		t.Fatalf("device list: %s", data)
	}
	resp, data = e.do(c, "GET", "/api/v1/admin/devices?state=idle&product=acme%2Frouter-x1&limit=1", viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	json.Unmarshal(data, &dl)
	if len(dl.Devices) != 1 {
		t.Fatalf("filtered list: %s", data)
	}
	for _, q := range []string{"?bogus=1", "?limit=-1", "?limit=100000", "?state=idle&state=failed"} {
		resp, data = e.do(c, "GET", "/api/v1/admin/devices"+q, viewer, nil)
		wantStatus(t, resp, data, http.StatusBadRequest)
	}

	resp, data = e.do(c, "GET", "/api/v1/admin/devices/"+er.DeviceID, viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	var d Device
	json.Unmarshal(data, &d)
	if d.ID != er.DeviceID {
		t.Fatalf("device: %s", data)
	}
	resp, data = e.do(c, "GET", "/api/v1/admin/devices/dev-nosuch", viewer, nil)
	wantStatus(t, resp, data, http.StatusNotFound)

	resp, data = e.do(c, "GET", "/api/v1/admin/devices/"+er.DeviceID+"/events", viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	var el EventList
	json.Unmarshal(data, &el)
	if len(el.Events) != 1 || el.Events[0].Kind != "enrolled" {
		t.Fatalf("events: %s", data)
	}
	resp, data = e.do(c, "GET", "/api/v1/admin/devices/dev-nosuch/events", viewer, nil)
	wantStatus(t, resp, data, http.StatusNotFound)

	resp, data = e.do(c, "GET", "/api/v1/admin/stats", viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	var st StatsResponse
	json.Unmarshal(data, &st)
	if st.Devices != 2 || st.Versions["1.0.0"] != 2 || st.Events < 2 {
		t.Fatalf("stats: %s", data)
	}
	if strings.Contains(e.logs.String(), admin) || strings.Contains(e.logs.String(), tr.Token) {
		t.Fatal("a token leaked into the logs")
	}
}
