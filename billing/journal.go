package billing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The journal is a directory of append-only segment files
// (00000000000000000001.seg, ...) and a checkpoint file.
//
// A segment starts with segMagic; then records follow, each
//
//	uint32 payload length, uint32 CRC-32C of the payload, payload
//
// (little endian). Every process start opens a new segment; a segment is
// also closed (synced) once it passes its size limit. The checkpoint says
// up to which position the database has every event: segments wholly
// before it are deleted.
//
// Records are written with one write(2) each, under a lock, so a recorded
// event is in the kernel's page cache when Record returns and survives the
// process being killed; fsync (group commit every SyncInterval) makes it
// survive the machine failing. A torn record at the end of the last
// segment (the machine failed mid-write) is cut off when the journal is
// opened again.
const (
	segMagic    = "MTAIUSG1"
	segHeader   = int64(len(segMagic))
	recHeader   = 8
	maxRecord   = 1 << 16 // an event is a few hundred bytes
	segSuffix   = ".seg"
	cpFile      = "checkpoint"
	readChunk   = 256 << 10
	segNameLen  = 20
	dirFileMode = 0o700
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// position is a place in the journal: a segment and a byte offset in it.
type position struct {
	seg uint64
	off int64
}

func (p position) less(q position) bool {
	return p.seg < q.seg || p.seg == q.seg && p.off < q.off
}

func segPath(dir string, seg uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%0*d%s", segNameLen, seg, segSuffix))
}

// listSegments returns the segment numbers in dir, in order.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || len(name) != segNameLen {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	slices.Sort(segs)
	return segs, nil
}

// journal is the writing side. Safe for concurrent use.
type journal struct {
	dir      string
	segBytes int64

	mu     sync.Mutex
	f      *os.File
	seg    uint64
	off    int64 // end of what was written to f
	dirty  bool  // written since the last sync
	closed bool
}

// errJournalClosed is returned by append after close.
var errJournalClosed = errors.New("billing: journal closed")

// openJournal opens the journal in dir (creating it), repairs the tail of
// its last segment, and starts a new segment.
func openJournal(dir string, segBytes int64) (*journal, error) {
	if err := os.MkdirAll(dir, dirFileMode); err != nil {
		return nil, fmt.Errorf("billing: journal: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("billing: journal: %w", err)
	}
	next := uint64(1)
	if n := len(segs); n > 0 {
		last := segs[n-1]
		if err := repairSegment(segPath(dir, last)); err != nil {
			return nil, err
		}
		next = last + 1
	}
	j := &journal{dir: dir, segBytes: segBytes}
	if err := j.create(next); err != nil {
		return nil, err
	}
	return j, nil
}

// repairSegment cuts a segment after its last whole record.
func repairSegment(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("billing: journal: %w", err)
	}
	defer f.Close()
	end, _, err := scanSegment(f)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("billing: journal: %w", err)
	}
	if st.Size() == end {
		return nil
	}
	if err := f.Truncate(end); err != nil {
		return fmt.Errorf("billing: journal: repair %s: %w", path, err)
	}
	return f.Sync()
}

// scanSegment returns the end of the last whole record of f and how many
// records it holds.
func scanSegment(f *os.File) (end int64, n int, err error) {
	r := &segReader{f: f, off: 0}
	var magic [segHeader]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != segMagic {
		return 0, 0, nil // empty or foreign: nothing in it
	}
	r.off = segHeader
	for {
		_, next, ok, err := r.record(-1)
		if err != nil || !ok {
			return r.off, n, nil
		}
		r.off = next
		n++
	}
}

// create opens segment seg for writing. Called with mu held (or before the
// journal is shared).
func (j *journal) create(seg uint64) error {
	f, err := os.OpenFile(segPath(j.dir, seg), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("billing: journal: %w", err)
	}
	if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
		f.Close()
		return fmt.Errorf("billing: journal: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return err
	}
	j.f, j.seg, j.off, j.dirty = f, seg, segHeader, true
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("billing: journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("billing: journal: sync %s: %w", dir, err)
	}
	return nil
}

// frame fills the record header of rec, whose payload starts at
// rec[recHeader:].
func frame(rec []byte) {
	p := rec[recHeader:]
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(p)))
	binary.LittleEndian.PutUint32(rec[4:8], crc32.Checksum(p, crcTable))
}

