package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/airlockfw/airlock/deviceapi"
)

// metrics are the server's Prometheus metrics, in a private registry.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	checkins prometheus.Counter
	installs *prometheus.CounterVec
	bytes    prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		checkins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_checkins_total",
			Help: "Successful device check-ins.",
		}),
		installs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_installs_total",
			Help: "Install outcomes reported by devices (committed, rolled_back, failed).",
		}, []string{"outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "airlock_bytes_served_total",
			Help: "Bytes of repository metadata and payloads served.",
		}),
	}
	for _, o := range []string{deviceapi.StateCommitted, deviceapi.StateRolledBack, deviceapi.StateFailed} {
		m.installs.WithLabelValues(o) // export zeros
	}
	m.reg.MustRegister(m.requests, m.checkins, m.installs, m.bytes, &deviceCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// deviceCollector reports airlock_devices from the store at scrape time.
type deviceCollector struct{ s *Server }

var devicesDesc = prometheus.NewDesc("airlock_devices", "Enrolled devices.", nil, nil)

func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- devicesDesc }

func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), StoreTimeout)
	defer cancel()
	st, err := c.s.db.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(devicesDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(devicesDesc, prometheus.GaugeValue, float64(st.Devices))
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
