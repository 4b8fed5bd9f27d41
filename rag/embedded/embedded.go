// Package embedded is mtai's embedded vector store: no server, persisted in
// the data dir (MTAI_DATA_DIR), one directory per vector space (embedder)
// and per tenant, one segment file per document. Deleting a document
// removes its file: nothing of it stays on disk.
//
// A tenant's chunks are loaded in memory on first use. Search is exact for
// small tenants and for searches filtered to documents. For larger tenants
// it scans 2-bit codes of the vectors (per component: its sign, and whether
// it is large, above the vector's RMS; per vector: the mean magnitude of its
// small and of its large components), scored against the full-precision
// query through byte lookup tables (asymmetric distance), then re-ranks the
// best candidates with the exact inner product. The tests measure its
// recall against exact search (≥ 0.95 at k = 10 is required). The store
// also ranks chunks by BM25 (the rag.KeywordSearcher ability), which the
// rag.Service mixes in.
package embedded

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mtai-dev/mtai/rag"
)

var (
	_ rag.VectorStore     = (*Store)(nil)
	_ rag.KeywordSearcher = (*Store)(nil)
)

// Tuning of the approximate scan.
const (
	// ExactBelow: tenants with fewer live chunks are searched exactly.
	ExactBelow = 4096
	// rerankMin and rerankPerK: how many candidates of the 2-bit scan are
	// re-ranked exactly: max(rerankMin, rerankPerK·k).
	rerankMin  = 512
	rerankPerK = 50
	// parallelAbove: scans of more codes are split over two goroutines.
	parallelAbove = 32768
	// compactRatio: a tenant whose dead slots exceed this share (and 256)
	// is rebuilt.
	compactRatio = 0.25
)

// Store is the embedded vector store of one vector space. It is safe for
// concurrent use; Close it when done (it holds no open files between
// calls, so Close only forgets the loaded tenants).
type Store struct {
	dir   string
	dim   int
	words int // uint64 words of a bit plane (one bit per component)

	mu      sync.Mutex
	tenants map[int64]*tenant
}

