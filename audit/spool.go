package audit

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
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
	"sync/atomic"
	"syscall"
	"time"
)

// The spool is a directory of segment files, NNNNNNNNNNNNNNNNNNNN.seg, each a
// sequence of records: u32 BE payload length, u32 BE CRC-32C of the payload,
// payload (spoolFormat: the row's binary content encoding without seq and
// hashes). Writers append whole records with one write(2) and either group
// their fsyncs or leave them to syncLoop (audit.spool_fsync); one reader (the shipper) follows
// the log and deletes a segment once it is rotated and fully shipped. After a
// restart the reader starts again at the oldest segment; rows already in the
// database are skipped by event_id.

const (
	segmentSuffix   = ".seg"
	segmentMaxBytes = 8 << 20
	recordHeader    = 8
	maxRecordBytes  = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrSpoolFull means the spool reached audit.spool_max_bytes.
var ErrSpoolFull = errors.New("audit spool is full")

// spool is one region's local write-ahead log of audit rows.
type spool struct {
	dir      string
	maxBytes int64
	lock     *os.File // flock'd: one process per spool directory

	mu        sync.Mutex
	cur       *os.File
	curID     uint64
	curSize   int64
	sizes     map[uint64]int64 // bytes written per live segment
	total     int64            // bytes in live segments
	unshipped int64            // bytes written and not yet released
	records   int64            // records written and not yet released
	writeGen  uint64           // incremented per group written
	closed    bool
	notify    chan struct{} // closed and replaced when records are written

	// Group write: appends that arrive together share one write(2) and,
	// when one of them waits for it, one fdatasync (spoolGroup). forming
	// collects records; tail is the group detached last (being written or
	// done), which forming's leader waits for. spare is a written group's
	// buffer kept for the next one.
	forming *spoolGroup
	tail    *spoolGroup
	spare   []byte

	// recent is the last records written, in log order, as the rows the
	// writers encoded (at most recentMax): the shipper, normally right
	// behind the writers, takes a record from here when it is the next one
	// to read, instead of reading back and decoding what was just written.
	// The file stays the record: whatever recent no longer holds is read.
	recent []spoolRec

	// relMu serializes Release, which writes the cursor and deletes
	// segments outside mu so that appends never wait for those syscalls.
	relMu sync.Mutex

	// The fdatasync in flight (syncTo): at most one at a time, covering
	// every group written before it started; appends that need a later one
	// wait for syncing to close, then one of them starts the next.
	syncing   chan struct{} // under mu; nil when no fdatasync runs
	syncedGen atomic.Uint64
	syncs     atomic.Uint64 // fdatasyncs started by syncTo
	syncNanos atomic.Int64  // time spent in them
	// syncEvery > 0 is audit.spool_fsync: interval (syncLoop fsyncs);
	// 0 is group (durable writes wait for their fsync).
	syncEvery time.Duration
	syncStop  chan struct{}
	syncDone  chan struct{}

	// reader state, used by the shipper goroutine only
	rID     uint64
	rOff    int64
	rFile   *os.File
	rReader *bufio.Reader
}

func segName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentSuffix) }

// openSpool opens (creating) dir, repairs a torn tail left by a crash, and
// starts a fresh segment for new writes.
func openSpool(dir string, maxBytes int64) (*spool, error) {
	return openSpoolSync(dir, maxBytes, 0)
}

