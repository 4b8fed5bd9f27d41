package rag

import (
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Lexical analysis shared by the offline embedder (rag/hashembed) and the
// BM25 keyword index: words in lower case, without stop words, with a light
// plural stemmer (Harman's "S" stemmer). Language-neutral enough for
// English technical text; other languages simply keep their words whole.

// Terms appends the terms of text to dst and returns it.
func Terms(dst []string, text string) []string {
	start := -1
	for i, r := range text {
		word := unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_'
		switch {
		case word && start < 0:
			start = i
		case !word && start >= 0:
			dst = appendTerm(dst, text[start:i])
			start = -1
		}
	}
	if start >= 0 {
		dst = appendTerm(dst, text[start:])
	}
	return dst
}

func appendTerm(dst []string, w string) []string {
	if utf8.RuneCountInString(w) > 40 {
		return dst // base64, hashes: noise
	}
	w = strings.ToLower(w)
	if len(w) < 2 || stopWords[w] {
		return dst
	}
	return append(dst, Stem(w))
}

// Stem strips English plural endings: "libraries" → "library",
// "processes" → "process", "matches" → "match", "files" → "file"; "class",
// "status" and "analysis" stay.
func Stem(w string) string {
	n := len(w)
	switch {
	case n > 4 && strings.HasSuffix(w, "ies") && !strings.HasSuffix(w, "eies") && !strings.HasSuffix(w, "aies"):
		return w[:n-3] + "y"
	case n > 4 && (strings.HasSuffix(w, "sses") || strings.HasSuffix(w, "xes") || strings.HasSuffix(w, "ches") ||
		strings.HasSuffix(w, "shes") || strings.HasSuffix(w, "zes")):
		return w[:n-2]
	case n > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "us") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "is"):
		return w[:n-1]
	}
	return w
}