var spaceName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Open returns the store of vector space space (an embedder ID) of vectors
// of dim, under root (e.g. $MTAI_DATA_DIR/rag/vectors), creating its
// directory.
func Open(root, space string, dim int) (*Store, error) {
	if dim <= 0 {
		return nil, fmt.Errorf("embedded: dimension %d", dim)
	}
	dir := filepath.Join(root, spaceName.ReplaceAllString(space, "_"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return &Store{dir: dir, dim: dim, words: (dim + 63) / 64, tenants: map[int64]*tenant{}}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close forgets the loaded tenants.
func (s *Store) Close() error {
	s.mu.Lock()
	s.tenants = map[int64]*tenant{}
	s.mu.Unlock()
	return nil
}

// tenant is one tenant's chunks in memory. Slots are append-only until a
// compaction renumbers them.
type tenant struct {
	mu     sync.RWMutex
	loaded bool
	err    error
	dir    string

	doc     []int64
	chunk   []int32
	heading []string
	text    []string
	vecs    []float32 // slot·dim
	// codes: slot·3·words: the bit planes sign (component ≥ 0), large
	// positive and large negative (|component| ≥ the vector's RMS)
	codes []uint64
	// levels: slot·2: mean magnitude of the small and of the large components
	levels []float32
	dead   []bool
	ndead  int
	slots  map[int64][]int32 // document → its slots
	names  map[int64]string
	bm25   rag.BM25
}

func (s *Store) tenant(id int64) (*tenant, error) {
	s.mu.Lock()
	t := s.tenants[id]
	if t == nil {
		t = &tenant{dir: filepath.Join(s.dir, strconv.FormatInt(id, 10))}
		s.tenants[id] = t
	}
	s.mu.Unlock()
	t.mu.RLock()
	loaded, err := t.loaded, t.err
	t.mu.RUnlock()
	if loaded {
		return t, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.loaded {
		t.err = s.load(t)
		t.loaded = true
	}
	return t, t.err
}

// Add implements rag.VectorStore: each record is appended to its
// document's segment file (synced) and indexed in memory.
func (s *Store) Add(ctx context.Context, recs []rag.Record) error {
	// group by tenant and document, keeping order
	type group struct {
		tenant, doc int64
		recs        []rag.Record
	}
	var groups []*group
	idx := map[[2]int64]*group{}
	for _, r := range recs {
		if len(r.Vector) != s.dim {
			return fmt.Errorf("embedded: vector of %d dimensions, want %d", len(r.Vector), s.dim)
		}
		k := [2]int64{r.TenantID, r.DocumentID}
		g := idx[k]
		if g == nil {
			g = &group{tenant: r.TenantID, doc: r.DocumentID}
			idx[k] = g
			groups = append(groups, g)
		}
		g.recs = append(g.recs, r)
	}
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := s.tenant(g.tenant)
		if err != nil {
			return err
		}
		t.mu.Lock()
		err = s.appendSegment(t, g.doc, g.recs)
		if err == nil {
			for _, r := range g.recs {
				s.index(t, r.DocumentID, r.DocumentName, int32(r.Chunk), r.Heading, r.Text, r.Vector)
			}
		}
		t.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// DeleteDocument implements rag.VectorStore: the segment file is removed
// and the chunks leave the index at once.
func (s *Store) DeleteDocument(ctx context.Context, tenantID, documentID int64) error {
	t, err := s.tenant(tenantID)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := os.Remove(segPath(t.dir, documentID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("embedded: %w", err)
	}
	for _, slot := range t.slots[documentID] {
		if !t.dead[slot] {
			t.dead[slot] = true
			t.ndead++
			t.bm25.Remove(slot, t.text[slot])
			t.text[slot], t.heading[slot] = "", ""
		}
	}
	delete(t.slots, documentID)
	delete(t.names, documentID)
	if t.ndead > 256 && float64(t.ndead) > compactRatio*float64(len(t.doc)) {
		s.compact(t)
	}
	return nil
}

// Count returns how many chunks of the document the store holds (all of
// the tenant's for documentID 0), and whether its segment file exists.
func (s *Store) Count(ctx context.Context, tenantID, documentID int64) (int, bool, error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return 0, false, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := len(t.doc) - t.ndead
	if documentID != 0 {
		n = len(t.slots[documentID])
	}
	_, serr := os.Stat(segPath(t.dir, documentID))
	return n, serr == nil, nil
}

// index adds one chunk in memory; t is locked.
func (s *Store) index(t *tenant, doc int64, name string, chunk int32, heading, text string, vec []float32) {
	slot := int32(len(t.doc))
	t.doc = append(t.doc, doc)
	t.chunk = append(t.chunk, chunk)
	t.heading = append(t.heading, heading)
	t.text = append(t.text, text)
	t.vecs = append(t.vecs, vec...)
	t.codes, t.levels = appendCode(t.codes, t.levels, vec, s.words)
	t.dead = append(t.dead, false)
	if t.slots == nil {
		t.slots, t.names = map[int64][]int32{}, map[int64]string{}
	}
	t.slots[doc] = append(t.slots[doc], slot)
	t.names[doc] = name
	t.bm25.Add(slot, bm25Text(heading, text))
}

func bm25Text(heading, text string) string {
	if heading == "" {
		return text
	}
	return heading + "\n" + text
}

// appendCode appends the 2-bit code of vec: its three bit planes and its
// two magnitude levels.
func appendCode(codes []uint64, levels []float32, vec []float32, words int) ([]uint64, []float32) {
	var sq float64
	for _, x := range vec {
		sq += float64(x) * float64(x)
	}
	tau := float32(math.Sqrt(sq / float64(len(vec))))
	var lo, hi float32
	var nlo, nhi int
	for _, x := range vec {
		if a := abs(x); a >= tau && a > 0 {
			hi += a
			nhi++
		} else {
			lo += a
			nlo++
		}
	}
	if nlo > 0 {
		lo /= float32(nlo)
	}
	if nhi > 0 {
		hi /= float32(nhi)
	}
	start := len(codes)
	codes = append(codes, make([]uint64, 3*words)...)
	sign, pos, neg := codes[start:start+words], codes[start+words:start+2*words], codes[start+2*words:]
	for j, x := range vec {
		w, bit := j/64, uint64(1)<<(j%64)
		if x >= 0 {
			sign[w] |= bit
		}
		if a := abs(x); a >= tau && a > 0 {
			if x >= 0 {
				pos[w] |= bit
			} else {
				neg[w] |= bit
			}
		}
	}
	return codes, append(levels, lo, hi)
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// compact rebuilds t without its dead slots; t is locked.
func (s *Store) compact(t *tenant) {
	doc, chunk, heading, text, vecs, dead, names := t.doc, t.chunk, t.heading, t.text, t.vecs, t.dead, t.names
	t.doc, t.chunk, t.heading, t.text = nil, nil, nil, nil
	t.vecs, t.codes, t.levels, t.dead, t.ndead = nil, nil, nil, nil, 0
	t.slots, t.names = nil, nil
	t.bm25 = rag.BM25{}
	for slot := range doc {
		if dead[slot] {
			continue
		}
		d := doc[slot]
		s.index(t, d, names[d], chunk[slot], heading[slot], text[slot], vecs[slot*s.dim:(slot+1)*s.dim])
	}
}

// SearchText implements rag.KeywordSearcher (BM25).
func (s *Store) SearchText(ctx context.Context, tenantID int64, query string, k int, documentIDs []int64) ([]rag.Hit, error) {
	t, err := s.tenant(tenantID)
	if err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	var accept func(int32) bool
	if len(documentIDs) > 0 {
		accept = func(slot int32) bool { return slices.Contains(documentIDs, t.doc[slot]) }
	}
	sp := scorePool.Get().(*[]float32)
	scored, scores := t.bm25.Search(query, k, accept, *sp)
	*sp = scores
	scorePool.Put(sp)
	return t.hits(scored), nil
}

// Search implements rag.VectorStore.
func (s *Store) Search(ctx context.Context, req rag.SearchRequest) ([]rag.Hit, error) {
	if len(req.Vector) != s.dim {
		return nil, fmt.Errorf("embedded: query of %d dimensions, want %d", len(req.Vector), s.dim)
	}
	if req.K <= 0 {
		return nil, nil
	}
	t, err := s.tenant(req.TenantID)
	if err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	var scored []rag.Scored
	switch {
	case len(req.DocumentIDs) > 0:
		slots := []int32{} // not nil: nil means every slot
		for _, d := range req.DocumentIDs {
			slots = append(slots, t.slots[d]...)
		}
		scored = s.exact(t, req.Vector, req.K, slots)
	case len(t.doc)-t.ndead < ExactBelow:
		scored = s.exact(t, req.Vector, req.K, nil)
	default:
		scored = s.approx(t, req.Vector, req.K)
	}
	return t.hits(scored), nil
}

// SearchExact is Search without the approximate scan (for tests and
// benchmarks that measure its recall).
func (s *Store) SearchExact(ctx context.Context, req rag.SearchRequest) ([]rag.Hit, error) {
	t, err := s.tenant(req.TenantID)
	if err != nil {
		return nil, err
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.hits(s.exact(t, req.Vector, req.K, nil)), nil
}

func (t *tenant) hits(scored []rag.Scored) []rag.Hit {
	out := make([]rag.Hit, len(scored))
	for i, sc := range scored {
		d := t.doc[sc.Slot]
		out[i] = rag.Hit{DocumentID: d, DocumentName: t.names[d], Chunk: int(t.chunk[sc.Slot]),
			Heading: t.heading[sc.Slot], Text: t.text[sc.Slot], Score: sc.Score}
	}
	return out
}

// exact scores the given slots (nil: all) by inner product.
func (s *Store) exact(t *tenant, q []float32, k int, slots []int32) []rag.Scored {
	top := rag.NewTopK(k)
	dim := s.dim
	if slots == nil {
		for slot := range t.doc {
			if !t.dead[slot] {
				top.Push(int32(slot), dot(q, t.vecs[slot*dim:(slot+1)*dim]))
			}
		}
	} else {
		for _, slot := range slots {
			if !t.dead[slot] {
				top.Push(slot, dot(q, t.vecs[int(slot)*dim:(int(slot)+1)*dim]))
			}
		}
	}
	return top.Sorted()
}

// approx scores every live slot from its 2-bit code,
//
//	est = lo·Σ_j q_j·sign_j + (hi−lo)·Σ_{j large} q_j·sign_j,
//
// with per-byte lookup tables of the query (each byte of a plane covers 8
// components: ±q sums for the sign plane, subset sums for the large
// planes), keeps the best candidates and re-ranks them exactly.
func (s *Store) approx(t *tenant, q []float32, k int) []rag.Scored {
	nbytes := s.words * 8
	tp := tablePool.Get().(*[]float32)
	defer tablePool.Put(tp)
	if cap(*tp) < 2*nbytes*256 {
		*tp = make([]float32, 2*nbytes*256)
	}
	pm := (*tp)[:nbytes*256]                // Σ ±q_j over a byte of the sign plane
	sub := (*tp)[nbytes*256 : 2*nbytes*256] // Σ q_j over the set bits of a byte
	for b := range nbytes {
		tp, ts := pm[b*256:(b+1)*256], sub[b*256:(b+1)*256]
		var all float32
		ts[0] = 0
		for bit := range 8 {
			if j := b*8 + bit; j < len(q) {
				all += q[j]
			}
		}
		for v := 1; v < 256; v++ {
			bit := 0
			for v&(1<<bit) == 0 {
				bit++
			}
			var qj float32
			if j := b*8 + bit; j < len(q) {
				qj = q[j]
			}
			ts[v] = ts[v&(v-1)] + qj
		}
		for v := range 256 {
			tp[v] = 2*ts[v] - all
		}
	}
	n := len(t.doc)
	r := max(rerankMin, rerankPerK*k)
	var cands []rag.Scored
	if n > parallelAbove {
		var (
			wg    sync.WaitGroup
			parts [2][]rag.Scored
		)
		for p := range 2 {
			wg.Go(func() { parts[p] = s.scan(t, pm, sub, p*n/2, (p+1)*n/2, r) })
		}
		wg.Wait()
		cands = append(parts[0], parts[1]...)
	} else {
		cands = s.scan(t, pm, sub, 0, n, r)
	}
	top := rag.NewTopK(k)
	dim := s.dim
	for _, c := range cands {
		top.Push(c.Slot, dot(q, t.vecs[int(c.Slot)*dim:(int(c.Slot)+1)*dim]))
	}
	return top.Sorted()
}

// scorePool recycles BM25's score arrays (4 bytes per chunk).
var scorePool = sync.Pool{New: func() any { return new([]float32) }}

// tablePool recycles the query lookup tables (16 KiB per 64 dimensions).
var tablePool = sync.Pool{New: func() any { return new([]float32) }}

// scan estimates the slots [from, to) and returns the best r.
func (s *Store) scan(t *tenant, pm, sub []float32, from, to, r int) []rag.Scored {
	cand := rag.NewTopK(r)
	floor := cand.Min()
	words := s.words
	stride := 3 * words
	for slot := from; slot < to; slot++ {
		if t.dead[slot] {
			continue
		}
		code := t.codes[slot*stride : (slot+1)*stride : (slot+1)*stride]
		var a, b float32
		for w := range words {
			ta := pm[w*2048 : w*2048+2048 : w*2048+2048]
			ts := sub[w*2048 : w*2048+2048 : w*2048+2048]
			x, y, z := code[w], code[words+w], code[2*words+w]
			a += ta[x&0xff] + ta[256+(x>>8)&0xff] + ta[512+(x>>16)&0xff] + ta[768+(x>>24)&0xff] +
				ta[1024+(x>>32)&0xff] + ta[1280+(x>>40)&0xff] + ta[1536+(x>>48)&0xff] + ta[1792+(x>>56)]
			b += ts[y&0xff] + ts[256+(y>>8)&0xff] + ts[512+(y>>16)&0xff] + ts[768+(y>>24)&0xff] +
				ts[1024+(y>>32)&0xff] + ts[1280+(y>>40)&0xff] + ts[1536+(y>>48)&0xff] + ts[1792+(y>>56)]
			b -= ts[z&0xff] + ts[256+(z>>8)&0xff] + ts[512+(z>>16)&0xff] + ts[768+(z>>24)&0xff] +
				ts[1024+(z>>32)&0xff] + ts[1280+(z>>40)&0xff] + ts[1536+(z>>48)&0xff] + ts[1792+(z>>56)]
		}
		lo, hi := t.levels[2*slot], t.levels[2*slot+1]
		if est := lo*a + (hi-lo)*b; est > floor {
			cand.Push(int32(slot), est)
			floor = cand.Min()
		}
	}
	return cand.Sorted()
}

// dot is the inner product, unrolled by 8 so that the loads pipeline.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3) + (s4 + s5) + (s6 + s7)
}

// Segment files: a header, then records, each framed by its length and a
// CRC-32C, so that a record torn by a crash is detected and dropped.
//
//	header: "MTAISEG1" uint32(dim)
//	record: uint32(len) uint32(crc) payload
//	payload: int64(doc) uint32(chunk) str(name) str(heading) str(text) dim×float32
//	str: uint32(len) bytes
const segMagic = "MTAISEG1"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func segPath(dir string, doc int64) string {
	return filepath.Join(dir, strconv.FormatInt(doc, 10)+".seg")
}

// appendSegment appends recs (of document doc) to its segment file and
// syncs it; t is locked.
func (s *Store) appendSegment(t *tenant, doc int64, recs []rag.Record) error {
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	p := segPath(t.dir, doc)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		w.WriteString(segMagic)
		binary.Write(w, binary.LittleEndian, uint32(s.dim))
	}
	var payload []byte
	for _, r := range recs {
		payload = binary.LittleEndian.AppendUint64(payload[:0], uint64(r.DocumentID))
		payload = binary.LittleEndian.AppendUint32(payload, uint32(r.Chunk))
		payload = appendStr(payload, r.DocumentName)
		payload = appendStr(payload, r.Heading)
		payload = appendStr(payload, r.Text)
		for _, x := range r.Vector {
			payload = binary.LittleEndian.AppendUint32(payload, math.Float32bits(x))
		}
		var hdr [8]byte
		binary.LittleEndian.PutUint32(hdr[:4], uint32(len(payload)))
		binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, crcTable))
		w.Write(hdr[:])
		w.Write(payload)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("embedded: write %s: %w", p, err)
	}
	return nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// load reads every segment file of t; t is locked.
func (s *Store) load(t *tenant) error {
	entries, err := os.ReadDir(t.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		if err := s.loadSegment(t, filepath.Join(t.dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) loadSegment(t *tenant, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	hdr := make([]byte, len(segMagic)+4)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil // an empty file: a crash before the first record
	}
	if string(hdr[:len(segMagic)]) != segMagic {
		return fmt.Errorf("embedded: %s is not a segment file", p)
	}
	if d := binary.LittleEndian.Uint32(hdr[len(segMagic):]); int(d) != s.dim {
		return fmt.Errorf("embedded: %s has vectors of %d dimensions, want %d", p, d, s.dim)
	}
	var payload []byte
	vec := make([]float32, s.dim)
	for {
		var rh [8]byte
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			return nil // end, or a torn header
		}
		n := binary.LittleEndian.Uint32(rh[:4])
		if n > 1<<28 {
			return nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil || crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(rh[4:]) {
			return nil // a record torn by a crash: the ingestion is redone anyway
		}
		doc := int64(binary.LittleEndian.Uint64(payload))
		chunk := int32(binary.LittleEndian.Uint32(payload[8:]))
		rest := payload[12:]
		var name, heading, text string
		var ok bool
		if name, rest, ok = readStr(rest); !ok {
			return nil
		}
		if heading, rest, ok = readStr(rest); !ok {
			return nil
		}
		if text, rest, ok = readStr(rest); !ok || len(rest) != 4*s.dim {
			return nil
		}
		for i := range vec {
			vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
		}
		s.index(t, doc, name, chunk, heading, text, vec)
	}
}

func readStr(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}