// openSpoolSync is openSpool with an fsync interval (0 = group commit).
func openSpoolSync(dir string, maxBytes int64, syncEvery time.Duration) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	s := &spool{dir: dir, maxBytes: maxBytes, sizes: map[uint64]int64{}, notify: make(chan struct{})}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another process (each proxy instance needs its own audit.spool_dir): %w", dir, err)
	}
	s.lock = lock
	ids, err := s.segments()
	if err != nil {
		s.lock.Close()
		return nil, err
	}
	// Resume after the shipped cursor when it names a live segment and a
	// record boundary; otherwise ship everything again (the database skips
	// rows it already has by event_id).
	cur, haveCursor := readCursor(dir)
	haveCursor = haveCursor && slices.Contains(ids, cur.id)
	type segInfo struct{ size, n int64 }
	infos := map[uint64]segInfo{}
	for _, id := range ids {
		from := int64(0)
		if haveCursor && id == cur.id {
			from = cur.off
		}
		size, n, boundary, err := repairSegment(filepath.Join(dir, segName(id)), from)
		if err != nil {
			s.lock.Close()
			return nil, err
		}
		if haveCursor && id == cur.id && boundary != cur.off {
			haveCursor = false
			if size, n, _, err = repairSegment(filepath.Join(dir, segName(id)), 0); err != nil {
				s.lock.Close()
				return nil, err
			}
		}
		infos[id] = segInfo{size, n}
	}
	for _, id := range ids {
		info := infos[id]
		s.sizes[id] = info.size
		s.total += info.size
		switch {
		case haveCursor && id < cur.id:
			// shipped before the restart, deleted on the next release
		case haveCursor && id == cur.id:
			s.unshipped += info.size - cur.off
			s.records += info.n
		default:
			s.unshipped += info.size
			s.records += info.n
		}
	}
	next := uint64(1)
	if len(ids) > 0 {
		next = ids[len(ids)-1] + 1
		s.rID = ids[0]
	} else {
		s.rID = next
	}
	if haveCursor {
		s.rID, s.rOff = cur.id, cur.off
	}
	if err := s.rotateLocked(next); err != nil {
		s.lock.Close()
		return nil, err
	}
	if syncEvery > 0 {
		s.syncEvery, s.syncStop, s.syncDone = syncEvery, make(chan struct{}), make(chan struct{})
		go s.syncLoop()
	}
	return s, nil
}

func (s *spool) segments() ([]uint64, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", s.dir, err)
	}
	var ids []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// repairSegment truncates a segment after its last intact record (a write
