package gateway

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestNoGoroutineLeakAfterDisconnects opens streams to a silent upstream,
// closes the clients, and checks that every goroutine the streams used
// (connection, watcher, upstream reader) is gone.
func TestNoGoroutineLeakAfterDisconnects(t *testing.T) {
	upstream, cancelled := blockingUpstream(t)
	s := openaiServer(t, upstream, time.Minute)
	base := start(t, s)
	before := runtime.NumGoroutine()
	const n = 50
	conns := make([]interface{ Close() error }, 0, n)
	for i := 0; i < n; i++ {
		conn, br := rawStream(t, base, "m")
		readUntil(t, br, `"content":"hel"`)
		conns = append(conns, conn)
	}
	buf := make([]byte, 4<<20)
	if open := streamGoroutines(string(buf[:runtime.Stack(buf, true)])); open < n {
		t.Fatalf("%d stream goroutines seen with %d streams open: the count below would prove nothing", open, n)
	}
	for _, c := range conns {
		c.Close()
	}
	for i := 0; i < n; i++ {
		select {
		case <-cancelled:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d upstream requests cancelled", i, n)
		}
	}
	waitFor(t, func() bool { return s.openStreams() == 0 }, "every stream to be released")
	// fasthttp keeps idle worker goroutines for reuse (10 s), so count the
	// goroutines that belong to a stream, not all of them.
	var stacks string
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if streamGoroutines(stacks) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := streamGoroutines(stacks); n > 0 {
		t.Fatalf("%d goroutines of closed streams are still alive (%d before, %d now):\n%s", n, before, runtime.NumGoroutine(), stacks)
	}
}

// streamGoroutines counts goroutines whose stack is in the relay, its
// disconnect watcher or an upstream stream read.
func streamGoroutines(stacks string) int {
	n := 0
	for _, g := range strings.Split(stacks, "\n\n") {
		if strings.Contains(g, "gateway.(*relay)") || strings.Contains(g, "sse.(*Stream)") {
			n++
		}
	}
	return n
}
