package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTPTarget describes the requests an HTTPCaller sends.
type HTTPTarget struct {
	// URL to POST to, e.g. "http://127.0.0.1:8080/v1/chat/completions".
	// Only http on one host:port.
	URL string
	// Body of every request (JSON).
	Body []byte
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// Stream reads the answer as server-sent events: it counts data events,
	// notes when the first one with content arrived (time to first token),
	// and fails a stream that ends without "data: [DONE]" or carries an
	// error event.
	Stream bool
	// MaxConns bounds the open connections; default 1024.
	MaxConns int
}

// HTTPCaller sends one HTTPTarget request per Call over a pool of
// keep-alive connections. It is safe for concurrent use.
type HTTPCaller struct {
	t     HTTPTarget
	hc    *fasthttp.HostClient
	path  string
	host  string
	state sync.Pool // *callState
}

var _ Caller = (*HTTPCaller)(nil)

type callState struct {
	req  *fasthttp.Request
	resp *fasthttp.Response
	sc   sseScanner
}

// NewHTTPCaller returns a caller for t. Close it to drop its idle connections.
func NewHTTPCaller(t HTTPTarget) (*HTTPCaller, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, fmt.Errorf("load: target URL: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("load: target URL %q: want http://host:port/path", t.URL)
	}
	if t.MaxConns <= 0 {
		t.MaxConns = 1024
	}
	c := &HTTPCaller{
		t:    t,
		path: u.RequestURI(),
		host: u.Host,
		hc: &fasthttp.HostClient{
			Addr:                u.Host,
			Name:                "mtaibench",
			MaxConns:            t.MaxConns,
			MaxConnWaitTimeout:  10 * time.Second,
			MaxIdleConnDuration: time.Minute,
			ConnPoolStrategy:    fasthttp.LIFO,
			ReadBufferSize:      16 << 10,
			MaxResponseBodySize: 64 << 20,
			StreamResponseBody:  t.Stream,
		},
	}
	c.state.New = func() any {
		// Owned by the pool for the caller's life, so not from fasthttp's Acquire pools.
		req := new(fasthttp.Request)
		req.SetRequestURI(t.URL)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		if t.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+t.APIKey)
		}
		if t.Stream {
			req.Header.Set("Accept", "text/event-stream")
		}
		req.SetBody(t.Body)
		return &callState{req: req, resp: new(fasthttp.Response), sc: sseScanner{buf: make([]byte, 16<<10)}}
	}
	return c, nil
}

// Close closes the idle connections.
func (c *HTTPCaller) Close() { c.hc.CloseIdleConnections() }

// StatusError is a response with an unexpected status.
type StatusError struct {
	Status int
	Body   string // the first bytes of the body
}

