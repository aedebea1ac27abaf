package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsFollowPrometheusConventions scrapes a running server after
// requests of every kind (matched, unmatched, an invented method) and
// checks the exposition: promlint finds nothing, counters of bytes end in
// _bytes_total, the latency histogram observed the requests under bounded
// labels and airlock_build_info is there.
func TestMetricsFollowPrometheusConventions(t *testing.T) {
	e := startServer(t, nil)
	viewer := e.adminToken(RoleViewer)
	c := e.client(nil)
	resp, data := e.do(c, "GET", "/repo/metadata/timestamp.json", "", nil)
	wantStatus(t, resp, data, http.StatusOK)
	resp, data = e.do(c, "GET", "/no/such/path/"+strings.Repeat("x", 50), "", nil)
	wantStatus(t, resp, data, http.StatusNotFound)
	resp, data = e.do(c, "BREW", "/coffee", "", nil)
	if resp.StatusCode < 400 {
		t.Fatalf("BREW /coffee: %d", resp.StatusCode)
	}
	resp, data = e.do(c, "GET", "/metrics", viewer, nil)
	wantStatus(t, resp, data, http.StatusOK)
	text := string(data)

	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	types := regexp.MustCompile(`(?m)^# TYPE (airlock_[a-z_]+) ([a-z]+)$`).FindAllStringSubmatch(text, -1)
	if len(types) < 6 {
		t.Fatalf("only %d airlock metrics:\n%s", len(types), text)
	}
	for _, m := range types {
		name, typ := m[1], m[2]
		if typ == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
		if strings.Contains(name, "bytes") && typ == "counter" && !strings.HasSuffix(name, "_bytes_total") {
			t.Errorf("byte counter %s does not end in _bytes_total", name)
		}
	}

	for _, want := range []string{
		`airlock_http_request_duration_seconds_count{code="200",method="GET",route="/repo/metadata/{path...}"} 1`,
		`airlock_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
		`airlock_http_requests_total{code="200",method="GET",route="/repo/metadata/{path...}"} 1`,
		`airlock_served_bytes_total `,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	// The invented method and the raw paths never become label values.
	for _, leak := range []string{"BREW", "/coffee", "/no/such/path"} {
		if strings.Contains(text, leak) {
			t.Errorf("a client-chosen value %q became a label", leak)
		}
	}
	if !regexp.MustCompile(`(?m)^airlock_http_requests_total\{code="[0-9]{3}",method="other",route="unmatched"\} 1$`).MatchString(text) {
		t.Errorf("the BREW request is not counted under method=\"other\":\n%s", grepLines(text, "airlock_http_requests_total"))
	}
	// The histogram's sum is the time the requests took.
	if v := metricValue(t, text, `airlock_http_request_duration_seconds_sum{code="200",method="GET",route="/repo/metadata/{path...}"}`); v <= 0 {
		t.Errorf("duration sum = %v, want > 0", v)
	}
	if !regexp.MustCompile(`(?m)^airlock_build_info\{goversion="go[^"]+",revision="[0-9a-f]*",version="[^"]+"\} 1$`).MatchString(text) {
		t.Errorf("no airlock_build_info:\n%s", grepLines(text, "build_info"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
