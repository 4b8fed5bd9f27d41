package gateway

import (
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// Meter records usage: one event per metered request (chat completions,
// messages, embeddings), handed over at the end of the request without waiting for
// any database. *billing.Meter implements it; nil means no metering.
type Meter interface {
	// NewEvent returns an empty event (pooled) that the gateway fills
	// and hands to Record, exactly once.
	NewEvent() *billing.Event
	// Record takes ownership of the event; it must not block.
	Record(e *billing.Event)
	// Cost prices usage of upstreamModel (else model, the name asked):
	// priced is false when neither has a price.
	Cost(upstreamModel, model string, u providers.Usage) (cost tenancy.MicroUSD, priced bool)
}

var _ Meter = (*billing.Meter)(nil)

// hCost is the header of a non-streamed answer's cost, in US dollars
// (a decimal such as "0.000125").
const hCost = "X-Mtai-Cost-Usd"

// meterState is the usage event of a request being served, taken from the
// meter before finish when text must be kept to count tokens later (a
// stream's output, an answer without usage). Owned by the request's
// handler, then by its relay; handed to the meter in finish.
type meterState struct {
	ev *billing.Event
}

// event returns the request's event, taking one from the meter on first
// use. s.usage must not be nil.
func (s *Server) event(st *reqState) *billing.Event {
	if st.bill.ev == nil {
		st.bill.ev = s.usage.NewEvent()
	}
	return st.bill.ev
}

// collectStream keeps what a stream event generated (its delta text), in
// case the stream ends without the upstream's usage (the client went away,
// the upstream failed): then the meter counts it. The relay calls it for
// every upstream event; it costs ~60 ns and allocates nothing once the
// event's buffer has grown.
func (s *Server) collectStream(st *reqState, ev []byte) {
	if s.usage == nil || st.hasUsage {
		return
	}
	s.event(st).CollectChunk(ev)
}

// chargeResponse prices a non-streamed chat answer for its
// x-mtai-cost-usd header (a map read and integer arithmetic). The header
// is left out when the model has no price or the upstream reported no
// usage; in that case the body is kept so that the meter counts its
// tokens. Call it once usage is known, before the body is released.
func (s *Server) chargeResponse(rc *fasthttp.RequestCtx, st *reqState, body []byte) {
	if s.usage == nil {
		return
	}
	if !st.hasUsage {
		s.event(st).CountResponse(body)
		return
	}
	cost, priced := s.usage.Cost(s.upstreamModel(st), st.model, st.usage)
	if !priced {
		return
	}
	var buf [24]byte
	rc.Response.Header.SetBytesV(hCost, appendUSD(buf[:0], cost))
}

// appendUSD appends m as a decimal number of dollars without trailing
// zeros ("0.000125", "2", "-1.5"), as tenancy.MicroUSD.String writes it,
// without allocating.
func appendUSD(b []byte, m tenancy.MicroUSD) []byte {
	u := uint64(m)
	if m < 0 {
		b = append(b, '-')
		u = -u
	}
	var digits [20]byte
	i := len(digits)
	whole := u / 1_000_000
	for {
		i--
		digits[i] = byte('0' + whole%10)
		whole /= 10
		if whole == 0 {
			break
		}
	}
	b = append(b, digits[i:]...)
	frac := u % 1_000_000
	if frac == 0 {
		return b
	}
	n := 6
	for frac%10 == 0 {
		frac /= 10
		n--
	}
	b = append(b, '.')
	for j := n - 1; j >= 0; j-- {
		digits[j] = byte('0' + frac%10)
		frac /= 10
	}
	return append(b, digits[:n]...)
}

// upstreamModel returns the model name of the deployment that served st,
// or "" when none did.
func (s *Server) upstreamModel(st *reqState) string {
	if st.deployment == "" {
		return ""
	}
	rt, ok := s.router.Route(st.model)
	if !ok {
		return ""
	}
	for _, d := range rt.Deployments {
		if d.Name == st.deployment {
			return d.Model
		}
	}
	return ""
}

// metered reports whether requests of route are metered.
func metered(route string) bool {
	return route == routeChat || route == routeEmbeddings || route == routeMessages
}

// meter hands the finished request's usage event to the meter. It never
// blocks and counts no tokens itself: when the upstream reported no usage
// for a request it served (a stream cancelled by the client or cut by the
// upstream, an upstream that does not report usage), the event carries
// the text sent and generated, flagged Estimated, and the meter counts it
// with tiktoken on its own goroutine. Requests for a model that does not
// exist are not metered (the access log has them).
func (s *Server) meter(st *reqState) {
	m := s.usage
	e := st.bill.ev
	st.bill.ev = nil
	if m == nil {
		return
	}
	p := st.principal
	if e == nil {
		if p == nil || st.model == "" || !metered(st.route) {
			return
		}
		if st.deployment == "" {
			if _, ok := s.router.Route(st.model); !ok {
				return
			}
		}
		e = m.NewEvent()
	}
	e.Time = st.start
	e.RequestID = st.requestID
	if p != nil {
		e.TenantID, e.Tenant, e.UserID, e.KeyID = p.TenantID, p.Tenant, p.UserID, p.KeyID
	}
	e.Endpoint = st.route
	e.Model = st.model
	e.UpstreamModel = s.upstreamModel(st)
	e.Deployment, e.Provider = st.deployment, st.provider
	e.Stream = st.stream
	e.Status, e.ErrorCode = st.status, st.errCode
	e.Latency = s.now().Sub(st.start)
	e.TTFT = st.ttft
	switch {
	case st.hasUsage:
		e.Usage = st.usage
	case servedWithoutUsage(st):
		e.Estimated = true
		e.CountPrompt(st.call.Body)
	}
	m.Record(e)
}

// servedWithoutUsage reports whether an upstream worked on st but did not
// report usage: a non-streamed answer without usage, a stream that
// generated something, or a stream the client left (the upstream read
// the prompt). A stream the upstream failed before any output is not
// billed.
func servedWithoutUsage(st *reqState) bool {
	if st.deployment == "" {
		return false
	}
	if !st.stream {
		return st.status == fasthttp.StatusOK
	}
	return st.status == 499 || st.status == fasthttp.StatusOK && st.events > 0
}
