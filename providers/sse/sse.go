// Package sse reads Server-Sent Events from an upstream HTTP response: line
// framing (LF or CRLF), the "event:" and "data:" fields, the size limits,
// and the lifecycle of a fasthttp streamed body, in which Close, from any
// goroutine, interrupts a Next that is blocked on the network, and the
// fasthttp.Response is released exactly once.
//
// Payloads are JSON, so the data lines of one event are joined with a space
// (SSE says a newline; in JSON both are whitespace, and a space keeps the
// relayed event on one line). "id:", "retry:" and comment lines are
// ignored, and so is an event without data.
//
// The package also holds what every streaming adapter needs from its
// fasthttp.HostClient: DialIdle, the read timeout that bounds the silence
// of an upstream, and MarkTimeout, which tells a timeout from other
// transport errors.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
)

// MaxEvent is the largest event, and the largest line, a Stream accepts.
const MaxEvent = 4 << 20

// bufSize is the first size of a Stream's read buffer: events are a few
// hundred bytes and the buffer grows for larger ones. Small, because every
// open stream holds one.
const bufSize = 1024

var (
	// ErrClosed is returned by Next once Close was called, and given to the
	// body of a stream closed before its end.
	ErrClosed = errors.New("stream closed")
	// ErrTruncated is returned by Next when the body ended without the
	// stream's last event: its Done event, or, without one, any event.
	ErrTruncated = errors.New("SSE stream ended early")
	// ErrEventTooLarge is returned by Next for an event over MaxEvent bytes.
	ErrEventTooLarge = errors.New("SSE event larger than 4 MiB")
	// ErrLineTooLarge is returned by Next for a line over MaxEvent bytes.
	ErrLineTooLarge = errors.New("SSE line larger than 4 MiB")
)

// Buffers recycles the read buffers of Streams. The zero value is ready to
// use; a Buffers is safe for concurrent use and must not be copied. An
// adapter keeps one in its client, so that no pool is package state.
type Buffers struct{ p sync.Pool }

func (b *Buffers) get() []byte {
	if b != nil {
		if p, ok := b.p.Get().(*[]byte); ok {
			return *p
		}
	}
	return make([]byte, bufSize)
}

func (b *Buffers) put(buf []byte) {
	if b != nil && cap(buf) == bufSize {
		buf = buf[:bufSize]
		b.p.Put(&buf)
	}
}

// Event is one event of a stream. Name is the value of its "event:" line
// (nil without one); Data its data lines, joined with a space. Both are
// valid until the next call to Next.
type Event struct {
	Name []byte
	Data []byte
}

// Stream reads the events of one upstream response. Its zero value is
// unusable: call Init. Next must be called from one goroutine at a time;
// Close may be called from any goroutine, also while a Next is blocked.
// A Stream must not be copied after Init.
type Stream struct {
	resp *fasthttp.Response
	body fasthttp.ReadCloserWithError // nil: the body is in resp.Body()
	bufs *Buffers
	done string

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	scan int    // buf[r:scan] holds no newline
	name []byte // the name of the event being assembled
	ev   []byte // the data of the event being assembled
	eof  bool
	err  error // sticky

	mu       sync.Mutex
	reading  bool
	closed   bool
	released bool
}

// Init makes s read the body of resp, a response whose headers were read
// with resp.StreamBody set (a body fasthttp already read whole is read from
// memory). From then on s owns resp and releases it, once, after Close.
// Read buffers come from bufs (nil: allocated). done is the data of the
// event that ends the stream ("[DONE]" for OpenAI): Next returns io.EOF for
// it. With done empty the end is the caller's to find in the events, and a
// last line that the body ends without its newline still counts; with done
// set such a line is a truncated one and is dropped.
func (s *Stream) Init(resp *fasthttp.Response, bufs *Buffers, done string) {
	s.resp, s.bufs, s.done = resp, bufs, done
	if body, ok := resp.BodyStream().(fasthttp.ReadCloserWithError); ok {
		s.body = body
		s.buf = bufs.get()
		return
	}
	s.buf = resp.Body()
	s.w = len(s.buf)
	s.eof = true
}

// Next returns the next event that has data. It returns io.EOF after the
// done event, ErrTruncated when the body ends before it, ErrClosed once
// Close was called, ErrEventTooLarge or ErrLineTooLarge, or the error of
// the body's read (a transport error). Errors are sticky.
func (s *Stream) Next() (Event, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Event{}, ErrClosed
	}
	s.reading = true
	s.mu.Unlock()
	ev, err := s.next()
	s.mu.Lock()
	s.reading = false
	if s.closed {
		s.releaseLocked()
		if err == nil {
			ev, err = Event{}, ErrClosed
		}
	}
	s.mu.Unlock()
	return ev, err
}

