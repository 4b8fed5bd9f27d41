package redislimit

import "github.com/prometheus/client_golang/prometheus"

// metrics are the limiter's Prometheus metrics; the Limiter collects them.
type metrics struct {
	up             prometheus.Gauge
	outages        prometheus.Counter
	degradedOpen   prometheus.Counter
	degradedClosed prometheus.Counter
	settlesDropped prometheus.Counter
	degraded       *prometheus.CounterVec
}

func newMetrics() metrics {
	degraded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtai_ratelimit_degraded_total",
		Help: "Rate limit decisions taken without Redis: in process with a fair share (mode=fail_open) or refused (mode=fail_closed).",
	}, []string{"mode"})
	return metrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mtai_ratelimit_redis_up",
			Help: "1 while the rate limiter reaches Redis, 0 while it limits without it.",
		}),
		outages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mtai_ratelimit_redis_outages_total",
			Help: "Times the rate limiter found Redis unreachable and switched to its fallback.",
		}),
		degraded:       degraded,
		degradedOpen:   degraded.WithLabelValues("fail_open"),
		degradedClosed: degraded.WithLabelValues("fail_closed"),
		settlesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mtai_ratelimit_settles_dropped_total",
			Help: "Settlements of reservations not applied in Redis (Redis unreachable or the queue full).",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.up, m.outages, m.degraded, m.settlesDropped}
}

// Describe implements prometheus.Collector.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range l.m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	for _, c := range l.m.collectors() {
		c.Collect(ch)
	}
}
