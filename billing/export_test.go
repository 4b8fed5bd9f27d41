package billing

// Crash stops the meter as a killed process would: its goroutines end
// without draining or saving a checkpoint, and the journal's file is closed
// without fsync (what Record wrote stays in the page cache, as it would).
// Events recorded from then on are lost (and counted so).
func (m *Meter) Crash() {
	close(m.crashC)
	m.cancelRun()
	<-m.estDone
	<-m.syncDone
	<-m.writeDone
	m.j.abandon()
	m.unlock() // as the kernel does for a dead process
}

// JournalDir returns the meter's journal directory.
func (m *Meter) JournalDir() string { return m.cfg.Dir }

// RaceEnabled reports whether the race detector is on (throughput is then
// not checked).
const RaceEnabled = raceEnabled