// torn by a crash was never acknowledged). It returns the segment's size,
// the number of records at or after offset from, and the offset of the
// first record at or after from (from itself when it is a record boundary).
func repairSegment(path string, from int64) (size, n, boundary int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var off int64
	boundary = -1
	for {
		if boundary < 0 && off >= from {
			boundary = off
		}
		payload, err := readRecord(r)
		if err != nil {
			break
		}
		if off >= from {
			n++
		}
		off += recordHeader + int64(len(payload))
	}
	if boundary < 0 {
		boundary = off
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	if st.Size() != off {
		if err := f.Truncate(off); err != nil {
			return 0, 0, 0, fmt.Errorf("spool: truncate torn tail of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, 0, fmt.Errorf("spool: %w", err)
		}
	}
	return off, n, boundary, nil
}

// cursorFile records how far the shipper got: "<segment> <offset>\n". It
// is rewritten after every shipped batch without fsync: after a power loss
// an older cursor only means re-shipping rows the database then skips.
const cursorFile = "SHIPPED"

func readCursor(dir string) (spoolPos, bool) {
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if err != nil {
		return spoolPos{}, false
	}
	var p spoolPos
	if _, err := fmt.Sscanf(string(b), "%d %d\n", &p.id, &p.off); err != nil || p.off < 0 {
		return spoolPos{}, false
	}
	return p, true
}

func (s *spool) writeCursor(p spoolPos) error {
	tmp := filepath.Join(s.dir, cursorFile+".tmp")
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", p.id, p.off), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, cursorFile))
}

var errTorn = errors.New("torn or corrupt spool record")

func readRecord(r *bufio.Reader) ([]byte, error) {
	var hdr [recordHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n == 0 || n > maxRecordBytes {
		return nil, errTorn
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, errTorn
	}
	if crc32.Checksum(payload, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, errTorn
	}
	return payload, nil
}

// rotateLocked syncs and closes the current segment and starts segment id.
func (s *spool) rotateLocked(id uint64) error {
	if s.cur != nil {
		if err := s.cur.Sync(); err != nil {
			return fmt.Errorf("spool: sync: %w", err)
		}
		s.syncedGen.Store(max(s.syncedGen.Load(), s.writeGen))
		if err := s.cur.Close(); err != nil {
			return fmt.Errorf("spool: close: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(s.dir, segName(id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	s.cur, s.curID, s.curSize = f, id, 0
	s.sizes[id] = 0
	return nil
}

// spoolFormat is the first byte of a binary spool record: format 2 is
// u8 2 || u64 BE ref || the row's content encoding (README.md, "Hash
// encoding"), seq and hashes not yet assigned. Format 1 records (JSON, from
// earlier builds) start with '{' and are still read.
const spoolFormat = 2

// spoolFormatSalted (3) is format 2 with u8 length || the statement salt
// after the ref (rows of audit.statement: full).
const spoolFormatSalted = 3

// spoolRec is one record read from the spool: a row, the reference that
// pairs a statement with its result, and the position after it (with its
// size in bytes).
type spoolRec struct {
	row *Row
	ref uint64
	end spoolPos
}

func encodeSpoolRecord(buf []byte, r *Row, ref uint64) []byte {
	hdr := len(buf)
	format := byte(spoolFormat)
	if r.StatementSalt != nil {
		format = spoolFormatSalted
	}
	buf = append(buf, 0, 0, 0, 0, 0, 0, 0, 0, format)
	buf = binary.BigEndian.AppendUint64(buf, ref)
	if format == spoolFormatSalted {
		buf = append(buf, byte(len(r.StatementSalt)))
		buf = append(buf, r.StatementSalt...)
	}
	v := int16(HashVersion)
	if r.hasAttribution() {
		v = HashVersionAttributed
	}
	buf = r.encodeContent(buf, v, false) // the text itself, never the commitment
	payload := buf[hdr+recordHeader:]
	binary.BigEndian.PutUint32(buf[hdr:], uint32(len(payload)))
	binary.BigEndian.PutUint32(buf[hdr+4:], crc32.Checksum(payload, crcTable))
	return buf
}

func decodeSpoolRecord(payload []byte) (*Row, uint64, error) {
	if len(payload) > 0 && payload[0] == '{' {
		var j RowJSON
		if err := json.Unmarshal(payload, &j); err != nil {
			return nil, 0, err
		}
		r, err := j.Row()
		return r, 0, err
	}
	if len(payload) < 9 || (payload[0] != spoolFormat && payload[0] != spoolFormatSalted) {
		return nil, 0, errors.New("unknown spool record format")
	}
	ref, rest := binary.BigEndian.Uint64(payload[1:9]), payload[9:]
	var salt []byte
	if payload[0] == spoolFormatSalted {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, 0, errors.New("torn statement salt")
		}
		salt, rest = slices.Clone(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	}
	r, err := decodeContent(rest)
	if err != nil {
		return nil, 0, err
	}
	if salt != nil && r.Statement != nil {
		r.StatementSalt = salt
		r.StatementCommitment = statementCommitment(salt, *r.Statement)
	}
	r.HashVersion = r.hashVersionFor()
	return r, ref, nil
}

// Append writes rows to the log (unpaired). With durable it returns only
// once the rows are as durable as the spool's fsync policy promises; with
// limit it refuses with ErrSpoolFull past the high-water mark.
// The rows appended belong to the spool from then on: the shipper may take
// them as they are (recent).
func (s *spool) Append(rows []*Row, durable, limit bool) error {
	var buf []byte
	mem := make([]spoolMem, len(rows))
	for i, r := range rows {
		n := len(buf)
		buf = encodeSpoolRecord(buf, r, 0)
		mem[i] = spoolMem{row: r, size: int64(len(buf) - n)}
	}
	return s.write(buf, mem, durable, limit)
}

// AppendRef writes one row with the reference pairing it with its
// statement or result.
func (s *spool) AppendRef(r *Row, ref uint64, durable, limit bool) error {
	var scratch [512]byte
	rec := encodeSpoolRecord(scratch[:0], r, ref)
	mem := [1]spoolMem{{row: r, ref: ref, size: int64(len(rec))}}
	return s.write(rec, mem[:], durable, limit)
}

// spoolMem is a record being written, as the row it encodes.
type spoolMem struct {
	row  *Row
	ref  uint64
	size int64 // encoded bytes, header included
}

// recentMax bounds recent (to twice as many): a few batches of the shipper.
const recentMax = 8192

// spoolGroup is the records of appends that arrived while the group before
// them was being written: they are written with one write(2). The member
// that opened the group is its leader: it waits for the group before (prev)
// to be written, then writes for everyone. Members that wait for an fsync
// then call syncTo, where, as in PostgreSQL's WAL flush, one fdatasync runs
// at a time and covers everything written before it started: groups written
// while it runs share the next one, started by the first of their members
// to wake. No timer is involved: a lone append is written (and synced) at
// once.
type spoolGroup struct {
	buf  []byte
	mem  []spoolMem // buf's records as rows, for recent
	prev *spoolGroup

	written chan struct{} // closed once buf is written (or failed: err)
	claimed bool          // a leader is writing it, its own or the one before (s.mu)
	err     error
	gen     uint64 // the write generation that covers buf
}

// write appends n encoded records. They join the forming group; the
// group's leader writes it once the group before is written, so concurrent
// appends share one write(2). In group mode a durable append then returns
// after an fdatasync that covers it; in interval mode (and for appends that
// are not durable) it returns once its group is written, and syncLoop
// fsyncs the file every interval.
func (s *spool) write(rec []byte, mem []spoolMem, durable, limit bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("spool: closed")
	}
	if limit && s.unshipped+int64(len(rec)) > s.maxBytes {
		s.mu.Unlock()
		return ErrSpoolFull
	}
	s.unshipped += int64(len(rec)) // counted at once: the high-water mark includes forming groups
	g := s.forming
	leader := g == nil
	if leader {
		g = &spoolGroup{buf: s.spare[:0], prev: s.tail, written: make(chan struct{})}
		s.spare = nil
		s.forming = g
	}
	g.buf = append(g.buf, rec...)
	g.mem = append(g.mem, mem...)
	s.mu.Unlock()
	if leader {
		s.lead(g)
	} else {
		<-g.written
	}
	if g.err != nil || !durable || s.syncEvery > 0 {
		return g.err
	}
	return s.syncTo(g.gen)
}

// lead writes group g once the group before it is written; appends
// arriving meanwhile form the next group.
func (s *spool) lead(g *spoolGroup) {
	if g.prev != nil {
		<-g.prev.written
		g.prev = nil // no chain of finished groups stays reachable
	}
	s.mu.Lock()
	if g.claimed {
		// The leader before wrote this group too (combineMax).
		s.mu.Unlock()
		<-g.written
		return
	}
	g.claimed = true
	for n := 0; ; n++ {
		s.writeGroupLocked(g)
		// Write the group that formed meanwhile now, while this goroutine
		// runs, rather than wake its leader: with many sessions on two
		// cores a woken leader waited ~250 µs for a CPU (go tool trace,
		// 64 clients), and every group behind it with it.
		next := s.forming
		if next == nil || next.claimed || n+1 >= combineMax {
			s.mu.Unlock()
			return
		}
		next.claimed = true // its leader, once awake, finds it written
		g = next
	}
}

// combineMax bounds the groups one leader writes in a row: its own
// statement waits meanwhile.
const combineMax = 4

// testHookGroupWrite, when set (tests only), runs before each group's
// write(2), outside s.mu.
var testHookGroupWrite func()

// writeGroupLocked writes group g (s.mu held; released during the write,
// held again on return) and wakes its members.
func (s *spool) writeGroupLocked(g *spoolGroup) {
	s.forming = nil
	s.tail = g
	var err error
	if s.curSize > 0 && s.curSize+int64(len(g.buf)) > segmentMaxBytes {
		err = s.rotateLocked(s.curID + 1)
	}
	f, id, at := s.cur, s.curID, s.curSize
	s.mu.Unlock()
	if testHookGroupWrite != nil {
		testHookGroupWrite()
	}
	if err == nil {
		if _, err = f.Write(g.buf); err != nil {
			// A partial write would corrupt the segment for later appends:
			// cut it off (only a leader writes, and one at a time).
			_ = f.Truncate(at)
			err = fmt.Errorf("spool: write: %w", err)
		}
	}
	s.mu.Lock()
	if err != nil {
		s.unshipped -= int64(len(g.buf))
	} else {
		size := int64(len(g.buf))
		s.curSize += size
		s.sizes[s.curID] = s.curSize
		s.total += size
		s.records += int64(len(g.mem))
		s.keepRecentLocked(g.mem, id, at)
		s.writeGen++
		g.gen = s.writeGen
		close(s.notify)
		s.notify = make(chan struct{})
	}
	if s.spare == nil && cap(g.buf) <= 1<<20 {
		s.spare = g.buf[:0]
	}
	g.buf, g.mem = nil, nil
	g.err = err
	close(g.written)
}

// keepRecentLocked adds the records just written at offset off of segment
// id to recent. Past twice recentMax it keeps the newest recentMax (a
// reader that far behind reads the file anyway; trimming in halves keeps
// the copying constant per record).
func (s *spool) keepRecentLocked(mem []spoolMem, id uint64, off int64) {
	for _, m := range mem {
		off += m.size
		s.recent = append(s.recent, spoolRec{row: m.row, ref: m.ref, end: spoolPos{id, off, m.size}})
	}
	if len(s.recent) > 2*recentMax {
		n := copy(s.recent, s.recent[len(s.recent)-recentMax:])
		clear(s.recent[n:])
		s.recent = s.recent[:n]
	}
}

// takeRecentLocked appends to recs, up to max in all, the records of recent
// that follow one another from the reader position in its segment, and
// forgets those before it. The reader owns the rows taken.
func (s *spool) takeRecentLocked(recs []spoolRec, max int) []spoolRec {
	i := 0
	for i < len(s.recent) {
		e := s.recent[i].end
		if e.id > s.rID || (e.id == s.rID && e.off-e.bytes >= s.rOff) {
			break
		}
		i++ // already read (from the file)
	}
	off := s.rOff
	j := i
	for j < len(s.recent) && len(recs) < max {
		e := s.recent[j].end
		if e.id != s.rID || e.off-e.bytes != off {
			break
		}
		recs = append(recs, s.recent[j])
		off = e.off
		j++
	}
	if j > 0 {
		n := copy(s.recent, s.recent[j:])
		clear(s.recent[n:])
		s.recent = s.recent[:n]
	}
	return recs
}

// syncLoop fsyncs the current segment every syncEvery when something was
// written since the last fsync (audit.spool_fsync: interval).
func (s *spool) syncLoop() {
	defer close(s.syncDone)
	t := time.NewTicker(s.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.syncStop:
			return
		}
		s.mu.Lock()
		gen := s.writeGen
		s.mu.Unlock()
		if s.syncedGen.Load() < gen {
			_ = s.syncTo(gen) // a failing disk shows in the next group write or at Close
		}
	}
}

// syncTo returns once an fdatasync has covered write generation gen. When
// one is running it waits for it (with every other waiter: closing a
// channel wakes them all at once, where a mutex would wake them one after
// another) and starts the next one itself unless that one covered gen.
func (s *spool) syncTo(gen uint64) error {
	for {
		if s.syncedGen.Load() >= gen {
			return nil
		}
		s.mu.Lock()
		if s.syncedGen.Load() >= gen {
			s.mu.Unlock()
			return nil
		}
		if running := s.syncing; running != nil {
			s.mu.Unlock()
			<-running
			continue
		}
		done := make(chan struct{})
		s.syncing = done
		f, upTo := s.cur, s.writeGen
		s.mu.Unlock()
		s.syncs.Add(1)
		began := time.Now()
		err := fdatasync(f)
		s.syncNanos.Add(int64(time.Since(began)))
		s.mu.Lock()
		if err == nil {
			s.syncedGen.Store(max(s.syncedGen.Load(), upTo))
		} else if s.cur != f {
			err = nil // rotated meanwhile: rotateLocked synced it and moved syncedGen
		}
		s.syncing = nil
		s.mu.Unlock()
		close(done)
		if err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
	}
}

// fdatasync flushes f's data and the metadata needed to read it back (its
// size), but not its times: what a spool segment needs, for less than a
// full fsync. The file cannot be closed while the call runs.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// Bytes returns the bytes written and not yet shipped (what the high-water
// mark limits).
func (s *spool) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unshipped
}

// Pending returns the records written and not yet released.
func (s *spool) Pending() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.records
}

// spoolPos is a reader position: a segment and an offset in it.
type spoolPos struct {
	id    uint64
	off   int64
	bytes int64 // bytes read since the position Next started at
}

// nextRecs reads up to max records from the reader position and moves the
// reader past them. With none to read it returns a channel that is closed
// when more are written.
func (s *spool) nextRecs(max int) ([]spoolRec, <-chan struct{}, error) {
	var recs []spoolRec
	var row *Row
	var ref uint64
	for len(recs) < max {
		s.mu.Lock()
		size, live := s.sizes[s.rID]
		curID, notify := s.curID, s.notify
		had := len(recs)
		if live && s.rOff < size {
			recs = s.takeRecentLocked(recs, max)
		}
		s.mu.Unlock()
		if len(recs) > had {
			s.rOff = recs[len(recs)-1].end.off
			s.closeReader() // its buffer is behind the position now
			continue
		}
		if !live || s.rOff >= size {
			if s.rID < curID {
				// Finished a rotated segment: move on (it is deleted on Release).
				s.closeReader()
				s.rID, s.rOff = s.nextLive(s.rID), 0
				if len(recs) > 0 {
					break
				}
				continue
			}
			if len(recs) == 0 {
				return nil, notify, nil
			}
			break
		}
		if s.rFile == nil {
			f, err := os.Open(filepath.Join(s.dir, segName(s.rID)))
			if err != nil {
				return nil, nil, fmt.Errorf("spool: %w", err)
			}
			if _, err := f.Seek(s.rOff, io.SeekStart); err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("spool: %w", err)
			}
			s.rFile, s.rReader = f, bufio.NewReaderSize(f, 256<<10)
		}
		payload, err := readRecord(s.rReader)
		if err != nil {
			return nil, nil, fmt.Errorf("spool: segment %d offset %d: %w", s.rID, s.rOff, err)
		}
		row, ref, err = decodeSpoolRecord(payload)
		if err != nil {
			return nil, nil, fmt.Errorf("spool: segment %d offset %d: %w", s.rID, s.rOff, err)
		}
		recSize := recordHeader + int64(len(payload))
		s.rOff += recSize
		recs = append(recs, spoolRec{row: row, ref: ref, end: spoolPos{s.rID, s.rOff, recSize}})
	}
	return recs, nil, nil
}

// Next returns up to max rows from the reader position and the position
// after them (with the bytes read); the reader moves on, and Release
// records them as shipped. It returns no rows and a channel that is closed
// when more are written.
func (s *spool) Next(max int) ([]*Row, spoolPos, <-chan struct{}, error) {
	start := s.Pos()
	recs, notify, err := s.nextRecs(max)
	if err != nil || len(recs) == 0 {
		return nil, start, notify, err
	}
	rows := make([]*Row, len(recs))
	var read int64
	for i, r := range recs {
		rows[i] = r.row
		read += r.end.bytes
	}
	end := recs[len(recs)-1].end
	end.bytes = read
	return rows, end, nil, nil
}

func (s *spool) nextLive(after uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.curID
	for id := range s.sizes {
		if id > after && id < next {
			next = id
		}
	}
	return next
}

func (s *spool) closeReader() {
	if s.rFile != nil {
		s.rFile.Close()
		s.rFile, s.rReader = nil, nil
	}
}

// Release records that n rows up to pos are in the database and deletes
// every rotated segment before pos. The cursor file and the deletions are
// written outside mu: appends never wait for them.
func (s *spool) Release(pos spoolPos, n int) error {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	s.mu.Lock()
	s.records -= int64(n)
	if s.records < 0 {
		s.records = 0
	}
	s.unshipped -= pos.bytes
	if s.unshipped < 0 {
		s.unshipped = 0
	}
	var gone []uint64
	for id := range s.sizes {
		if id < pos.id && id != s.curID {
			gone = append(gone, id)
		}
	}
	s.mu.Unlock()
	if err := s.writeCursor(pos); err != nil {
		return fmt.Errorf("spool: cursor: %w", err)
	}
	for _, id := range gone {
		if err := os.Remove(filepath.Join(s.dir, segName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: %w", err)
		}
		s.mu.Lock()
		s.total -= s.sizes[id]
		delete(s.sizes, id)
		s.mu.Unlock()
	}
	return nil
}

// Pos returns the reader position.
func (s *spool) Pos() spoolPos { return spoolPos{s.rID, s.rOff, 0} }

// SkipSegment moves the reader past a segment it cannot read (corruption).
func (s *spool) SkipSegment() {
	s.closeReader()
	s.rID, s.rOff = s.nextLive(s.rID), 0
}

// Rewind moves the reader back to pos (after a failed shipment).
func (s *spool) Rewind(pos spoolPos) {
	s.closeReader()
	s.rID, s.rOff = pos.id, pos.off
}

// Close waits for the groups already accepted to be written, then syncs
// and closes the current segment.
func (s *spool) Close() error {
	if s.syncStop != nil {
		select {
		case <-s.syncStop:
		default:
			close(s.syncStop)
			<-s.syncDone
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	last := s.forming
	if last == nil {
		last = s.tail
	}
	s.mu.Unlock()
	if last != nil {
		<-last.written
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeReader()
	err := s.cur.Sync()
	if cerr := s.cur.Close(); err == nil {
		err = cerr
	}
	s.lock.Close()
	return err
}
