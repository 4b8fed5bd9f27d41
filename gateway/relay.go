package gateway

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

// startStream opens the upstream stream (retrying and falling back while
// nothing has been sent) and hands the response body to a relay.
func (s *Server) startStream(rc *fasthttp.RequestCtx, st *reqState, rt *providers.Route) error {
	up, served, err := s.router.Stream(s.ctx, rt, &st.call)
	st.served(served)
	if err != nil {
		return err
	}
	s.relayStream(rc, st, up)
	return nil
}

// relayStream answers the open upstream stream up: SSE headers, and a
// relay as the response body, which finishes st when the stream ends.
func (s *Server) relayStream(rc *fasthttp.RequestCtx, st *reqState, up providers.Stream) {
	s.serveRelay(rc, s.newRelay(rc, st, up, st.chat.includeUsage))
}

func (s *Server) newRelay(rc *fasthttp.RequestCtx, st *reqState, up providers.Stream, wantUsage bool) *relay {
	return &relay{s: s, st: st, up: up, conn: rc.Conn(), wantUsage: wantUsage}
}

// serveRelay registers r (so that shutdown can cut it), writes the SSE
// headers and makes r the response body.
func (s *Server) serveRelay(rc *fasthttp.RequestCtx, r *relay) {
	st := r.st
	s.streamsMu.Lock()
	s.streams[r] = struct{}{}
	s.streamsMu.Unlock()
	s.metrics.openStreams.Inc()
	st.status = fasthttp.StatusOK
	rc.SetStatusCode(fasthttp.StatusOK)
	rc.SetContentType("text/event-stream; charset=utf-8")
	rc.Response.Header.Set("Cache-Control", "no-cache")
	rc.Response.Header.Set("X-Accel-Buffering", "no")
	if st.deployment != "" {
		rc.Response.Header.Set("X-Mtai-Deployment", st.deployment)
	}
	rc.SetBodyStream(r, -1)
}

// relay is the body of a streamed response: fasthttp calls WriteTo on the
// connection's own goroutine, and each Write there is one flushed HTTP
// chunk, so every event reaches the client as soon as it arrived.
//
// A second goroutine (the watcher) blocks reading the client connection
// while the stream runs: a client that goes away makes that read fail at
// once, and the watcher closes the upstream stream, which cancels the
// upstream request even if the upstream is silent.
type relay struct {
	s         *Server
	st        *reqState
	up        providers.Stream
	conn      net.Conn
	wantUsage bool
	// frames, when set, makes the frames to send instead of nextFrame
	// (another wire format over the same lifecycle, e.g. /v1/messages).
	frames func() (frame []byte, last bool, err error)

	out     []byte
	pending []byte // for Read: the part of out not yet read
	doneEOF bool

	watchDone  chan struct{}
	stopping   atomic.Bool
	clientGone atomic.Bool
	stolen     bool // the watcher read bytes of a next request: close the conn after
	cutErr     atomic.Pointer[error]
	sawError   bool
	closeOnce  sync.Once
}

var (
	dataPrefix  = []byte("data: ")
	eventEnd    = []byte("\n\n")
	doneFrame   = []byte("data: [DONE]\n\n")
	usageKey    = []byte(`usage":`)
	nullLit     = []byte("null")
	errorPrefix = []byte(`{"error"`)
)

// SupportsBodyWriteTo tells fasthttp to call WriteTo and frame each write
// as its own flushed chunk.
func (r *relay) SupportsBodyWriteTo() bool { return true }

// WriteTo relays the upstream's events to w until the stream ends.
func (r *relay) WriteTo(w io.Writer) (int64, error) {
	r.startWatch()
	defer r.stopWatch()
	var written int64
	for {
		frame, last, err := r.next()
		if len(frame) > 0 {
			n, werr := w.Write(frame)
			written += int64(n)
			if werr != nil {
				r.clientGone.Store(true)
				r.up.Close(errClientClosed)
				return written, werr
			}
		}
		if last || err != nil {
			return written, err
		}
	}
}

// Read lets fasthttp (or anyone) read the relayed body as a plain stream.
func (r *relay) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.doneEOF {
			return 0, io.EOF
		}
		frame, last, err := r.next()
		if err != nil {
			return 0, err
		}
		r.pending = frame
		r.doneEOF = last
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

func (r *relay) next() ([]byte, bool, error) {
	if r.frames != nil {
		return r.frames()
	}
	return r.nextFrame()
}

