package gateway

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// Metrics holds the gateway's Prometheus metrics, in a registry of its own
// (no global state). Safe for concurrent use.
type Metrics struct {
	reg            *prometheus.Registry
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	ttft           *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	tokens         *prometheus.CounterVec
	openStreams    prometheus.Gauge
	events         prometheus.Counter
}

// NewMetrics builds the registry with Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtai_requests_total", Help: "Requests served, by route, status and model.",
	}, []string{"route", "status", "model"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mtai_request_duration_seconds", Help: "Time from request to the end of the response (the whole stream for streams).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"route", "stream"})
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mtai_time_to_first_token_seconds", Help: "Time from request to the first relayed stream event.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"model"})
	m.upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtai_upstream_errors_total", Help: "Requests that failed because of an upstream, by deployment and error code.",
	}, []string{"deployment", "code"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mtai_tokens_total", Help: "Tokens metered, by model and kind (prompt, completion).",
	}, []string{"model", "kind"})
	m.openStreams = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mtai_open_streams", Help: "Streams being relayed now.",
	})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mtai_stream_events_total", Help: "Stream events relayed to clients.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.ttft, m.upstreamErrors, m.tokens, m.openStreams, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for other packages to add their metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() fasthttp.RequestHandler {
	return fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

var statusText [600]string

func init() {
	for i := range statusText {
		statusText[i] = strconv.Itoa(i)
	}
}

func (m *Metrics) observe(st *reqState, elapsed time.Duration) {
	status := "0"
	if st.status > 0 && st.status < len(statusText) {
		status = statusText[st.status]
	}
	model := st.model
	if st.status == 404 || st.status == 401 || st.status == 400 {
		model = "" // unvalidated names would blow up the label's cardinality
	}
	m.requests.WithLabelValues(st.route, status, model).Inc()
	stream := "false"
	if st.stream {
		stream = "true"
		m.events.Add(float64(st.events))
		if st.events > 0 {
			m.ttft.WithLabelValues(model).Observe(st.ttft.Seconds())
		}
	}
	m.latency.WithLabelValues(st.route, stream).Observe(elapsed.Seconds())
	if st.hasUsage {
		m.tokens.WithLabelValues(model, "prompt").Add(float64(st.usage.PromptTokens))
		m.tokens.WithLabelValues(model, "completion").Add(float64(st.usage.CompletionTokens))
	}
	if st.deployment != "" && st.errCode != "" && st.status >= 500 || (st.deployment != "" && st.errType == "server_error") {
		m.upstreamErrors.WithLabelValues(st.deployment, st.errCode).Inc()
	}
}
