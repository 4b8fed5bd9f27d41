package billing

import (
	"fmt"
	"os"
	"testing"
)

func record(payload string) []byte {
	b := append(make([]byte, recHeader), payload...)
	frame(b)
	return b
}

// readAll reads every record from jr up to end.
func readAll(t *testing.T, jr *journalReader, end position) []string {
	t.Helper()
	var out []string
	for {
		p, ok, err := jr.next(end)
		if err != nil {
			t.Fatalf("next = %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, string(p))
	}
}

func TestJournalAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 4096)
	if err != nil {
		t.Fatal(err)
	}
	jr, err := newJournalReader(dir, position{})
	if err != nil {
		t.Fatal(err)
	}
	defer jr.close()
	var want []string
	for i := range 300 { // ~ 300·(8+40) bytes: several segments
		p := fmt.Sprintf("event %04d ................................", i)
		if err := j.append(record(p)); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
		if i == 100 { // read while the journal is being written
			got := readAll(t, jr, j.end())
			if len(got) != 101 {
				t.Fatalf("read %d records mid-way, want 101", len(got))
			}
		}
	}
	got := append(want[:0:0], want[:101]...)
	got = append(got, readAll(t, jr, j.end())...)
	if len(got) != len(want) || got[299] != want[299] {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	segs, _ := listSegments(dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	// A checkpoint deletes the segments wholly before it.
	if err := writeCheckpoint(dir, jr.pos); err != nil {
		t.Fatal(err)
	}
	left, _ := listSegments(dir)
	if len(left) != 1 || left[0] != segs[len(segs)-1] {
		t.Errorf("segments after checkpoint: %v, want only %d", left, segs[len(segs)-1])
	}
	cp, err := readCheckpoint(dir)
	if err != nil || cp != jr.pos {
		t.Errorf("readCheckpoint = %v, %v; want %v", cp, err, jr.pos)
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	if err := j.append(record("late")); err == nil {
		t.Error("append after close succeeded")
	}
}

// TestJournalTornTail: a record cut in the middle (the machine failed
// mid-write) is removed when the journal is opened again, and every whole
// record before it is read.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := j.append(record(fmt.Sprint("event ", i))); err != nil {
			t.Fatal(err)
		}
	}
	torn := record("the torn one")
	if err := j.append(torn[:len(torn)-3]); err != nil {
		t.Fatal(err)
	}
	j.abandon()

	j2, err := openJournal(dir, 1<<20) // repairs, then starts segment 2
	if err != nil {
		t.Fatal(err)
	}
	defer j2.close()
	if err := j2.append(record("after restart")); err != nil {
		t.Fatal(err)
	}
	jr, err := newJournalReader(dir, position{})
	if err != nil {
		t.Fatal(err)
	}
	defer jr.close()
	got := readAll(t, jr, j2.end())
	if len(got) != 11 || got[9] != "event 9" || got[10] != "after restart" {
		t.Fatalf("records after repair: %q", got)
	}
}

// TestJournalCorruptSegment: a damaged record in a finished segment costs
// the rest of that segment (counted), not the journal.
func TestJournalCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		j.append(record(fmt.Sprint("event ", i)))
	}
	j.close()
	j2, err := openJournal(dir, 1<<20) // starts segment 2: segment 1 is finished
	if err != nil {
		t.Fatal(err)
	}
	defer j2.close()
	j2.append(record("next"))
	// flip a byte of the second record's payload in segment 1
	path := segPath(dir, 1)
	b, _ := os.ReadFile(path)
	second := int(segHeader) + recHeader + len("event 0") + recHeader
	b[second] ^= 0xff
	os.WriteFile(path, b, 0o600)

	jr, _ := newJournalReader(dir, position{})
	defer jr.close()
	if got := readAll(t, jr, j2.end()); len(got) != 2 || got[0] != "event 0" || got[1] != "next" {
		t.Fatalf("records = %q, want event 0 and next", got)
	}
	if jr.corrupt != 1 {
		t.Errorf("corrupt segments counted: %d, want 1", jr.corrupt)
	}
}