// nextFrame reads the next upstream event and returns the bytes to send:
// nothing for an event hidden from the client, and last=true after the
// final frame.
func (r *relay) nextFrame() (frame []byte, last bool, err error) {
	st := r.st
	ev, err := r.up.Next()
	if err == io.EOF {
		if r.sawError {
			return nil, true, nil
		}
		return doneFrame, true, nil
	}
	if err != nil {
		if r.clientGone.Load() {
			st.status = 499
			st.errCode = "client_closed_request"
			return nil, true, errClientClosed
		}
		if cut := r.cutErr.Load(); cut != nil {
			err = *cut
		}
		if r.sawError {
			return nil, true, nil // the upstream already said why
		}
		e := toAPIError(err)
		st.noteError(e)
		r.out = append(r.out[:0], dataPrefix...)
		r.out = appendErrorJSON(r.out, e)
		r.out = append(r.out, eventEnd...)
		return r.out, true, nil
	}
	st.events++
	if st.events == 1 {
		st.ttft = r.s.now().Sub(st.start)
	}
	r.s.collectStream(st, ev) // for metering, should the stream end without usage
	out := append(r.out[:0], dataPrefix...)
	if bytes.HasPrefix(ev, errorPrefix) {
		r.sawError = true
		out = appendErrorJSON(out, upstreamStreamError(st, ev)) // never the upstream's words as they are
	} else if i := bytes.Index(ev, usageKey); i > 0 && ev[i-1] == '"' {
		// One scan finds the usage key, whose value is an object (the
		// usage chunk) or null (on every chunk once include_usage is on).
		v := ev[jsonscan.SkipSpace(ev, i+len(usageKey)):]
		switch {
		case len(v) > 0 && v[0] == '{':
			if u, ok := providers.ParseUsage(ev); ok {
				st.usage, st.hasUsage = u, true
			}
			if !r.wantUsage && isUsageOnly(ev) {
				return nil, false, nil // the chunk we asked for, not the client
			}
			out = append(out, ev...)
		case !r.wantUsage && bytes.HasPrefix(v, nullLit):
			// drop `,"usage":null` (or `"usage":null,`) for a client that did not ask
			from, to := i-1, len(ev)-len(v)+len(nullLit)
			if j := lastNonSpace(ev, from); j >= 0 && ev[j] == ',' {
				from = j
			} else if k := jsonscan.SkipSpace(ev, to); k < len(ev) && ev[k] == ',' {
				to = k + 1
			}
			out = append(out, ev[:from]...)
			out = append(out, ev[to:]...)
		default:
			out = append(out, ev...)
		}
	} else {
		out = append(out, ev...)
	}
	out = append(out, eventEnd...)
	r.out = out
	st.bytesOut += len(out)
	return out, false, nil
}

// isUsageOnly reports whether a chunk carries no choice (the usage chunk),
// whatever the upstream's spacing.
func isUsageOnly(ev []byte) bool {
	s, e, ok := jsonscan.Find(ev, 0, "choices")
	if !ok {
		return true
	}
	return ev[s] == '[' && jsonscan.SkipSpace(ev, s+1) == e-1
}

// lastNonSpace returns the index of the last non-space byte before i, or -1.
func lastNonSpace(b []byte, i int) int {
	for i--; i >= 0; i-- {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return -1
}

func (r *relay) startWatch() {
	if !watchable(r.conn) {
		return
	}
	r.watchDone = make(chan struct{})
	go func() {
		defer close(r.watchDone)
		var b [1]byte
		n, _ := r.conn.Read(b[:])
		if n > 0 {
			r.stolen = true // a pipelined request: it cannot be served after this
			return
		}
		if r.stopping.Load() {
			return
		}
		r.clientGone.Store(true)
		r.up.Close(errClientClosed)
	}()
}

// watchable reports whether c is a real connection that can be read while
// the response is written (not fasthttp's in-memory stand-in).
func watchable(c net.Conn) bool {
	switch c.(type) {
	case interface {
		SyscallConn() (syscall.RawConn, error)
	}, interface{ NetConn() net.Conn }:
		return true
	}
	return false
}

func (r *relay) stopWatch() {
	if r.watchDone == nil {
		return
	}
	r.stopping.Store(true)
	_ = r.conn.SetReadDeadline(time.Now())
	<-r.watchDone
	_ = r.conn.SetReadDeadline(time.Time{})
	if r.stolen {
		_ = r.conn.Close()
	}
}

// cut ends the stream early with err (shutdown).
func (r *relay) cut(err error) {
	r.cutErr.Store(&err)
	r.up.Close(err)
}

// Close finishes the request: fasthttp calls it once the body is written
// or the connection failed.
func (r *relay) Close() error {
	r.closeOnce.Do(func() {
		r.up.Close(nil)
		s := r.s
		s.streamsMu.Lock()
		delete(s.streams, r)
		s.streamsMu.Unlock()
		s.metrics.openStreams.Dec()
		if r.clientGone.Load() && r.st.status == fasthttp.StatusOK {
			r.st.status = 499
			r.st.errCode = "client_closed_request"
		}
		s.finish(r.st)
		r.st = nil
	})
	return nil
}

var _ fasthttp.BodyWriterTo = (*relay)(nil)
