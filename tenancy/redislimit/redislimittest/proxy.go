// Package redislimittest helps test the Redis limiter against a real Redis:
// a TCP proxy that can cut the connection to it, and unique key prefixes.
package redislimittest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"sync"
	"testing"
)

// Addr returns the Redis address for tests: $MTAI_TEST_REDIS_ADDR, else
// 127.0.0.1:6379. It skips the test when nothing listens there.
func Addr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("MTAI_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Skipf("no Redis at %s: %v", addr, err)
	}
	_ = c.Close()
	return addr
}

// Prefix returns a key prefix that no other test uses, e.g.
// "mtaitest:3f9a0c1b2d4e:". Tests never flush the database: their keys
// expire by themselves.
func Prefix(t testing.TB) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "mtaitest:" + hex.EncodeToString(b[:]) + ":"
}

// Mode is how a Proxy treats connections.
type Mode int

// Proxy modes.
const (
	// Forward relays bytes both ways.
	Forward Mode = iota
	// Refuse closes every connection, open ones included, as a crashed
	// server would.
	Refuse
	// Blackhole keeps connections open but relays nothing, as a network
	// partition would: the client's reads time out.
	Blackhole
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a Redis server, whose mode
// a test changes to cut Redis off mid-load. Safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  Mode
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewProxy starts a proxy to target, closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the proxy's mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode changes how the proxy behaves: Refuse closes every open
// connection; Blackhole keeps them open but silent from then on.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	var open []net.Conn
	if m == Refuse {
		for c := range p.conns {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.SetMode(Refuse)
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == Refuse {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		mode := p.mode
		p.mu.Unlock()
		switch mode {
		case Refuse:
			_ = c.Close()
			continue
		case Blackhole:
			if !p.track(c) {
				_ = c.Close()
				continue
			}
			p.wg.Add(1)
			go func() { // hold it open, read and drop, until it is closed
				defer p.wg.Done()
				defer p.untrack(c)
				_, _ = io.Copy(io.Discard, c)
			}()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c) || !p.track(up) {
			p.untrack(c)
			p.untrack(up)
			continue
		}
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			defer p.untrack(src)
			defer p.untrack(dst)
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					switch p.Mode() {
					case Forward:
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					case Blackhole: // swallowed
					case Refuse:
						return
					}
				}
				if err != nil {
					return
				}
			}
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}
