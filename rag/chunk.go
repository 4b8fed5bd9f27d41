package rag

import (
	"strings"
	"unicode"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// cl100kPattern is tiktoken's split pattern for cl100k_base (the encoding
// of OpenAI's embedding models), as in tiktoken-go's encoding.go.
const cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// Chunker splits text into chunks of at most a given number of tokens
// (cl100k_base, loaded from the tables embedded in tiktoken-go-loader:
// nothing is downloaded). It is safe for concurrent use.
type Chunker struct {
	enc *tiktoken.Tiktoken
}

// NewChunker loads the tokenizer (80–300 ms).
func NewChunker() (*Chunker, error) {
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe("cl100k_base.tiktoken")
	if err != nil {
		return nil, err
	}
	special := map[string]int{tiktoken.ENDOFTEXT: 100257, tiktoken.FIM_PREFIX: 100258,
		tiktoken.FIM_MIDDLE: 100259, tiktoken.FIM_SUFFIX: 100260, tiktoken.ENDOFPROMPT: 100276}
	bpe, err := tiktoken.NewCoreBPE(ranks, special, cl100kPattern)
	if err != nil {
		return nil, err
	}
	set := make(map[string]any, len(special))
	for k := range special {
		set[k] = true
	}
	enc := tiktoken.NewTiktoken(bpe, &tiktoken.Encoding{Name: "cl100k_base", PatStr: cl100kPattern,
		MergeableRanks: ranks, SpecialTokens: special}, set)
	return &Chunker{enc: enc}, nil
}

// Count returns the number of tokens of s.
func (c *Chunker) Count(s string) int {
	return len(c.enc.EncodeOrdinary(s))
}

// unit is a piece of text that is never split further unless it alone is
// larger than a chunk: a paragraph, or a sentence of a long paragraph.
type unit struct {
	text    string
	tokens  int
	sep     string // what joins it to the unit before: "\n\n" or " "
	heading string // heading path in force
	// head: the unit is a heading line, which should start a chunk.
	head bool
}

// Chunk splits text into chunks of at most size tokens, where neighbouring
// chunks of one section share about overlap tokens (whole sentences or
// paragraphs when they fit). It respects the text's structure: a chunk
// breaks at paragraphs (blank lines) and sentences before it breaks inside
// one, and a heading (Markdown "#" lines; Extract writes HTML headings so)
// starts a new chunk unless the chunk so far is small. Every chunk carries
// the path of headings above it. size must be positive and overlap smaller
// than size.
func (c *Chunker) Chunk(text string, size, overlap int) []Chunk {
	if size < 1 {
		size = 1
	}
	overlap = max(0, min(overlap, size-1))
	units := c.units(text, size)
	var (
		chunks  []Chunk
		cur     []unit
		curToks int
	)
	flush := func() {
		if len(cur) == 0 {
			return
		}
		var b strings.Builder
		for i, u := range cur {
			if i > 0 {
				b.WriteString(u.sep)
			}
			b.WriteString(u.text)
		}
		chunks = append(chunks, Chunk{Index: len(chunks), Heading: cur[0].heading, Text: b.String(), Tokens: curToks})
	}
	for _, u := range units {
		// A heading starts a new chunk, unless what we have is small (a
		// chunk of headings only would retrieve nothing useful).
		if u.head && curToks > size/4 {
			flush()
			cur, curToks = cur[:0], 0
		}
		if curToks+u.tokens+1 > size && len(cur) > 0 {
			flush()
			// Carry the tail over, within the same section only.
			tail, tt := c.tail(cur, overlap, u.heading)
			cur, curToks = tail, tt
			if curToks+u.tokens+1 > size {
				cur, curToks = cur[:0], 0
			}
		}
		if len(cur) == 0 {
			u.sep = ""
		}
		cur = append(cur, u)
		curToks += u.tokens
		if len(cur) > 1 {
			curToks++ // the separator
		}
	}
	flush()
	return chunks
}

// tail returns the last units of cur that fit in overlap tokens and belong
// to section heading; when the last unit alone is too long, its last
// overlap tokens cut at a word.
func (c *Chunker) tail(cur []unit, overlap int, heading string) ([]unit, int) {
	if overlap == 0 {
		return nil, 0
	}
	n, toks := 0, 0
	for i := len(cur) - 1; i >= 0; i-- {
		u := cur[i]
		if u.heading != heading || u.head || toks+u.tokens+1 > overlap {
			break
		}
		n++
		toks += u.tokens + 1
	}
	if n > 0 {
		out := append([]unit(nil), cur[len(cur)-n:]...)
		out[0].sep = ""
		return out, toks - 1
	}
	last := cur[len(cur)-1]
	if last.heading != heading || last.head {
		return nil, 0
	}
	toksOf := c.enc.EncodeOrdinary(last.text)
	if len(toksOf) <= overlap {
		return []unit{{text: last.text, tokens: len(toksOf), heading: heading}}, len(toksOf)
	}
	s := c.enc.Decode(toksOf[len(toksOf)-overlap:])
	// start at a word
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 && i < len(s)/2 {
		s = strings.TrimLeftFunc(s[i:], unicode.IsSpace)
	}
	if s == "" {
		return nil, 0
	}
	return []unit{{text: s, tokens: c.Count(s), heading: heading}}, c.Count(s)
}

// units splits text into headings and paragraphs, and paragraphs longer
// than size into sentences, and sentences longer than size into pieces of
// size tokens.
func (c *Chunker) units(text string, size int) []unit {
	var (
		units []unit
		path  []string // headings by level
		para  []string
		fence bool
	)
	headingPath := func() string {
		var parts []string
		for _, h := range path {
			if h != "" {
				parts = append(parts, h)
			}
		}
		return strings.Join(parts, " > ")
	}
	endPara := func() {
		if len(para) == 0 {
			return
		}
		p := strings.TrimSpace(strings.Join(para, "\n"))
		para = para[:0]
		if p == "" {
			return
		}
		units = c.appendParagraph(units, p, size, headingPath())
	}
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = !fence
			para = append(para, line)
			continue
		}
		if fence {
			para = append(para, line)
			continue
		}
		if level := headingLevel(line); level > 0 {
			endPara()
			title := strings.TrimSpace(strings.TrimRight(strings.TrimSpace(line[level:]), "#"))
			for len(path) < level {
				path = append(path, "")
			}
			path = append(path[:level-1], title)
			units = append(units, unit{text: trimmed, tokens: c.Count(trimmed), sep: "\n\n", heading: headingPath(), head: true})
			continue
		}
		if trimmed == "" {
			endPara()
			continue
		}
		para = append(para, line)
	}
	endPara()
	return units
}

