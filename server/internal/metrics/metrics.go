// Package metrics holds the server's Prometheus metrics in a private
// registry. It reads device counts from the store at scrape time and never
// labels a metric with anything a device or a request chose except the
// route pattern and status code, so a client cannot grow the series.
package metrics

import (
	"context"
	"net/http"
	"strconv"
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
	// Checkins counts successful device check-ins.
	Checkins prometheus.Counter
	// Installs counts reported install outcomes by outcome.
	Installs *prometheus.CounterVec
	// Bytes counts repository bytes served.
	Bytes prometheus.Counter
}

// New returns the metrics; db is read for airlock_devices at scrape time,
// each read bounded by timeout.
func New(db store.Store, timeout time.Duration) *Metrics {
	m := &Metrics{
		Reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		Checkins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_checkins_total",
			Help: "Successful device check-ins.",
		}),
		Installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_installs_total",
			Help: "Install outcomes reported by devices (committed, rolled_back, failed).",
		}, []string{"outcome"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_bytes_served_total",
			Help: "Bytes of repository metadata and payloads served.",
		}),
	}
	for _, o := range []string{deviceapi.StateCommitted, deviceapi.StateRolledBack, deviceapi.StateFailed} {
		m.Installs.WithLabelValues(o) // export zeros
	}
	m.Reg.MustRegister(m.requests, m.Checkins, m.Installs, m.Bytes, &deviceCollector{db: db, timeout: timeout},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe counts a request by route pattern and status code.
func (m *Metrics) Observe(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
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
