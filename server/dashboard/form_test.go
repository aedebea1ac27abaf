package dashboard

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDashboardForm(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{"csrf=abc&totp=123456", true},
		{"", true},
		{"csrf=a&csrf=b", false},
		{"CSRF=a", false},
		{"a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9", false},
		{"csrf=%zz", false},
		{"csrf=a;totp=1", false},
		{strings.Repeat("a", MaxFormSize+1), false},
	} {
		t.Run(tc.body[:min(len(tc.body), 20)], func(t *testing.T) {
			_, err := parseDashboardForm(tc.body)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrForm) {
				t.Fatalf("err %v does not wrap ErrForm", err)
			}
		})
	}
}

func FuzzParseDashboardForm(f *testing.F) {
	f.Add("csrf=abc&totp=123456")
	f.Add("token=AAAA&totp=000000&csrf=x")
	f.Add("a=%20&b=")
	f.Fuzz(func(t *testing.T, body string) {
		form, err := parseDashboardForm(body)
		if err != nil {
			if !errors.Is(err, ErrForm) {
				t.Fatalf("error %v does not wrap ErrForm", err)
			}
			return
		}
		if len(form) > MaxFormFields {
			t.Fatalf("%d fields accepted", len(form))
		}
		for k, vs := range form {
			if len(vs) != 1 || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz_") != "" {
				t.Fatalf("field %q %q accepted", k, vs)
			}
		}
	})
}
