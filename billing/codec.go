package billing

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

// The journal's record payload: one event in a compact binary form.
//
//	version byte (1)
//	id      16 bytes
//	flags   byte: 1 stream, 2 priced, 4 estimated
//	varints: time (Unix µs), tenant id, user id, key id, prompt, completion,
//	         cached, reasoning tokens, cost (µ$), latency (µs), ttft (µs), status
//	strings (uvarint length + bytes): request id, tenant, endpoint, model,
//	         upstream model, deployment, provider, error code
//
// A new field goes at the end under a new version byte; decode keeps
// reading the old versions, since a journal may outlive an upgrade.
const codecVersion = 1

const (
	flagStream = 1 << iota
	flagPriced
	flagEstimated
)

var errCorrupt = errors.New("billing: corrupt journal record")

// appendEvent appends e's payload to b.
func appendEvent(b []byte, e *Event) []byte {
	b = append(b, codecVersion)
	b = append(b, e.ID[:]...)
	var flags byte
	if e.Stream {
		flags |= flagStream
	}
	if e.Priced {
		flags |= flagPriced
	}
	if e.Estimated {
		flags |= flagEstimated
	}
	b = append(b, flags)
	for _, v := range [...]int64{
		e.Time.UnixMicro(), e.TenantID, e.UserID, e.KeyID,
		e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.CachedTokens, e.Usage.ReasoningTokens,
		int64(e.Cost), e.Latency.Microseconds(), e.TTFT.Microseconds(), int64(e.Status),
	} {
		b = binary.AppendVarint(b, v)
	}
	for _, s := range [...]string{e.RequestID, e.Tenant, e.Endpoint, e.Model, e.UpstreamModel, e.Deployment, e.Provider, e.ErrorCode} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// decoder turns payloads back into events. It interns the strings that
// repeat from event to event (tenants, models, deployments), so that a
// batch of decoded events allocates little. Not safe for concurrent use.
type decoder struct {
	strs map[string]string
}

// maxInterned bounds the decoder's string table; it is cleared when full.
const maxInterned = 4096

func (d *decoder) str(b []byte, intern bool) string {
	if len(b) == 0 {
		return ""
	}
	if !intern {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil || len(d.strs) >= maxInterned {
		d.strs = make(map[string]string, 64)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// decode fills e from payload p.
func (d *decoder) decode(p []byte, e *Event) error {
	if len(p) < 18 || p[0] != codecVersion {
		return errCorrupt
	}
	*e = Event{}
	copy(e.ID[:], p[1:17])
	flags := p[17]
	e.Stream, e.Priced, e.Estimated = flags&flagStream != 0, flags&flagPriced != 0, flags&flagEstimated != 0
	p = p[18:]
	var ints [12]int64
	for i := range ints {
		v, n := binary.Varint(p)
		if n <= 0 {
			return errCorrupt
		}
		ints[i], p = v, p[n:]
	}
	e.Time = time.UnixMicro(ints[0]).UTC()
	e.TenantID, e.UserID, e.KeyID = ints[1], ints[2], ints[3]
	e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.CachedTokens, e.Usage.ReasoningTokens = ints[4], ints[5], ints[6], ints[7]
	e.Usage.TotalTokens = e.Usage.PromptTokens + e.Usage.CompletionTokens
	e.Cost = tenancy.MicroUSD(ints[8])
	e.Latency, e.TTFT = time.Duration(ints[9])*time.Microsecond, time.Duration(ints[10])*time.Microsecond
	e.Status = int(ints[11])
	strs := [...]*string{&e.RequestID, &e.Tenant, &e.Endpoint, &e.Model, &e.UpstreamModel, &e.Deployment, &e.Provider, &e.ErrorCode}
	for i, dst := range strs {
		l, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < l {
			return errCorrupt
		}
		*dst = d.str(p[n:n+int(l)], i != 0) // request ids do not repeat
		p = p[n+int(l):]
	}
	return nil
}
