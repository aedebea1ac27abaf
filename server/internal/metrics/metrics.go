// Package metrics holds the server's Prometheus metrics in a private
// registry. It reads device counts from the store at scrape time and never
// labels a metric with anything a device or a request chose: the route is
// the matched pattern, the method one of a fixed list, the code a status
// the server wrote, so a client cannot grow the series.
//
// Names follow the Prometheus conventions (promlint): counters end in
// _total, units are spelled out (_bytes_total, _seconds).
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlockfw/airlock/deviceapi"
	"github.com/airlockfw/airlock/server/store"
)

// Metrics are the server's Prometheus metrics, in a private registry.
type Metrics struct {
	// Reg is the registry; other rooms register their collectors here.
	Reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// Checkins counts successful device check-ins.
	Checkins prometheus.Counter
	// Installs counts reported install outcomes by outcome.
	Installs *prometheus.CounterVec
	// Bytes counts repository bytes served.
	Bytes prometheus.Counter
}

// RequestDurationBuckets are the upper bounds, in seconds, of
// airlock_http_request_duration_seconds: API calls take milliseconds,
// payload downloads up to minutes.
var RequestDurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// methods are the method label's values; any other method is "other".
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// New returns the metrics; db is read for airlock_devices at scrape time,
// each read bounded by timeout.
func New(db store.Store, timeout time.Duration) *Metrics {
	m := &Metrics{
		Reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by route pattern, method and status code.",
			Buckets: RequestDurationBuckets,
		}, []string{"route", "method", "code"}),
		Checkins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_checkins_total",
			Help: "Successful device check-ins.",
		}),
		Installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_installs_total",
			Help: "Install outcomes reported by devices (committed, rolled_back, failed).",
		}, []string{"outcome"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_served_bytes_total",
			Help: "Bytes of repository metadata and payloads served.",
		}),
	}
	for _, o := range []string{deviceapi.StateCommitted, deviceapi.StateRolledBack, deviceapi.StateFailed} {
		m.Installs.WithLabelValues(o) // export zeros
	}
	m.Reg.MustRegister(m.requests, m.duration, m.Checkins, m.Installs, m.Bytes, buildInfo(),
		&deviceCollector{db: db, timeout: timeout},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts a request and its duration. pattern is the ServeMux
// pattern that matched ("GET /api/v1/device"; "" for none): its path is
// the route label ("unmatched" for none).
func (m *Metrics) Observe(pattern, method string, code int, d time.Duration) {
	route := pattern
	if i := strings.IndexByte(route, ' '); i >= 0 {
		route = route[i+1:]
	}
	if route == "" {
		route = "unmatched"
	}
	if !slices.Contains(methods, method) {
		method = "other"
	}
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(route, method, c).Inc()
	m.duration.WithLabelValues(route, method, c).Observe(d.Seconds())
}

// buildInfo is airlock_build_info: 1, labelled with the binary's module
// version, VCS revision and Go version (what `airlock version` prints).
func buildInfo() prometheus.Gauge {
	version, revision := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "airlock_build_info",
		Help:        "Always 1; the labels say which build of the server is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// deviceCollector reports airlock_devices from the store at scrape time.
type deviceCollector struct {
	db      store.Store
	timeout time.Duration
}

var devicesDesc = prometheus.NewDesc("airlock_devices", "Enrolled devices.", nil, nil)

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc }

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.db.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(devicesDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(st.Devices))
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
