package billing

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// UsageWriter stores usage events. *postgres.DB (COPY into a staging table,
// then INSERT ... ON CONFLICT DO NOTHING) and *sqlite.DB (batched INSERTs)
// implement it.
type UsageWriter interface {
	// WriteUsage stores events, and adds those it did not have yet to the
	// hourly rollups, in one transaction. It is idempotent by Event.ID:
	// an event already stored is skipped, in the rollups too. An error
	// that wraps ErrRejected means the data itself was refused (retrying
	// the same events cannot succeed); any other error is transient.
	WriteUsage(ctx context.Context, events []Event) error
}

// UsageMaintainer is the optional ability of a UsageWriter to prepare and
// prune its storage: create the partitions of the months ahead, drop data
// older than the retention. The meter calls it on start and every
// MeterConfig.MaintainInterval.
type UsageMaintainer interface {
	MaintainUsage(ctx context.Context, now time.Time, keep Retention) error
}

// Retention says how long usage data is kept. Zero durations keep it
// forever.
type Retention struct {
	// Events is how long raw usage events are kept (MTAI_USAGE_RETENTION).
	// PostgreSQL drops whole monthly partitions, so events are kept until
	// the end of the month in which they fall out of it.
	Events time.Duration
	// Rollups is how long the rollups (hourly and daily) are kept
	// (MTAI_USAGE_ROLLUP_RETENTION); they feed budgets (MonthSpend) and the
	// dashboard, so keep them at least as long as the events.
	Rollups time.Duration
}

// ErrRejected marks a write error caused by the events themselves (a
// constraint or a value the database refuses), as opposed to the database
// being unreachable. The meter then isolates the refused events, logs
// them in full and keeps them in the journal directory's rejected.log.
var ErrRejected = errors.New("usage events rejected by the store")

