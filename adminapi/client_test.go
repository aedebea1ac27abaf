package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestClientSendsCredentialsAndReportsServerErrors: reads carry only the
// token, changes the token and the TOTP code, a change without a code is
// refused before anything is sent, and a server error is reported with its
// message (the CLI prints these errors as they are).
func TestClientSendsCredentialsAndReportsServerErrors(t *testing.T) {
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization")+" totp="+r.Header.Get(TOTPHeader)+
			" type="+r.Header.Get("Content-Type"))
		switch r.URL.Path {
		case PathReleases + "/rel-1/approve":
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(ErrorBody{Error: "the uploader of a release cannot approve it"})
		case PathRollouts:
			json.NewEncoder(w).Encode(RolloutList{Rollouts: []RolloutView{{ID: "ro-1"}}})
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	defer srv.Close()
	c := New(srv.URL, nil, Static{Token: "tok"})
	c.http = srv.Client()
	ctx := context.Background()

	l, err := c.ListRollouts(ctx)
	if err != nil || len(l.Rollouts) != 1 || l.Rollouts[0].ID != "ro-1" {
		t.Fatalf("ListRollouts = %+v, %v", l, err)
	}
	if _, err := c.ApproveRelease(ctx, "rel-1"); !errors.Is(err, ErrTOTPRequired) {
		t.Fatalf("change without TOTP: %v", err)
	}
	c.creds = Static{Token: "tok", TOTP: "123456"}
	_, err = c.ApproveRelease(ctx, "rel-1")
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden ||
		err.Error() != "POST /api/v1/admin/releases/rel-1/approve: HTTP 403: the uploader of a release cannot approve it" {
		t.Fatalf("approve error: %v", err)
	}
	if _, err := c.GetRelease(ctx, "x"); err == nil || err.Error() != "GET /api/v1/admin/releases/x: HTTP 418" {
		t.Fatalf("error without a message: %v", err)
	}
	if _, err := c.RolloutAction(ctx, "ro-1", "delete", RolloutActionRequest{}); err == nil {
		t.Fatal("unknown rollout action accepted")
	}
	want := []string{
		"GET /api/v1/admin/rollouts auth=Bearer tok totp= type=",
		"POST /api/v1/admin/releases/rel-1/approve auth=Bearer tok totp=123456 type=",
		"GET /api/v1/admin/releases/x auth=Bearer tok totp= type=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
