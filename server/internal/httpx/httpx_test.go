package httpx

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
)

func TestDecodeJSONIsStrict(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{`{"kind":"failed","version":"1.0","message":"x"}`, true},
		{` {"kind":"failed"} `, true},
		{`{"kind":"failed","device_id":"dev-b"}`, false},
		{`{"Kind":"failed"}`, false},
		{`{"kind":"failed","kind":"committed"}`, false},
		{`{"kind":"failed"}{}`, false},
		{`{"kind":"failed"} x`, false},
		{`{"kind":["failed"]}`, false},
		{`{"kind":"failed"`, false},
		{`"failed"`, false},
		{`null`, false},
		{``, false},
		{`{"kind":1}`, false},
	} {
		var req deviceapi.StatusReport
		err := DecodeJSON([]byte(tt.in), &req)
		if (err == nil) != tt.ok {
			t.Errorf("DecodeJSON(%q) = %v, want ok=%v", tt.in, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("DecodeJSON(%q) error does not wrap ErrBadRequest: %v", tt.in, err)
		}
	}
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"current_version":"1.0.0","security_counter":3,"state":"idle","slot":"a"}`))
	f.Add([]byte(`{"token":"x","csr":"y","model":"m","hw_rev":1,"product":"p"}`))
	f.Add([]byte(`{"kind":"failed","kind":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var a deviceapi.CheckinRequest
		var b deviceapi.EnrollRequest
		DecodeJSON(data, &a)
		DecodeJSON(data, &b)
	})
}

func TestListLimit(t *testing.T) {
	for _, tt := range []struct {
		query string
		want  int
		ok    bool
	}{
		{"", 0, true},
		{"limit=7", 7, true},
		{"limit=" + strconv.Itoa(store.MaxListLimit), store.MaxListLimit, true},
		{"limit=" + strconv.Itoa(store.MaxListLimit+1), 0, false},
		{"limit=-1", 0, false},
		{"limit=x", 0, false},
		{"limit=1&limit=2", 0, false},
		{"offset=1", 0, false},
	} {
		r := httptest.NewRequest("GET", "/x?"+tt.query, nil)
		got, err := ListLimit(r)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ListLimit(%q) = %d, %v; want %d, ok=%v", tt.query, got, err, tt.want, tt.ok)
		}
		var he *Error
		if err != nil && (!errors.As(err, &he) || he.Code != http.StatusBadRequest) {
			t.Errorf("ListLimit(%q) error is not a 400: %v", tt.query, err)
		}
	}
}
