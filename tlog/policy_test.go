package tlog

import (
	"errors"
	"strings"
	"testing"
)

const (
	testLogKey = "airlock.log/0123456789abcdef+1a2b3c4d+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	testW1     = "w1.example+aabbccdd+BAIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	testW2     = "w2.example+11223344+BAIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyE="
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte(`{"log":"` + testLogKey + `","witnesses":[
		{"name":"w1.example","key":"` + testW1 + `","url":"https://w1.example/"},
		{"name":"w2.example","key":"` + testW2 + `","url":""}],"threshold":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Origin() != "airlock.log/0123456789abcdef" || p.Threshold != 2 || len(p.Witnesses) != 2 {
		t.Errorf("parsed %+v", p)
	}
}

func TestPolicyRefuses(t *testing.T) {
	w1 := Witness{Name: "w1.example", Key: testW1}
	w2 := Witness{Name: "w2.example", Key: testW2}
	for _, c := range []struct {
		name string
		p    Policy
		want string
	}{
		{"no log key", Policy{Witnesses: []Witness{w1}, Threshold: 1}, "log key"},
		{"threshold above n", Policy{Log: testLogKey, Witnesses: []Witness{w1, w2}, Threshold: 3}, "threshold 3 outside 1..2"},
		{"zero threshold", Policy{Log: testLogKey, Witnesses: []Witness{w1}, Threshold: 0}, "threshold 0"},
		{"threshold without witnesses", Policy{Log: testLogKey, Threshold: 1}, "without witnesses"},
		{"duplicate", Policy{Log: testLogKey, Witnesses: []Witness{w1, w1}, Threshold: 1}, "twice"},
		{"name mismatch", Policy{Log: testLogKey, Witnesses: []Witness{{Name: "w3", Key: testW1}}, Threshold: 1}, "is named"},
		{"bad url", Policy{Log: testLogKey, Witnesses: []Witness{{Name: "w1.example", Key: testW1, URL: "ftp://x"}}, Threshold: 1}, "url"},
		{"bad key hash", Policy{Log: "log+xyz+AQ=="}, "not a note verifier key"},
	} {
		err := c.p.Check()
		if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrPolicy naming %q", c.name, err, c.want)
		}
	}
	if err := (Policy{Log: "log+1a2b3c4d+AQ+/"}).Check(); err != nil {
		t.Errorf("a key whose base64 holds '+': %v", err)
	}
	if err := (Policy{Log: testLogKey}).Check(); err != nil {
		t.Errorf("a log without witnesses: %v", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"log":"` + testLogKey + `","witnesses":[],"threshold":0}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err == nil && p.Check() != nil {
			t.Fatal("accepted a policy that does not check")
		}
	})
}

func TestPolicyOf(t *testing.T) {
	if _, ok, err := PolicyOf(map[string]any{"x-airlock-environment": "dev"}); ok || err != nil {
		t.Errorf("a root without the field: ok %v, err %v", ok, err)
	}
	p, ok, err := PolicyOf(map[string]any{PolicyField: map[string]any{"log": testLogKey, "witnesses": []any{}, "threshold": 0}})
	if !ok || err != nil || p.Log != testLogKey {
		t.Errorf("a root with a policy: %+v, %v, %v", p, ok, err)
	}
	if _, ok, err := PolicyOf(map[string]any{PolicyField: map[string]any{"log": testLogKey, "threshold": 1}}); ok || !errors.Is(err, ErrPolicy) {
		t.Errorf("a bad policy: ok %v, err %v", ok, err)
	}
}