// append writes one framed record.
func (j *journal) append(rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return errJournalClosed
	}
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		// A partial write is overwritten by the next one, which starts
		// at the same offset; a reader never reads past j.off.
		return fmt.Errorf("billing: journal: %w", err)
	}
	j.off += int64(len(rec))
	j.dirty = true
	if j.off >= j.segBytes {
		return j.rotate()
	}
	return nil
}

// rotate syncs and closes the active segment and starts the next one.
// Called with mu held.
func (j *journal) rotate() error {
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("billing: journal: sync: %w", err)
	}
	old := j.f
	if err := j.create(j.seg + 1); err != nil {
		return err // keep writing to the old segment
	}
	old.Close()
	return nil
}

// end returns the position just past the last record written.
func (j *journal) end() position {
	j.mu.Lock()
	defer j.mu.Unlock()
	return position{j.seg, j.off}
}

// sync makes what was written durable (the group commit).
func (j *journal) sync() error {
	j.mu.Lock()
	if j.closed || !j.dirty {
		j.mu.Unlock()
		return nil
	}
	f := j.f
	j.dirty = false
	j.mu.Unlock()
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) { // closed: rotate synced it
		j.mu.Lock()
		j.dirty = true
		j.mu.Unlock()
		return fmt.Errorf("billing: journal: sync: %w", err)
	}
	return nil
}

// close syncs and closes the journal; later appends fail.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.f.Sync()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("billing: journal: close: %w", err)
	}
	return nil
}

// abandon closes the file without syncing, as a killed process would
// leave it (what was written stays in the page cache). For crash tests.
func (j *journal) abandon() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.closed {
		j.closed = true
		j.f.Close()
	}
}

// segReader reads the records of one segment file through a window of
// bytes read with ReadAt: never past a limit, so that it can follow the
// active segment while it grows.
type segReader struct {
	f      *os.File
	buf    []byte
	bufOff int64 // file offset of buf[0]
	off    int64 // next record's offset
}

// record returns the payload of the record at r.off (valid until the next
// call), the offset after it, and ok=false when there is no whole record
// before limit (-1: the end of the file). err is errCorrupt for a record
// whose length or checksum is wrong.
func (r *segReader) record(limit int64) (payload []byte, next int64, ok bool, err error) {
	hdr, err := r.bytes(r.off, recHeader, limit)
	if hdr == nil {
		return nil, 0, false, err
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n == 0 || n > maxRecord {
		return nil, 0, false, errCorrupt
	}
	rec, err := r.bytes(r.off, recHeader+n, limit)
	if rec == nil {
		return nil, 0, false, err
	}
	payload = rec[recHeader:]
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, 0, false, errCorrupt
	}
	return payload, r.off + recHeader + n, true, nil
}

// bytes returns the n bytes at file offset off, reading more of the file
// as needed but not past limit (-1: no limit); nil when they are not
// there (yet).
func (r *segReader) bytes(off, n, limit int64) ([]byte, error) {
	if limit >= 0 && off+n > limit {
		return nil, nil
	}
	if off >= r.bufOff && off+n <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff : off-r.bufOff+n], nil
	}
	// Refill: keep from off on, then read up to a chunk more.
	if off >= r.bufOff && off <= r.bufOff+int64(len(r.buf)) {
		kept := copy(r.buf, r.buf[off-r.bufOff:])
		r.buf = r.buf[:kept]
	} else {
		r.buf = r.buf[:0]
	}
	r.bufOff = off
	want := max(n, readChunk)
	if cap(r.buf) < int(want) {
		nb := make([]byte, len(r.buf), want)
		copy(nb, r.buf)
		r.buf = nb
	}
	readTo := int64(cap(r.buf))
	if limit >= 0 {
		readTo = min(readTo, limit-off)
	}
	have := int64(len(r.buf))
	if readTo > have {
		m, err := r.f.ReadAt(r.buf[have:readTo], off+have)
		r.buf = r.buf[:have+int64(m)]
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("billing: journal: read: %w", err)
		}
	}
	if int64(len(r.buf)) < n {
		return nil, nil
	}
	return r.buf[:n], nil
}