// MeterConfig configures a Meter. Zero values take the documented defaults.
type MeterConfig struct {
	// Dir is the journal directory (required), e.g. $MTAI_DATA_DIR/usage.
	// One meter per directory: replicas need a directory each.
	Dir string
	// Prices is the price table; nil means DefaultPrices().
	Prices *Prices
	// SyncInterval is the group commit: the journal is fsynced this often
	// when written to (MTAI_USAGE_SYNC_INTERVAL). Default 50ms. Events are
	// in the page cache as soon as Record returns, so only a machine
	// failure (not a process crash) can lose the last interval.
	SyncInterval time.Duration
	// BatchSize is the most events per database write. Default 10000.
	BatchSize int
	// FlushInterval is how long an event may wait for a batch to fill
	// before it is written anyway (MTAI_USAGE_FLUSH_INTERVAL). Default 250ms.
	FlushInterval time.Duration
	// WriteTimeout bounds one database write. Default 30s.
	WriteTimeout time.Duration
	// SegmentBytes is the size at which a journal segment is closed and
	// the next begun. Default 64 MiB.
	SegmentBytes int64
	// MaintainInterval is how often the store's UsageMaintainer runs
	// (partitions ahead, retention). Default 1h.
	MaintainInterval time.Duration
	// Retention is passed to the store's UsageMaintainer.
	Retention Retention
	// EstimateQueueBytes bounds the text (prompts, generated text) held in
	// memory for events waiting to be counted with tiktoken. Beyond it, an
	// event is counted at once at 4 bytes per token (still Estimated).
	// Default 64 MiB.
	EstimateQueueBytes int64
	// Logger; nil: no logs.
	Logger *zap.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

func (c *MeterConfig) setDefaults() {
	if c.Prices == nil {
		c.Prices = DefaultPrices()
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = 50 * time.Millisecond
	}
	if c.BatchSize == 0 {
		c.BatchSize = 10000
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.MaintainInterval == 0 {
		c.MaintainInterval = time.Hour
	}
	if c.EstimateQueueBytes == 0 {
		c.EstimateQueueBytes = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports the first bad value, naming its variable.
func (c *MeterConfig) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("billing: the usage journal directory (MTAI_DATA_DIR) must be set")
	case c.SyncInterval < 0:
		return errors.New("MTAI_USAGE_SYNC_INTERVAL must not be negative")
	case c.FlushInterval < 0:
		return errors.New("MTAI_USAGE_FLUSH_INTERVAL must not be negative")
	case c.BatchSize < 0:
		return errors.New("billing: MeterConfig.BatchSize must not be negative")
	case c.Retention.Events < 0:
		return errors.New("MTAI_USAGE_RETENTION must not be negative")
	case c.Retention.Rollups < 0:
		return errors.New("MTAI_USAGE_ROLLUP_RETENTION must not be negative")
	case c.Retention.Rollups > 0 && (c.Retention.Events == 0 || c.Retention.Events > c.Retention.Rollups):
		return errors.New("MTAI_USAGE_ROLLUP_RETENTION must be at least MTAI_USAGE_RETENTION")
	case c.SegmentBytes != 0 && c.SegmentBytes < 4096:
		return errors.New("billing: MeterConfig.SegmentBytes must be at least 4096")
	}
	return nil
}

// Meter is the usage meter: the request path hands it one Event per
// request (Record), which it appends to a local journal at once and writes
// to the store in batches from a goroutine of its own. Nothing in Record
// waits for the database.
//
// Durability: Record writes the event to the journal (one write(2) into
// the page cache) before it returns; the journal is fsynced every
// SyncInterval. The writer reads the journal back from its checkpoint, so
// events survive a database outage of any length, a restart and a crash
// (a new Meter on the same directory writes what the old one had not),
// and the store's idempotent writes make replays harmless.
//
// Back-pressure: none on the request path. Memory is bounded (one batch,
// and at most EstimateQueueBytes of text to count); while the database is
// unreachable the journal on disk takes every event, and the writer
// catches up when it returns. An event that cannot be journaled (the disk
// refuses the write, or Record after Close) is not silently dropped: it
// is logged in full at error level and counted in Stats().Lost.
//
// Goroutines: a writer (database batches, checkpoints, maintenance), a
// syncer (group commit) and a counter (tiktoken), all owned by the Meter,
// stopped and waited for by Close. A Meter is safe for concurrent use.
type Meter struct {
	cfg    MeterConfig
	store  UsageWriter
	prices *Prices
	log    *zap.Logger
	now    func() time.Time
	j      *journal
	unlock func() // releases the journal directory's lock

	idRand [6]byte
	idSeq  atomic.Uint32
	events sync.Pool // *Event
	bufs   sync.Pool // *[]byte, encoding buffers

	life   sync.RWMutex // Record holds it shared; Close exclusively
	closed bool

	est        chan *Event // events to count with tiktoken
	estBytes   atomic.Int64
	estPending atomic.Int64
	notify     chan struct{} // cap 1: the writer has something to read
	flushC     chan struct{} // cap 1: write now, do not wait for a batch

	stopEst, stopSync, stopWrite chan struct{}
	crashC                       chan struct{}
	estDone, syncDone, writeDone chan struct{}
	runCtx                       context.Context
	cancelRun                    context.CancelFunc
	closeOnce                    sync.Once

	progMu    sync.Mutex
	committed position      // everything before it is in the store
	progC     chan struct{} // closed when committed moves
	caughtUp  bool          // the writer reached the journal's end when it stopped

	recorded, written, lost, rejected, estimated, writeErrors atomic.Int64
}

// NewMeter opens (or creates) the journal in cfg.Dir, and starts the
// goroutines that write its events to store, beginning with those a
// previous meter left there. Close it to flush.
func NewMeter(store UsageWriter, cfg MeterConfig) (*Meter, error) {
	if store == nil {
		return nil, errors.New("billing: NewMeter needs a UsageWriter")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.Dir, dirFileMode); err != nil {
		return nil, fmt.Errorf("billing: journal: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cp, err := readCheckpoint(cfg.Dir)
	if err != nil {
		// A damaged checkpoint: replay everything (idempotent).
		cfg.Logger.Warn("usage journal checkpoint unreadable; replaying the whole journal", zap.Error(err))
		cp = position{}
	}
	j, err := openJournal(cfg.Dir, cfg.SegmentBytes)
	if err != nil {
		unlock()
		return nil, err
	}
	jr, err := newJournalReader(cfg.Dir, cp)
	if err != nil {
		j.close()
		unlock()
		return nil, err
	}
	m := &Meter{
		cfg: cfg, store: store, prices: cfg.Prices, log: cfg.Logger, now: cfg.Now, j: j,
		est:     make(chan *Event, 1024), // bounded by bytes too: EstimateQueueBytes
		notify:  make(chan struct{}, 1),
		flushC:  make(chan struct{}, 1),
		stopEst: make(chan struct{}), stopSync: make(chan struct{}), stopWrite: make(chan struct{}),
		crashC:  make(chan struct{}),
		estDone: make(chan struct{}), syncDone: make(chan struct{}), writeDone: make(chan struct{}),
		committed: jr.pos, progC: make(chan struct{}),
	}
	m.unlock = unlock
	if _, err := rand.Read(m.idRand[:]); err != nil {
		j.close()
		unlock()
		return nil, err
	}
	m.events.New = func() any { return new(Event) }
	m.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	m.runCtx, m.cancelRun = context.WithCancel(context.Background())
	if pending := journalBytes(cfg.Dir, jr.pos.seg) - jr.pos.off - segHeader; pending > 0 {
		m.log.Info("usage journal: writing the events a previous run left", zap.Int64("journal_bytes", pending))
	}
	go m.counter()
	go m.syncer()
	go m.writer(jr)
	return m, nil
}

// NewEvent returns an empty Event from the meter's pool. Hand it back with
// Record (which the caller must do exactly once).
func (m *Meter) NewEvent() *Event {
	return m.events.Get().(*Event)
}

func (m *Meter) release(e *Event) {
	e.reset()
	m.events.Put(e)
}

// Cost returns what usage costs when served by upstreamModel for a client
// that asked for model: the upstream model's price, else the asked
// model's (an alias may be named after the real model). priced is false,
// and the cost 0, when neither has a price.
func (m *Meter) Cost(upstreamModel, model string, u providers.Usage) (cost tenancy.MicroUSD, priced bool) {
	if upstreamModel != "" {
		if c, ok := m.prices.Cost(upstreamModel, u); ok {
			return c, true
		}
	}
	return m.prices.Cost(model, u)
}

// Record takes ownership of e: it assigns its ID, prices it and appends it
// to the journal (an Estimated event is counted first, on the meter's
// counting goroutine). It does not wait for the database and never blocks
// for long: a write(2) into the page cache. See Meter for what happens
// when the journal cannot take the event.
func (m *Meter) Record(e *Event) {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		m.lose(e, errors.New("billing: Record after Close"))
		return
	}
	m.stamp(e)
	if e.Estimated {
		m.estimated.Add(1)
		n := e.textBytes()
		if m.estBytes.Add(n) <= m.cfg.EstimateQueueBytes {
			m.estPending.Add(1)
			select {
			case m.est <- e:
				return
			default:
				m.estPending.Add(-1)
			}
		}
		m.estBytes.Add(-n)
		countRough(e)
	}
	m.commit(e)
}

// stamp gives e its id and normalizes its time and strings.
func (m *Meter) stamp(e *Event) {
	if e.Time.IsZero() {
		e.Time = m.now()
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	ms := uint64(e.Time.UnixMilli())
	var id EventID
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = 0x70 | m.idRand[0]&0x0f // UUID version 7
	id[7] = m.idRand[1]
	id[8] = 0x80 | m.idRand[2]&0x3f // RFC 4122 variant
	id[9], id[10], id[11] = m.idRand[3], m.idRand[4], m.idRand[5]
	binary.BigEndian.PutUint32(id[12:], m.idSeq.Add(1))
	e.ID = id
	for _, s := range [...]*string{&e.RequestID, &e.Tenant, &e.Endpoint, &e.Model, &e.UpstreamModel, &e.Deployment, &e.Provider, &e.ErrorCode} {
		*s = cleanString(*s)
	}
}

// maxString bounds each text field of an event (a model name sent by a
// client can be anything).
const maxString = 256

// cleanString returns s as valid UTF-8 without NUL bytes (which
// PostgreSQL refuses in text), at most maxString bytes long.
func cleanString(s string) string {
	if len(s) > maxString {
		cut := maxString
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// commit prices e, appends it to the journal and releases it.
func (m *Meter) commit(e *Event) {
	e.Cost, e.Priced = m.Cost(e.UpstreamModel, e.Model, e.Usage)
	bp := m.bufs.Get().(*[]byte)
	b := append((*bp)[:0], make([]byte, recHeader)...)
	b = appendEvent(b, e)
	frame(b)
	err := m.j.append(b)
	*bp = b
	m.bufs.Put(bp)
	if err != nil {
		m.lose(e, err)
		return
	}
	m.recorded.Add(1)
	select {
	case m.notify <- struct{}{}:
	default:
	}
	m.release(e)
}

// lose logs an event that could not be journaled, in full, so that it can
// still be billed from the logs, counts it and releases it.
func (m *Meter) lose(e *Event, err error) {
	m.lost.Add(1)
	m.log.Error("usage event NOT recorded", zap.Error(err),
		zap.String("event_id", e.ID.String()), zap.Time("time", e.Time), zap.String("request_id", e.RequestID),
		zap.Int64("tenant_id", e.TenantID), zap.String("tenant", e.Tenant), zap.Int64("user_id", e.UserID),
		zap.Int64("key_id", e.KeyID), zap.String("endpoint", e.Endpoint), zap.String("model", e.Model),
		zap.String("upstream_model", e.UpstreamModel), zap.String("deployment", e.Deployment),
		zap.Int64("prompt_tokens", e.Usage.PromptTokens), zap.Int64("completion_tokens", e.Usage.CompletionTokens),
		zap.Int64("cached_tokens", e.Usage.CachedTokens), zap.Int64("reasoning_tokens", e.Usage.ReasoningTokens),
		zap.Int64("cost_micro_usd", int64(e.Cost)), zap.Bool("estimated", e.Estimated), zap.Int("status", e.Status))
	m.release(e)
}

// counter counts the tokens of Estimated events with tiktoken, off the
// request path, then journals them.
func (m *Meter) counter() {
	defer close(m.estDone)
	tc := newTokenCounter()
	handle := func(e *Event) {
		m.estBytes.Add(-e.textBytes())
		tc.count(e)
		m.commit(e)
		m.estPending.Add(-1)
	}
	for {
		select {
		case e := <-m.est:
			handle(e)
		case <-m.crashC:
			return
		case <-m.stopEst:
			for {
				select {
				case e := <-m.est:
					handle(e)
				default:
					return
				}
			}
		}
	}
}

// syncer is the journal's group commit.
func (m *Meter) syncer() {
	defer close(m.syncDone)
	t := time.NewTicker(m.cfg.SyncInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-t.C:
			if err := m.j.sync(); err != nil {
				if !failing {
					m.log.Error("usage journal: fsync failed", zap.Error(err))
				}
				failing = true
			} else {
				failing = false
			}
		case <-m.stopSync:
			return
		case <-m.crashC:
			return
		}
	}
}

// Retry delays of the writer while the store fails.
const (
	retryMin        = 100 * time.Millisecond
	retryMax        = 5 * time.Second
	checkpointEvery = time.Second
	pollInterval    = 10 * time.Millisecond
	logFailureEvery = 10 * time.Second
)

// writer reads the journal from the checkpoint and writes its events to
// the store in batches.
func (m *Meter) writer(jr *journalReader) {
	defer close(m.writeDone)
	defer jr.close()
	w := &batchWriter{m: m, jr: jr, batch: make([]Event, 0, min(m.cfg.BatchSize, 1<<16))}
	w.run()
}

type batchWriter struct {
	m        *Meter
	jr       *journalReader
	dec      decoder
	batch    []Event
	firstAt  time.Time // when the oldest event of batch was read
	stopping bool
	flush    bool

	savedCP     position
	savedAt     time.Time
	failSince   time.Time
	lastFailLog time.Time
	delay       time.Duration
	maintainAt  time.Time
}

func (w *batchWriter) run() {
	m := w.m
	w.savedCP = w.jr.pos
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if m.crashed() {
			return
		}
		w.maintain()
		end := m.j.end()
		w.fill(end)
		now := time.Now()
		if len(w.batch) > 0 && (len(w.batch) >= m.cfg.BatchSize || w.stopping || w.flush || now.Sub(w.firstAt) >= m.cfg.FlushInterval) {
			if w.write() {
				continue
			}
			// failed: wait before retrying
			if !w.sleep(w.delay) {
				w.finish(false)
				return
			}
			continue
		}
		if len(w.batch) == 0 {
			w.flush = false
			if !w.jr.pos.less(end) {
				w.checkpoint(false)
				if w.stopping {
					w.finish(true)
					return
				}
			}
		}
		// Idle: wait for the first event. Filling a batch: poll every
		// pollInterval rather than waking for each event.
		notify := m.notify
		wait := time.Minute
		if len(w.batch) > 0 {
			notify = nil
			wait = min(m.cfg.FlushInterval-now.Sub(w.firstAt), pollInterval)
		}
		if m.isMaintainer() {
			wait = min(wait, time.Until(w.maintainAt))
		}
		stop := m.stopWrite
		if w.stopping {
			stop = nil
		}
		if timer == nil {
			timer = time.NewTimer(max(wait, 0))
		} else {
			timer.Reset(max(wait, 0))
		}
		select {
		case <-notify:
		case <-m.flushC:
			w.flush = true
		case <-timer.C:
		case <-stop:
			w.stopping = true
		case <-m.runCtx.Done():
			w.finish(false)
			return
		}
	}
}

// fill reads journal records into the batch, up to BatchSize.
func (w *batchWriter) fill(end position) {
	m := w.m
	for len(w.batch) < m.cfg.BatchSize {
		p, ok, err := w.jr.next(end)
		if err != nil {
			m.log.Error("usage journal: read failed", zap.Error(err))
			return
		}
		if !ok {
			return
		}
		w.batch = append(w.batch, Event{})
		if err := w.dec.decode(p, &w.batch[len(w.batch)-1]); err != nil {
			w.batch = w.batch[:len(w.batch)-1]
			m.log.Error("usage journal: undecodable record skipped", zap.Error(err))
			continue
		}
		if len(w.batch) == 1 {
			w.firstAt = time.Now()
		}
	}
	if c := w.jr.corrupt; c > 0 {
		m.log.Error("usage journal: a segment was cut short by a corrupt record; the events after it in that segment are lost", zap.Int("segments", c))
		w.jr.corrupt = 0
	}
}

// write stores the batch; it reports whether it succeeded.
func (w *batchWriter) write() bool {
	m := w.m
	err := w.store(w.batch)
	if err != nil {
		m.writeErrors.Add(1)
		now := time.Now()
		if w.failSince.IsZero() {
			w.failSince = now
			w.lastFailLog = now
			m.log.Warn("usage store unavailable; events wait in the journal", zap.Error(err), zap.Int("batch", len(w.batch)))
		} else if now.Sub(w.lastFailLog) >= logFailureEvery {
			w.lastFailLog = now
			m.log.Warn("usage store still unavailable", zap.Error(err), zap.Duration("for", now.Sub(w.failSince)))
		}
		w.delay = min(max(2*w.delay, retryMin), retryMax)
		return false
	}
	if !w.failSince.IsZero() {
		m.log.Info("usage store back; writing the journal's backlog", zap.Duration("outage", time.Since(w.failSince)))
		w.failSince = time.Time{}
	}
	w.delay = 0
	m.written.Add(int64(len(w.batch)))
	clear(w.batch) // drop string references
	w.batch = w.batch[:0]
	m.setCommitted(w.jr.pos)
	w.checkpoint(false)
	return true
}

// store writes events, isolating those the store rejects: the batch is
// split in halves until each refused event is alone, and that one is set
// aside (quarantined). Transient errors are returned.
func (w *batchWriter) store(events []Event) error {
	m := w.m
	ctx, cancel := context.WithTimeout(m.runCtx, m.cfg.WriteTimeout)
	err := m.store.WriteUsage(ctx, events)
	cancel()
	if err == nil || !errors.Is(err, ErrRejected) {
		return err
	}
	if len(events) == 1 {
		m.quarantine(&events[0], err)
		return nil
	}
	half := len(events) / 2
	if err := w.store(events[:half]); err != nil {
		return err
	}
	return w.store(events[half:])
}

// quarantine keeps an event the store refused in rejected.log (journal
// records, readable with the journal's format) and logs it.
func (m *Meter) quarantine(e *Event, cause error) {
	m.rejected.Add(1)
	b := append(make([]byte, recHeader, 512), appendEvent(nil, e)...)
	frame(b)
	f, err := os.OpenFile(filepath.Join(m.cfg.Dir, "rejected.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err == nil {
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	m.log.Error("usage event rejected by the store; kept in rejected.log", zap.Error(cause), zap.NamedError("keep_error", err),
		zap.String("event_id", e.ID.String()), zap.String("request_id", e.RequestID), zap.String("tenant", e.Tenant),
		zap.String("model", e.Model), zap.Int64("cost_micro_usd", int64(e.Cost)))
}

// checkpoint saves the committed position, at most every checkpointEvery
// unless force.
func (w *batchWriter) checkpoint(force bool) {
	m := w.m
	pos := m.committedPos()
	if pos == w.savedCP || (!force && time.Since(w.savedAt) < checkpointEvery) {
		return
	}
	if err := writeCheckpoint(m.cfg.Dir, pos); err != nil {
		m.log.Warn("usage journal: checkpoint failed", zap.Error(err))
		return
	}
	w.savedCP, w.savedAt = pos, time.Now()
}

// finish saves the last checkpoint and says whether everything was written.
func (w *batchWriter) finish(caughtUp bool) {
	m := w.m
	if m.crashed() {
		return
	}
	w.checkpoint(true)
	m.progMu.Lock()
	m.caughtUp = caughtUp
	m.progMu.Unlock()
}

// sleep waits d; false when the meter is stopping for good.
func (w *batchWriter) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	stop := w.m.stopWrite
	if w.stopping {
		stop = nil
	}
	select {
	case <-t.C:
		return true
	case <-w.m.runCtx.Done():
		return false
	case <-stop:
		w.stopping = true // keep trying until Close's deadline
		return true
	}
}

func (m *Meter) isMaintainer() bool {
	_, ok := m.store.(UsageMaintainer)
	return ok
}

// maintain runs the store's maintenance when due.
func (w *batchWriter) maintain() {
	m := w.m
	um, ok := m.store.(UsageMaintainer)
	if !ok || time.Now().Before(w.maintainAt) || w.stopping {
		return
	}
	ctx, cancel := context.WithTimeout(m.runCtx, m.cfg.WriteTimeout)
	err := um.MaintainUsage(ctx, m.now(), m.cfg.Retention)
	cancel()
	if err != nil {
		m.log.Warn("usage store maintenance failed; retrying in a minute", zap.Error(err))
		w.maintainAt = time.Now().Add(time.Minute)
		return
	}
	w.maintainAt = time.Now().Add(m.cfg.MaintainInterval)
}

func (m *Meter) crashed() bool {
	select {
	case <-m.crashC:
		return true
	default:
		return false
	}
}

func (m *Meter) setCommitted(p position) {
	m.progMu.Lock()
	m.committed = p
	close(m.progC)
	m.progC = make(chan struct{})
	m.progMu.Unlock()
}

func (m *Meter) committedPos() position {
	m.progMu.Lock()
	defer m.progMu.Unlock()
	return m.committed
}

// Flush waits until every event recorded before the call is in the store
// (or ctx ends). It asks the writer not to wait for a full batch.
func (m *Meter) Flush(ctx context.Context) error {
	for m.estPending.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	target := m.j.end()
	for {
		m.progMu.Lock()
		done := !m.committed.less(target)
		ch := m.progC
		m.progMu.Unlock()
		if done {
			return nil
		}
		select {
		case m.flushC <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("billing: flush: %w", ctx.Err())
		case <-m.writeDone:
			return errors.New("billing: flush: the meter is closed")
		}
	}
}

// Close stops taking events, counts those waiting to be counted, writes
// everything the journal holds to the store, saves the checkpoint and
// closes the journal. If ctx ends first (the store is down), the rest
// stays in the journal for the next meter on this directory, and Close
// says so in its error. Calling Close again returns nil.
func (m *Meter) Close(ctx context.Context) error {
	err := errors.New("billing: meter already closed")
	first := false
	m.closeOnce.Do(func() {
		first = true
		m.life.Lock()
		m.closed = true
		m.life.Unlock()
		close(m.stopEst)
		<-m.estDone
		close(m.stopWrite)
		select {
		case <-m.writeDone:
		case <-ctx.Done():
			m.cancelRun()
			<-m.writeDone
		}
		m.cancelRun()
		close(m.stopSync)
		<-m.syncDone
		err = m.j.close()
		m.unlock()
		m.progMu.Lock()
		caughtUp := m.caughtUp
		m.progMu.Unlock()
		if !caughtUp {
			err = errors.Join(err, fmt.Errorf("billing: meter closed before the store had every event (%w); they stay in the journal %s for the next start",
				context.Cause(ctx), m.cfg.Dir))
		}
	})
	if !first {
		return nil
	}
	return err
}

// MeterStats are the meter's counters since it started.
type MeterStats struct {
	// Recorded events were appended to the journal.
	Recorded int64
	// Written events were accepted by the store (replays included).
	Written int64
	// Lost events could not be journaled; each was logged in full.
	Lost int64
	// Rejected events were refused by the store and kept in rejected.log.
	Rejected int64
	// Estimated events had their tokens counted by the meter.
	Estimated int64
	// WriteErrors counts failed store writes (each is retried).
	WriteErrors int64
}

// Stats returns the meter's counters. Safe to call at any time.
func (m *Meter) Stats() MeterStats {
	return MeterStats{
		Recorded: m.recorded.Load(), Written: m.written.Load(), Lost: m.lost.Load(),
		Rejected: m.rejected.Load(), Estimated: m.estimated.Load(), WriteErrors: m.writeErrors.Load(),
	}
}