var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an and are as at be but by for from has have he her his i if in into is it its
		of on or our she so such than that the their them then there these they this those to was were will with
		we what when where which who whom why you your can could would should may might must do does did done
		not no nor been being am also any all each other some more most own same too very just only over under
		again further once here both few s t d ll m o re ve y about above after before below between during
		through up down out off until while how`) {
		m[w] = true
	}
	return m
}()

// BM25 parameters (the usual defaults).
const (
	bm25K1 = 1.2
	bm25B  = 0.75
)

type posting struct {
	slot int32
	tf   int32
}

// BM25 is an inverted index of texts identified by slot numbers, ranked by
// Okapi BM25. Slots are the caller's (the embedded vector store uses its
// record numbers); a removed slot stays in the postings until the caller
// rebuilds the index, and its statistics are taken out at once. It is not
// safe for concurrent use: the caller locks. The zero value is an empty
// index.
type BM25 struct {
	ids      map[string]int32
	postings [][]posting
	df       []int32
	lens     []int32 // by slot; -1: removed
	docs     int
	totalLen int64
	terms    []string // scratch
}

// Add indexes text under slot, which must be the next slot (Len()).
func (x *BM25) Add(slot int32, text string) {
	if x.ids == nil {
		x.ids = map[string]int32{}
	}
	for int(slot) >= len(x.lens) {
		x.lens = append(x.lens, -1)
	}
	x.terms = Terms(x.terms[:0], text)
	slices.Sort(x.terms)
	for i := 0; i < len(x.terms); {
		j := i + 1
		for j < len(x.terms) && x.terms[j] == x.terms[i] {
			j++
		}
		id, ok := x.ids[x.terms[i]]
		if !ok {
			id = int32(len(x.postings))
			x.ids[x.terms[i]] = id
			x.postings = append(x.postings, nil)
			x.df = append(x.df, 0)
		}
		x.postings[id] = append(x.postings[id], posting{slot: slot, tf: int32(j - i)})
		x.df[id]++
		i = j
	}
	x.lens[slot] = int32(len(x.terms))
	x.docs++
	x.totalLen += int64(len(x.terms))
}

// Remove takes slot, indexed from text, out of the statistics and the results.
func (x *BM25) Remove(slot int32, text string) {
	if int(slot) >= len(x.lens) || x.lens[slot] < 0 {
		return
	}
	x.terms = Terms(x.terms[:0], text)
	slices.Sort(x.terms)
	x.terms = slices.Compact(x.terms)
	for _, t := range x.terms {
		if id, ok := x.ids[t]; ok {
			x.df[id]--
		}
	}
	x.docs--
	x.totalLen -= int64(x.lens[slot])
	x.lens[slot] = -1
}

// Scored is a slot with its score.
type Scored struct {
	Slot  int32
	Score float32
}

// Search returns the k best slots for query (that accept allows, when not
// nil), best first. scores is scratch space reused across calls (may be nil).
func (x *BM25) Search(query string, k int, accept func(slot int32) bool, scores []float32) ([]Scored, []float32) {
	if x.docs == 0 || k <= 0 {
		return nil, scores
	}
	q := Terms(nil, query)
	slices.Sort(q)
	q = slices.Compact(q)
	if cap(scores) < len(x.lens) {
		scores = make([]float32, len(x.lens))
	}
	scores = scores[:len(x.lens)]
	clear(scores)
	avg := float64(x.totalLen) / float64(x.docs)
	var touched []int32
	n := float64(x.docs)
	for _, t := range q {
		id, ok := x.ids[t]
		if !ok || x.df[id] <= 0 {
			continue
		}
		df := float64(x.df[id])
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, p := range x.postings[id] {
			l := x.lens[p.slot]
			if l < 0 {
				continue
			}
			tf := float64(p.tf)
			s := idf * tf * (bm25K1 + 1) / (tf + bm25K1*(1-bm25B+bm25B*float64(l)/avg))
			if scores[p.slot] == 0 {
				touched = append(touched, p.slot)
			}
			scores[p.slot] += float32(s)
		}
	}
	top := newTopK(k)
	for _, s := range touched {
		if accept != nil && !accept(s) {
			continue
		}
		top.push(s, scores[s])
	}
	return top.sorted(), scores
}

// topK keeps the k best (slot, score) pairs seen: a min-heap on score.
type topK struct {
	k int
	h []Scored
}

func newTopK(k int) *topK { return &topK{k: k, h: make([]Scored, 0, k)} }

// push offers a candidate; ties keep the lower slot (stable results).
func (t *topK) push(slot int32, score float32) {
	if len(t.h) < t.k {
		t.h = append(t.h, Scored{slot, score})
		t.up(len(t.h) - 1)
		return
	}
	if !t.less(t.h[0], Scored{slot, score}) {
		return
	}
	t.h[0] = Scored{slot, score}
	t.down(0)
}

// less: a ranks below b.
func (t *topK) less(a, b Scored) bool {
	if a.Score != b.Score {
		return a.Score < b.Score
	}
	return a.Slot > b.Slot
}

func (t *topK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(t.h[i], t.h[p]) {
			return
		}
		t.h[i], t.h[p] = t.h[p], t.h[i]
		i = p
	}
}

func (t *topK) down(i int) {
	n := len(t.h)
	for {
		l, m := 2*i+1, i
		if l < n && t.less(t.h[l], t.h[m]) {
			m = l
		}
		if r := l + 1; r < n && t.less(t.h[r], t.h[m]) {
			m = r
		}
		if m == i {
			return
		}
		t.h[i], t.h[m] = t.h[m], t.h[i]
		i = m
	}
}

// sorted returns the kept pairs best first.
func (t *topK) sorted() []Scored {
	out := slices.Clone(t.h)
	slices.SortFunc(out, func(a, b Scored) int {
		switch {
		case t.less(b, a):
			return -1
		case t.less(a, b):
			return 1
		}
		return 0
	})
	return out
}

// TopK keeps the k best-scored slots offered to Push; Sorted returns them
// best first. It is exported for the vector stores' scans.
type TopK struct{ t topK }

// NewTopK returns an empty TopK for k results.
func NewTopK(k int) *TopK { return &TopK{t: *newTopK(k)} }

// Push offers slot with score.
func (t *TopK) Push(slot int32, score float32) { t.t.push(slot, score) }

// Min is the lowest score kept, or -Inf while fewer than k are kept.
func (t *TopK) Min() float32 {
	if len(t.t.h) < t.t.k {
		return float32(math.Inf(-1))
	}
	return t.t.h[0].Score
}

// Sorted returns the kept slots, best first.
func (t *TopK) Sorted() []Scored { return t.t.sorted() }