func (e *StatusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

// Errors a stream can end with.
var (
	ErrNoDone     = errors.New("stream ended without data: [DONE]")
	ErrErrorEvent = errors.New("stream carried an error event")
	ErrEmptyBody  = errors.New("empty response body")
)

// Call sends one request and reads the whole answer before returning.
func (c *HTTPCaller) Call(deadline time.Time, o *Outcome) error {
	st := c.state.Get().(*callState)
	defer c.state.Put(st)
	resp := st.resp
	if err := c.hc.DoDeadline(st.req, resp, deadline); err != nil {
		return err
	}
	o.Status = resp.StatusCode()
	if !c.t.Stream {
		body := resp.Body()
		if o.Status != fasthttp.StatusOK {
			return &StatusError{Status: o.Status, Body: clip(body)}
		}
		if len(body) == 0 {
			return ErrEmptyBody
		}
		return nil
	}
	body := resp.BodyStream()
	if body == nil { // a body that was read whole
		if o.Status != fasthttp.StatusOK {
			return &StatusError{Status: o.Status, Body: clip(resp.Body())}
		}
		return readEvents(bytes.NewReader(resp.Body()), &st.sc, o)
	}
	if o.Status != fasthttp.StatusOK {
		var b [256]byte
		n, _ := io.ReadFull(body, b[:])
		_ = resp.CloseBodyStream()
		return &StatusError{Status: o.Status, Body: clip(b[:n])}
	}
	err := readEvents(body, &st.sc, o)
	if cerr := resp.CloseBodyStream(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

func clip(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// readEvents reads SSE events from r until EOF and fills o.
func readEvents(r io.Reader, sc *sseScanner, o *Outcome) error {
	sc.reset(r)
	done, failed := false, false
	for {
		ev, err := sc.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		for line := range bytes.Lines(ev) {
			line = bytes.TrimRight(line, "\r\n")
			switch {
			case bytes.HasPrefix(line, prefixData):
				data := bytes.TrimPrefix(line[len(prefixData):], []byte(" "))
				if bytes.Equal(data, dataDone) {
					done = true
					continue
				}
				o.Events++
				if bytes.HasPrefix(data, prefixError) {
					failed = true
				}
				if o.FirstToken.IsZero() && hasContent(data) {
					o.FirstToken = time.Now()
				}
			case bytes.Equal(line, eventError):
				failed = true
			}
		}
	}
	switch {
	case failed:
		return ErrErrorEvent
	case !done:
		return ErrNoDone
	}
	return nil
}

var (
	prefixData   = []byte("data:")
	prefixError  = []byte(`{"error"`)
	dataDone     = []byte("[DONE]")
	eventError   = []byte("event: error")
	keyContent   = []byte(`"content"`)
	crlfEventEnd = []byte("\n\r\n")
	lfEventEnd   = []byte("\n\n")
)

// hasContent reports whether a chunk's JSON has a non-empty "content" string.
func hasContent(data []byte) bool {
	for {
		i := bytes.Index(data, keyContent)
		if i < 0 {
			return false
		}
		data = data[i+len(keyContent):]
		rest := bytes.TrimLeft(data, " \t")
		if len(rest) > 0 && rest[0] == ':' {
			rest = bytes.TrimLeft(rest[1:], " \t")
			if len(rest) > 1 && rest[0] == '"' && rest[1] != '"' {
				return true
			}
		}
	}
}

// sseScanner splits a byte stream into SSE events (separated by a blank
// line, LF or CRLF). It reuses its buffer; an event is valid until the next call.
type sseScanner struct {
	r          io.Reader
	buf        []byte
	start, end int
	eof        bool
}

const maxEvent = 4 << 20

func (s *sseScanner) reset(r io.Reader) {
	s.r, s.start, s.end, s.eof = r, 0, 0, false
}

func (s *sseScanner) next() ([]byte, error) {
	for {
		pending := s.buf[s.start:s.end]
		if i, n := eventEnd(pending); i >= 0 {
			s.start += i + n
			return pending[:i+1], nil
		}
		if s.eof {
			if len(bytes.TrimSpace(pending)) > 0 {
				s.start = s.end
				return pending, nil // an unterminated last event
			}
			return nil, io.EOF
		}
		if s.start > 0 {
			copy(s.buf, pending)
			s.end -= s.start
			s.start = 0
		}
		if s.end == len(s.buf) {
			if len(s.buf) >= maxEvent {
				return nil, fmt.Errorf("SSE event larger than %d bytes", maxEvent)
			}
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err == io.EOF {
			s.eof = true
		} else if err != nil {
			return nil, err
		}
	}
}

// eventEnd returns the index of the newline that ends the first event in b
// and the length of the separator after that index's line, or -1.
func eventEnd(b []byte) (int, int) {
	i := bytes.Index(b, lfEventEnd)
	j := bytes.Index(b, crlfEventEnd)
	switch {
	case i < 0 && j < 0:
		return -1, 0
	case j < 0 || (i >= 0 && i < j):
		return i, len(lfEventEnd)
	default:
		return j, len(crlfEventEnd)
	}
}

// HeldStreams is a set of streams held open by HoldStreams.
type HeldStreams struct {
	conns []net.Conn
	// Opened is the number of streams whose first event arrived.
	Opened int
	// Failed streams, and the first error among them.
	Failed     int
	FirstError string
}

// HoldStreams opens up to n streams of t at once, parallel at a time, each on
// its own connection, and returns once each has received its first event,
// failed, or the deadline passed. It writes requests by hand so that a held
// stream costs the benchmark a connection and nothing else. The streams stay
// open until Close.
func HoldStreams(t HTTPTarget, n, parallel int, deadline time.Time) *HeldStreams {
	h := &HeldStreams{}
	u, err := url.Parse(t.URL)
	if err != nil {
		h.Failed, h.FirstError = n, err.Error()
		return h
	}
	var req []byte
	req = fmt.Appendf(req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: %d\r\n",
		u.RequestURI(), u.Host, len(t.Body))
	if t.APIKey != "" {
		req = fmt.Appendf(req, "Authorization: Bearer %s\r\n", t.APIKey)
	}
	req = append(req, "\r\n"...)
	req = append(req, t.Body...)

	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range max(1, parallel) {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for range jobs {
				c, err := openStream(u.Host, req, buf, deadline)
				mu.Lock()
				if err != nil {
					h.Failed++
					if h.FirstError == "" {
						h.FirstError = err.Error()
					}
				} else {
					h.conns = append(h.conns, c)
					h.Opened++
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < n; i++ {
		if time.Now().After(deadline) {
			mu.Lock()
			h.Failed += n - i
			if h.FirstError == "" {
				h.FirstError = "deadline passed before the stream could be opened"
			}
			mu.Unlock()
			break
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return h
}

func openStream(addr string, req, buf []byte, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		return fail(err)
	}
	got := 0
	for {
		if got == len(buf) {
			return fail(errors.New("no SSE event in the first 4 KiB of the answer"))
		}
		m, err := c.Read(buf[got:])
		got += m
		head := buf[:got]
		if got >= 12 && !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
			return fail(fmt.Errorf("answer %q", clip(head)))
		}
		if i := bytes.Index(head, []byte("\r\n\r\n")); i >= 0 {
			if j := bytes.Index(head[i:], prefixData); j >= 0 && bytes.Contains(head[i+j:], lfEventEnd) {
				_ = c.SetDeadline(time.Time{})
				return c, nil
			}
		}
		if err != nil {
			return fail(err)
		}
	}
}

// Close closes every held stream's connection and returns how many there were.
func (h *HeldStreams) Close() int {
	for _, c := range h.conns {
		_ = c.Close()
	}
	n := len(h.conns)
	h.conns = nil
	return n
}
