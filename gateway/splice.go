package gateway

import (
	"github.com/mtai-dev/mtai/providers"
)

// edit replaces body[at:end] with text (an insertion when at == end).
type edit struct {
	at, end int
	text    []byte
	// model: text holds the model name's content at text[mOff:mOff+mLen].
	model      bool
	mOff, mLen int
}

// splicer builds the upstream body from the client's bytes and a few edits,
// without re-encoding anything else. Its buffers are reused across requests.
type splicer struct {
	edits   [4]edit
	n       int
	scratch []byte // holds the text of edits
	out     []byte
}

func (s *splicer) reset() {
	s.n = 0
	s.scratch = s.scratch[:0]
	s.out = s.out[:0]
}

func (s *splicer) add(e edit) {
	// keep edits sorted by position (there are at most four)
	i := s.n
	for i > 0 && s.edits[i-1].at > e.at {
		s.edits[i] = s.edits[i-1]
		i--
	}
	s.edits[i] = e
	s.n++
}

// apply returns the edited body and the model content's bounds in it.
// Without edits it returns body itself.
func (s *splicer) apply(body []byte, modelStart, modelEnd int) ([]byte, int, int) {
	if s.n == 0 {
		return body, modelStart, modelEnd
	}
	out := s.out[:0]
	pos := 0
	ms, me := 0, 0
	for _, e := range s.edits[:s.n] {
		if modelEnd > 0 && modelStart >= pos && modelEnd <= e.at {
			ms, me = len(out)+modelStart-pos, len(out)+modelEnd-pos
		}
		out = append(out, body[pos:e.at]...)
		if e.model {
			ms, me = len(out)+e.mOff, len(out)+e.mOff+e.mLen
		}
		out = append(out, e.text...)
		pos = e.end
	}
	if modelEnd > 0 && modelStart >= pos {
		ms, me = len(out)+modelStart-pos, len(out)+modelEnd-pos
	}
	out = append(out, body[pos:]...)
	s.out = out
	return out, ms, me
}

// text stores b in the splicer's scratch and returns the stored copy.
func (s *splicer) text(parts ...string) []byte {
	start := len(s.scratch)
	for _, p := range parts {
		s.scratch = append(s.scratch, p...)
	}
	return s.scratch[start:len(s.scratch):len(s.scratch)]
}

// jsonString stores prefix, v as a quoted JSON string, and suffix; it
// returns the stored text and the bounds of v's escaped content in it.
func (s *splicer) jsonString(prefix, v, suffix string) (text []byte, off, n int) {
	start := len(s.scratch)
	s.scratch = append(s.scratch, prefix...)
	s.scratch = providers.AppendJSONString(s.scratch, v)
	s.scratch = append(s.scratch, suffix...)
	text = s.scratch[start:len(s.scratch):len(s.scratch)]
	return text, len(prefix) + 1, len(text) - len(prefix) - len(suffix) - 2
}