// journalReader follows the journal from a position, across segments.
// Used by the meter's writer goroutine only.
type journalReader struct {
	dir string
	pos position
	r   segReader
	// corrupt counts segments cut short by a corrupt record.
	corrupt int
}

// newJournalReader starts reading at from (a checkpoint), or at the oldest
// segment when from is before it.
func newJournalReader(dir string, from position) (*journalReader, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("billing: journal: %w", err)
	}
	jr := &journalReader{dir: dir, pos: from}
	if len(segs) > 0 && from.seg < segs[0] {
		jr.pos = position{segs[0], segHeader}
	}
	if jr.pos.off < segHeader {
		jr.pos.off = segHeader
	}
	return jr, nil
}

// next returns the next record's payload before end (valid until the next
// call) and ok=false when the reader has reached end.
func (jr *journalReader) next(end position) (payload []byte, ok bool, err error) {
	for jr.pos.less(end) {
		if jr.r.f == nil {
			f, err := os.Open(segPath(jr.dir, jr.pos.seg))
			if errors.Is(err, fs.ErrNotExist) && jr.pos.seg < end.seg {
				jr.pos = position{jr.pos.seg + 1, segHeader}
				continue
			}
			if err != nil {
				return nil, false, fmt.Errorf("billing: journal: %w", err)
			}
			jr.r = segReader{f: f, buf: jr.r.buf[:0], bufOff: 0}
		}
		jr.r.off = jr.pos.off
		limit := int64(-1)
		if jr.pos.seg == end.seg {
			limit = end.off
		}
		p, nextOff, ok, err := jr.r.record(limit)
		if ok {
			jr.pos.off = nextOff
			return p, true, nil
		}
		if err != nil && !errors.Is(err, errCorrupt) {
			return nil, false, err
		}
		if jr.pos.seg == end.seg {
			if errors.Is(err, errCorrupt) {
				return nil, false, fmt.Errorf("%w in the active segment %d at %d", errCorrupt, jr.pos.seg, jr.pos.off)
			}
			return nil, false, nil // wait for more
		}
		// A finished segment ends here (or is corrupt from here on).
		if errors.Is(err, errCorrupt) {
			jr.corrupt++
		}
		jr.r.f.Close()
		jr.r.f = nil
		jr.pos = position{jr.pos.seg + 1, segHeader}
	}
	return nil, false, nil
}

// close releases the open segment.
func (jr *journalReader) close() {
	if jr.r.f != nil {
		jr.r.f.Close()
		jr.r.f = nil
	}
}

// readCheckpoint returns the position saved in dir, or the zero position.
func readCheckpoint(dir string) (position, error) {
	b, err := os.ReadFile(filepath.Join(dir, cpFile))
	if errors.Is(err, fs.ErrNotExist) {
		return position{}, nil
	}
	if err != nil {
		return position{}, fmt.Errorf("billing: journal checkpoint: %w", err)
	}
	var p position
	if _, err := fmt.Sscanf(string(b), "v1 %d %d\n", &p.seg, &p.off); err != nil {
		return position{}, fmt.Errorf("billing: journal checkpoint %q: %w", b, err)
	}
	return p, nil
}

// writeCheckpoint saves p (atomically: a new file renamed over the old)
// and deletes the segments wholly before it. A checkpoint lost in a crash
// only means replaying events that the database already has, which
// writes nothing twice.
func writeCheckpoint(dir string, p position) error {
	tmp := filepath.Join(dir, cpFile+".tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("v1 %d %d\n", p.seg, p.off)), 0o600); err != nil {
		return fmt.Errorf("billing: journal checkpoint: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, cpFile)); err != nil {
		return fmt.Errorf("billing: journal checkpoint: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return fmt.Errorf("billing: journal: %w", err)
	}
	for _, s := range segs {
		if s >= p.seg {
			break
		}
		if err := os.Remove(segPath(dir, s)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("billing: journal: %w", err)
		}
	}
	return nil
}

// journalBytes returns the size of the segments from seg on.
func journalBytes(dir string, from uint64) int64 {
	segs, _ := listSegments(dir)
	var n int64
	for _, s := range segs {
		if s < from {
			continue
		}
		if st, err := os.Stat(segPath(dir, s)); err == nil {
			n += st.Size()
		}
	}
	return n
}
