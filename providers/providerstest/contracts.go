// Package providerstest holds fakes for testing the providers and the
// gateway against OpenAI's wire format: Upstream, a real HTTP server on
// 127.0.0.1 that answers from the shared contract samples, and helpers to
// find and read those samples and to split SSE transcripts.
package providerstest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ContractsDir returns the shared contracts folder: the folder "shared/contracts"
// beside the repository, found by walking up from the working directory to the
// folder that holds go.mod. A test that needs it fails (never skips) when it
// is missing, since CI always lays shared/ beside the clone.
func ContractsDir(t testing.TB) string {
	t.Helper()
	dir, err := contractsDir()
	if err != nil {
		t.Fatalf("providerstest: %v", err)
	}
	return dir
}

func contractsDir() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", fmt.Errorf("no go.mod above %s: cannot locate ../shared/contracts", wd)
		}
		root = parent
	}
	dir := filepath.Join(filepath.Dir(root), "shared", "contracts")
	if _, err := os.Stat(filepath.Join(dir, "openai-openapi.yaml")); err != nil {
		return "", fmt.Errorf("the shared contracts are missing: want %s/openai-openapi.yaml beside the repository (%s); "+
			"clone or copy shared/ next to the repo: %w", dir, root, err)
	}
	return dir, nil
}

// Sample returns the content of samples/<name> in the contracts folder,
// e.g. Sample(t, "openai/chat-stream-text.sse"). It fails t when the file
// cannot be read.
func Sample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ContractsDir(t), "samples", filepath.FromSlash(name)))
	if err != nil {
		t.Fatalf("providerstest: sample %s: %v", name, err)
	}
	return b
}

// Done is the payload of the SSE event that ends an OpenAI stream.
const Done = "[DONE]"

// Events splits an SSE transcript into the data payloads of its events, in
// order ("[DONE]" included as Done). An event with several data lines has
// them joined with "\n"; comment, event:, id: and retry: lines are ignored.
// A last event without its blank line is still returned.
func Events(transcript []byte) [][]byte {
	var out [][]byte
	var ev []byte
	has := false
	for _, line := range bytes.Split(transcript, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			if has {
				out = append(out, ev)
			}
			ev, has = nil, false
			continue
		}
		payload, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue
		}
		payload = bytes.TrimPrefix(payload, []byte(" "))
		if has {
			ev = append(ev, '\n')
		}
		ev = append(ev, payload...)
		has = true
	}
	if has {
		out = append(out, ev)
	}
	return out
}

// ErrBadFraming is returned by StrictEvents for a body that is not a
// sequence of "data: <payload>\n\n" events.
var ErrBadFraming = errors.New("SSE framing")

// StrictEvents parses a chat-completions SSE body as OpenAI frames it: every
// event is exactly one "data: " line followed by a blank line ("\n\n"), with
// no event:, id:, retry: or comment lines, and no bytes after the last
// event. It returns the payloads, or an error wrapping ErrBadFraming that
// says where the body departs from that.
func StrictEvents(body []byte) ([][]byte, error) {
	var out [][]byte
	rest := body
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\n\n"))
		if end < 0 {
			return out, fmt.Errorf("%w: event %d is not terminated by a blank line: %.80q", ErrBadFraming, len(out), rest)
		}
		ev := rest[:end]
		rest = rest[end+2:]
		payload, ok := bytes.CutPrefix(ev, []byte("data: "))
		if !ok {
			return out, fmt.Errorf("%w: event %d does not start with \"data: \": %.80q", ErrBadFraming, len(out), ev)
		}
		if bytes.ContainsAny(payload, "\r\n") {
			return out, fmt.Errorf("%w: event %d has more than one line: %.80q", ErrBadFraming, len(out), ev)
		}
		out = append(out, payload)
	}
	return out, nil
}