func (s *Stream) next() (Event, error) {
	if s.err != nil {
		return Event{}, s.err
	}
	s.name, s.ev = s.name[:0], s.ev[:0]
	hasName, hasData := false, false
	for {
		nl := bytes.IndexByte(s.buf[s.scan:s.w], '\n')
		if nl >= 0 {
			nl += s.scan
		} else {
			s.scan = s.w // no newline up to here: fill need not search it again
		}
		if nl < 0 {
			switch {
			case s.eof && s.r < s.w && s.done == "":
				nl = s.w // a last line without its newline
			case s.eof && hasData:
				return s.event(hasName), nil
			case s.eof:
				s.err = ErrTruncated
				return Event{}, s.err
			default:
				if err := s.fill(); err != nil {
					s.err = err
					return Event{}, err
				}
				continue
			}
		}
		line := s.buf[s.r:nl]
		s.r = min(nl+1, s.w)
		s.scan = s.r
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if hasData {
				return s.event(hasName), nil
			}
			s.name, hasName = s.name[:0], false
			continue
		}
		if v, ok := field(line, "data:"); ok {
			if !hasData && s.done != "" && string(v) == s.done {
				s.err = io.EOF
				return Event{}, io.EOF
			}
			if hasData {
				s.ev = append(s.ev, ' ')
			}
			s.ev = append(s.ev, v...)
			hasData = true
			if len(s.ev) > MaxEvent {
				s.err = ErrEventTooLarge
				return Event{}, s.err
			}
		} else if v, ok := field(line, "event:"); ok {
			s.name, hasName = append(s.name[:0], v...), true
		}
	}
}

func (s *Stream) event(hasName bool) Event {
	ev := Event{Data: s.ev}
	if hasName {
		ev.Name = s.name
	}
	return ev
}

// field returns the value of line if it is the field named by prefix
// (with its colon), without the one space that may follow the colon.
func field(line []byte, prefix string) ([]byte, bool) {
	if len(line) < len(prefix) || string(line[:len(prefix)]) != prefix {
		return nil, false
	}
	v := line[len(prefix):]
	if len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	return v, true
}

// fill reads more bytes from the body, compacting or growing the buffer.
func (s *Stream) fill() error {
	if s.r > 0 {
		n := copy(s.buf, s.buf[s.r:s.w])
		s.scan -= s.r
		s.r, s.w = 0, n
	}
	if s.w == len(s.buf) {
		if len(s.buf) >= MaxEvent {
			return ErrLineTooLarge
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	n, err := s.body.Read(s.buf[s.w:])
	s.w += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if n > 0 {
			return nil
		}
		return err
	}
	return nil
}

// Close ends the stream: it closes the body with err (ErrClosed when err is
// nil and the body was not read to its end, so that the connection is not
// reused), which interrupts a blocked Next. The response and buffers are
// released once no Next is running. Calls after the first do nothing.
func (s *Stream) Close(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.body != nil {
		if err == nil && !s.eof {
			err = ErrClosed
		}
		_ = s.body.CloseWithError(err)
	}
	if !s.reading {
		s.releaseLocked()
	}
}

func (s *Stream) releaseLocked() {
	if s.released {
		return
	}
	s.released = true
	if s.body != nil {
		s.bufs.put(s.buf)
	}
	s.buf = nil
	fasthttp.ReleaseResponse(s.resp)
}

// DialIdle returns a fasthttp.HostClient Dial function that connects
// within 10 seconds and bounds the silence between two reads to timeout
// (none when timeout <= 0): before the first response byte and between two
// chunks of a stream, like nginx's proxy_read_timeout.
func DialIdle(timeout time.Duration) fasthttp.DialFunc {
	return func(addr string) (net.Conn, error) {
		conn, err := fasthttp.DialTimeout(addr, 10*time.Second)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: conn, timeout: timeout}, nil
	}
}

type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

// MarkTimeout returns err, a fasthttp transport error, wrapped with
// providers.ErrTimeout when it is a timeout (dial, TLS handshake, request
// or read deadline), and err itself otherwise.
func MarkTimeout(err error) error {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %v", providers.ErrTimeout, err)
	}
	return err
}