// headingLevel returns the level of a Markdown ATX heading line ("## x" is
// 2), or 0.
func headingLevel(line string) int {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n > 6 || n >= len(line) || (line[n] != ' ' && line[n] != '\t') {
		return 0
	}
	return n
}

func (c *Chunker) appendParagraph(units []unit, p string, size int, heading string) []unit {
	toks := c.Count(p)
	if toks < size {
		return append(units, unit{text: p, tokens: toks, sep: "\n\n", heading: heading})
	}
	sep := "\n\n"
	for _, s := range sentences(p) {
		st := c.enc.EncodeOrdinary(s)
		if len(st) < size {
			units = append(units, unit{text: s, tokens: len(st), sep: sep, heading: heading})
			sep = " "
			continue
		}
		for i := 0; i < len(st); i += size - 1 {
			piece := st[i:min(i+size-1, len(st))]
			units = append(units, unit{text: c.enc.Decode(piece), tokens: len(piece), sep: sep, heading: heading})
			sep = ""
		}
		sep = " "
	}
	return units
}

// sentences splits a paragraph after ". ", "! ", "? " and at line breaks.
func sentences(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '.', '!', '?':
			if i+1 < len(p) && (p[i+1] == ' ' || p[i+1] == '\n') {
				out = append(out, strings.TrimSpace(p[start:i+1]))
				start = i + 1
			}
		case '\n':
			if s := strings.TrimSpace(p[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(p[start:]); s != "" {
		out = append(out, s)
	}
	return out
}
