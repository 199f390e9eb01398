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
// hashes), then zeros up to the segment's allocated size while it is the
// one being written. The segment being written is allocated up front
// (fallocate) and mapped shared: an append copies its record into the
// mapping under the spool's mutex, which puts it in the kernel's page cache
// (it survives kill -9 of the process, as a write(2) would) without a system
// call or a wait for another goroutine's write; fsyncs are grouped (group)
// or left to syncLoop (interval), per audit.spool_fsync. One reader (the
// shipper) follows the log and deletes a segment once it is rotated and
// fully shipped. After a restart the reader starts again at the oldest
// segment; rows already in the database are skipped by event_id.

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

	mu      sync.Mutex
	cur     *os.File
	curID   uint64
	curSize int64  // bytes of records in cur
	curMap  []byte // cur, mapped shared: its allocated length
	// Rotation takes no system call under mu: the next segment is made
	// ready (next) once the current one is half full, and the one rotated
	// out is synced, unmapped and cut outside mu (retiring). Both used to
	// happen under mu and stalled every append for 10-30 ms per 8 MiB
	// under load.
	next      *segFile
	preparing uint64           // id of the segment prepareNext is making (0: none)
	prepWG    sync.WaitGroup   // prepareNext in flight
	retiring  *retired         // rotated out, not yet synced
	retireWG  sync.WaitGroup   // retire goroutines, synced or not (Close waits)
	sizes     map[uint64]int64 // bytes written per live segment
	total     int64            // bytes in live segments
	unshipped int64            // bytes written and not yet released
	records   int64            // records written and not yet released
	writeGen  uint64           // incremented per append written
	closed    bool
	notify    chan struct{} // closed and replaced when records are written after the reader took it
	notified  bool          // the reader took notify (nextRecs): the next write closes it

	// recent is the last records written, in log order, as the rows the
	// writers encoded (at most recentMax): the shipper, normally right
	// behind the writers, takes a record from here when it is the next one
	// to read, instead of reading back and decoding what was just written.
	// The file stays the record: whatever recent no longer holds is read.
	recent []spoolRec
	// recentArr is recent's array from its start: once the reader has
	// taken every record, recent starts over at the front of it instead of
	// growing past its end (a new array every few batches otherwise).
	recentArr []spoolRec

	// relMu serializes Release, which writes the cursor and deletes
	// segments outside mu so that appends never wait for those syscalls.
	relMu  sync.Mutex
	cursor *os.File // cursorFile, opened by the first Release (relMu)

	// The fdatasync in flight (syncTo): at most one at a time, covering
	// every append written before it started; appends that need a later one
	// wait for syncing to close, then one of them starts the next.
	syncing   chan struct{} // under mu; nil when no fdatasync runs
	syncedGen atomic.Uint64
	syncs     atomic.Uint64 // fdatasyncs started by syncTo
	syncNanos atomic.Int64  // time spent in them
	// Group gathering (group mode, syncTo): durable appends written since
	// the last fdatasync began (under mu), how many the last one covered,
	// and, while the next one's starter waits for that many, the channel
	// the append that completes the group closes.
	durableSince uint64
	lastGroup    uint64
	gathered     chan struct{}
	gatherMax    time.Duration // groupGatherMax (tests change it)
	// syncEvery > 0 is audit.spool_fsync: interval (syncLoop fsyncs);
	// 0 is group (durable writes wait for their fsync).
	syncEvery time.Duration
	syncStop  chan struct{}
	syncDone  chan struct{}

	// reader state, used by the shipper goroutine only; rEnd is where the
	// records rReader can read end (the segment's size when it was opened:
	// past it, a segment being written holds zeros or a record being copied)
	rID     uint64
	rOff    int64
	rEnd    int64
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
	s := &spool{dir: dir, maxBytes: maxBytes, sizes: map[uint64]int64{}, notify: make(chan struct{}), gatherMax: groupGatherMax}
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
	seg, err := openSegment(dir, next, segmentMaxBytes)
	if err != nil {
		s.lock.Close()
		return nil, err
	}
	s.cur, s.curID, s.curMap = seg.f, seg.id, seg.m
	s.sizes[seg.id] = 0
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

// cursorLen is the cursor's fixed width: two 20-digit numbers, a space and
// a newline.
const cursorLen = 42

// writeCursor rewrites the cursor in place, at a fixed width so that one
// write replaces all of it (relMu held). A new file and a rename per
// shipped batch made ext4 allocate an inode each time, and its search past
// recently deleted inodes took 8% of the proxy's CPU in spool mode.
func (s *spool) writeCursor(p spoolPos) error {
	if s.cursor == nil {
		f, err := os.OpenFile(filepath.Join(s.dir, cursorFile), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return err
		}
		// An earlier build wrote it unpadded (shorter): the zeros a crash
		// could leave between the cut and the write read as its end.
		if err := f.Truncate(cursorLen); err != nil {
			f.Close()
			return err
		}
		s.cursor = f
	}
	var buf [cursorLen]byte
	_, err := s.cursor.WriteAt(fmt.Appendf(buf[:0], "%020d %020d\n", p.id, p.off), 0)
	return err
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

// segFile is a segment file open for writing and its shared mapping.
type segFile struct {
	f  *os.File
	id uint64
	m  []byte
}

// openSegment creates segment id with size bytes allocated and mapped, and
// syncs the directory so that its name survives a host crash.
func openSegment(dir string, id uint64, size int64) (*segFile, error) {
	path := filepath.Join(dir, segName(id))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	m, err := mapSegment(f, size)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("spool: segment %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return &segFile{f: f, id: id, m: m}, nil
}

// discard unmaps, closes and removes a segment that was never written.
func (g *segFile) discard(dir string) {
	syscall.Munmap(g.m) //nolint:errcheck // nothing was written to it
	g.f.Close()
	os.Remove(filepath.Join(dir, segName(g.id)))
}

// prepareNext makes segment id ready for the next rotation.
func (s *spool) prepareNext(id uint64) {
	defer s.prepWG.Done()
	seg, err := openSegment(s.dir, id, segmentMaxBytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.preparing = 0
	if err != nil {
		return // the rotation makes it, and reports what fails
	}
	if s.closed || s.next != nil || id != s.curID+1 {
		seg.discard(s.dir) // a rotation could not wait for it
		return
	}
	s.next = seg
}

// retired is a segment rotated out: retire syncs, unmaps and cuts it.
type retired struct {
	seg  segFile
	size int64         // bytes of records in it
	upTo uint64        // the write generation of its last record
	done chan struct{} // closed once synced (err says how)
	err  error
}

// rotateLocked starts a segment with room for at least need bytes: the
// prepared one when it has the room, else a new one. The caller retires the
// returned segment (outside mu); no other may be retiring.
func (s *spool) rotateLocked(need int64) (*retired, error) {
	seg := s.next
	s.next = nil
	if seg == nil || int64(len(seg.m)) < need {
		if seg != nil {
			seg.discard(s.dir)
		}
		var err error
		if seg, err = openSegment(s.dir, max(s.curID, s.preparing)+1, max(segmentMaxBytes, need)); err != nil {
			return nil, err
		}
	}
	r := &retired{seg: segFile{s.cur, s.curID, s.curMap}, size: s.curSize, upTo: s.writeGen, done: make(chan struct{})}
	s.retiring = r
	s.cur, s.curID, s.curSize, s.curMap = seg.f, seg.id, 0, seg.m
	s.sizes[seg.id] = 0
	return r, nil
}

// retire syncs a rotated segment (durable appends in it wait for that:
// syncTo), then cuts it.
func (s *spool) retire(r *retired) {
	if testHookRetire != nil {
		testHookRetire()
	}
	err := fdatasync(r.seg.f)
	s.mu.Lock()
	if err == nil {
		s.syncedGen.Store(max(s.syncedGen.Load(), r.upTo))
	} else {
		r.err = fmt.Errorf("spool: sync segment %d: %w", r.seg.id, err)
	}
	s.retiring = nil
	close(r.done)
	s.mu.Unlock()
	_ = r.seg.cut(r.size) // synced: what the cut fails to do, a restart's repair does
}

// testHookRetire, when set (tests only), runs as retire starts.
var testHookRetire func()

// cut unmaps a synced segment, cuts it to its size bytes of records and
// closes it. The cut is not synced: after a host crash the zeros past the
// records read as the segment's end.
func (g *segFile) cut(size int64) error {
	err := syscall.Munmap(g.m)
	if terr := g.f.Truncate(size); err == nil {
		err = terr
	}
	if cerr := g.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: finish segment %d: %w", g.id, err)
	}
	return nil
}

// finishLocked syncs the current segment and cuts it (Close).
func (s *spool) finishLocked() error {
	if err := fdatasync(s.cur); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	s.syncedGen.Store(max(s.syncedGen.Load(), s.writeGen))
	seg := segFile{s.cur, s.curID, s.curMap}
	s.cur, s.curMap = nil, nil
	return seg.cut(s.curSize)
}

// mapSegment allocates size bytes to f and maps them shared. Allocating
// first makes a full disk fail the rotation (the append is refused) rather
// than fault the process when a page is first written; file systems that
// cannot allocate ahead get a sparse file.
func mapSegment(f *os.File, size int64) ([]byte, error) {
	fd := int(f.Fd())
	if err := syscall.Fallocate(fd, 0, 0, size); err != nil {
		if !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.ENOSYS) {
			return nil, fmt.Errorf("allocate %d bytes: %w", size, err)
		}
		if err := f.Truncate(size); err != nil {
			return nil, err
		}
	}
	m, err := syscall.Mmap(fd, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	return m, nil
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
	res *resultRec // instead of row: a result in format 4
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

// decodeRecord decodes a record of any format.
func decodeRecord(payload []byte) (spoolRec, error) {
	if len(payload) > 0 && payload[0] == spoolFormatResult {
		res, ref, err := decodeResultRecord(payload)
		return spoolRec{res: res, ref: ref}, err
	}
	row, ref, err := decodeSpoolRecord(payload)
	return spoolRec{row: row, ref: ref}, err
}

// decodeSpoolRecord decodes a row's record (formats 1 to 3).
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
	bp := encodeBufs.Get().(*[]byte)
	defer putEncodeBuf(bp)
	buf := (*bp)[:0]
	mem := make([]spoolMem, len(rows))
	for i, r := range rows {
		n := len(buf)
		buf = encodeSpoolRecord(buf, r, 0)
		mem[i] = spoolMem{row: r, size: int64(len(buf) - n)}
	}
	*bp = buf
	return s.write(buf, mem, durable, limit)
}

// encodeBufs holds the buffers records are encoded in before write copies
// them into the segment: an encoding escapes to the heap (it passes through
// the row's encoder), and a fresh buffer per record was a third of the
// spool's allocations, paid again in GC work by every statement.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putEncodeBuf returns a buffer to encodeBufs unless a huge record grew it.
func putEncodeBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		encodeBufs.Put(bp)
	}
}

// AppendResult writes a result in format 4 (spool_result.go) with the
// reference pairing it with its statement. Nobody waits for it: it is not
// durable, and refused only by a closed spool or a failed rotation.
func (s *spool) AppendResult(r *resultRec, ref uint64) error {
	bp := encodeBufs.Get().(*[]byte)
	defer putEncodeBuf(bp)
	*bp = encodeResultRecord((*bp)[:0], r, ref)
	mem := [1]spoolMem{{res: r, ref: ref, size: int64(len(*bp))}}
	return s.write(*bp, mem[:], false, false)
}

// AppendRef writes one row with the reference pairing it with its
// statement or result.
func (s *spool) AppendRef(r *Row, ref uint64, durable, limit bool) error {
	bp := encodeBufs.Get().(*[]byte)
	defer putEncodeBuf(bp)
	*bp = encodeSpoolRecord((*bp)[:0], r, ref)
	mem := [1]spoolMem{{row: r, ref: ref, size: int64(len(*bp))}}
	return s.write(*bp, mem[:], durable, limit)
}

// spoolMem is a record being written, as the row (or result) it encodes.
type spoolMem struct {
	row  *Row
	res  *resultRec
	ref  uint64
	size int64 // encoded bytes, header included
}

// recentMax bounds recent (to twice as many): what the shipper gathers
// while its previous batch waits for the integrator's next round (up to
// integratePace and batchLinger: about 0.35 s, two records per statement,
// 16384 of them at 23,000 statements/s). A shipper that falls further
// behind reads the file and decodes every record it takes.
const recentMax = 16384

// write appends encoded records: it copies them into the current segment's
// mapping (starting a new segment when they do not fit) and returns, in
// interval mode and for appends that are not durable, at once: syncLoop
// fsyncs the file every interval. In group mode a durable append then
// waits for an fdatasync that covers it (syncTo), shared with every append
// written before that fdatasync started.
func (s *spool) write(rec []byte, mem []spoolMem, durable, limit bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("spool: closed")
	}
	size := int64(len(rec))
	if limit && s.unshipped+size > s.maxBytes {
		s.mu.Unlock()
		return ErrSpoolFull
	}
	var rotated *retired
	for rotated == nil && s.curSize+size > int64(len(s.curMap)) {
		if r := s.retiring; r != nil {
			// the segment before is still being synced: one at a time
			s.mu.Unlock()
			<-r.done
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				return errors.New("spool: closed")
			}
			continue
		}
		var err error
		if rotated, err = s.rotateLocked(size); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	at := s.curSize
	copy(s.curMap[at:], rec)
	s.curSize += size
	s.sizes[s.curID] = s.curSize
	s.total += size
	s.unshipped += size
	s.records += int64(len(mem))
	s.keepRecentLocked(mem, s.curID, at)
	s.writeGen++
	gen := s.writeGen
	if durable && s.syncEvery == 0 {
		s.durableSince++
		if s.gathered != nil && s.durableSince >= s.lastGroup {
			close(s.gathered)
			s.gathered = nil
		}
	}
	if s.notified {
		close(s.notify)
		s.notify, s.notified = make(chan struct{}), false
	}
	if s.next == nil && s.preparing == 0 && 2*s.curSize >= int64(len(s.curMap)) {
		s.preparing = s.curID + 1
		s.prepWG.Add(1)
		go s.prepareNext(s.preparing)
	}
	s.mu.Unlock()
	if rotated != nil {
		// On a goroutine of its own: the fdatasync of a whole segment took
		// tens of milliseconds, which the statement whose record happened
		// to rotate waited for though nothing needed it to (a durable
		// append in group mode waits for it in syncTo, and Close waits for
		// it).
		s.retireWG.Add(1)
		go func() {
			defer s.retireWG.Done()
			s.retire(rotated)
		}()
	}
	if !durable || s.syncEvery > 0 {
		return nil
	}
	return s.syncTo(gen)
}

// keepRecentLocked adds the records just written at offset off of segment
// id to recent. Past twice recentMax it keeps the newest recentMax (a
// reader that far behind reads the file anyway).
func (s *spool) keepRecentLocked(mem []spoolMem, id uint64, off int64) {
	if len(s.recent) == 0 {
		s.recent = s.recentArr[:0]
	}
	if len(s.recent)+len(mem) > cap(s.recent) {
		// append moves recent to a new array, which starts with it
		s.recent = slices.Grow(s.recent, len(mem))
		s.recentArr = s.recent[:0]
	}
	for _, m := range mem {
		off += m.size
		s.recent = append(s.recent, spoolRec{row: m.row, res: m.res, ref: m.ref, end: spoolPos{id, off, m.size}})
	}
	if len(s.recent) > 2*recentMax {
		s.dropRecentLocked(len(s.recent) - recentMax)
	}
}

// dropRecentLocked forgets the first n records of recent by slicing them
// off, not by moving the rest to the front: that copy, under mu, made
// appends wait for the reader. The next append that outgrows the array
// moves only what is left.
func (s *spool) dropRecentLocked(n int) {
	clear(s.recent[:n]) // let the rows go
	s.recent = s.recent[n:]
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
		s.dropRecentLocked(j)
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
		if r := s.retiring; r != nil {
			// Records before the rotation are synced by its retire: an
			// fdatasync of the new segment must not count for them.
			s.mu.Unlock()
			<-r.done
			if r.err != nil && gen <= r.upTo {
				return r.err
			}
			continue
		}
		if running := s.syncing; running != nil {
			s.mu.Unlock()
			<-running
			continue
		}
		done := make(chan struct{})
		s.syncing = done
		if s.gatherLocked() && s.retiring != nil {
			// rotated while gathering: its retire syncs what came before
			s.syncing = nil
			s.mu.Unlock()
			close(done)
			continue
		}
		f, upTo := s.cur, s.writeGen
		s.lastGroup, s.durableSince = s.durableSince, 0
		s.mu.Unlock()
		s.syncs.Add(1)
		began := time.Now()
		err := fdatasync(f)
		s.syncNanos.Add(int64(time.Since(began)))
		s.mu.Lock()
		if err == nil {
			s.syncedGen.Store(max(s.syncedGen.Load(), upTo))
		} else if s.cur != f {
			err = nil // rotated meanwhile: retire syncs it and moves syncedGen
		}
		s.syncing = nil
		s.mu.Unlock()
		close(done)
		if err != nil {
			return fmt.Errorf("spool: fsync: %w", err)
		}
	}
}

// groupGatherMax bounds how long the starter of a group's fdatasync waits
// for its group. An fdatasync here takes 0.1-0.5 ms idle and 0.3-1 ms
// under load: a group that has not come back within about one of them is
// not coming back together.
const groupGatherMax = 500 * time.Microsecond

// gatherLocked, called with mu held by the append about to start an
// fdatasync (group mode), waits until as many durable appends have been
// written since the last fdatasync began as that one covered, or for
// s.gatherMax: PostgreSQL's commit_delay, sized by the last group instead
// of a setting. Without it an fdatasync starts as soon as one append needs
// it, covering that append and the few written during the one before, and
// the clients back a moment later wait for it and then for their own:
// 2.5 statements per fdatasync at 8 clients in the bench harness, where an
// fdatasync also costs 50-90 µs of CPU (bench/results/2026-12-06-s11-README.md).
// A group that shrank (clients gone idle) costs one wait of gatherMax,
// after which the group is the size that came; a lone client never waits.
// The syncing channel is set before the wait, so appends meanwhile wait for
// this fdatasync instead of starting their own.
//
// It reports whether it waited (and so let go of mu meanwhile).
func (s *spool) gatherLocked() bool {
	if s.lastGroup <= 1 || s.durableSince >= s.lastGroup || s.closed {
		return false
	}
	ch := make(chan struct{})
	s.gathered = ch
	s.mu.Unlock()
	t := time.NewTimer(s.gatherMax)
	select {
	case <-ch:
	case <-t.C:
	}
	t.Stop()
	s.mu.Lock()
	if s.gathered == ch {
		s.gathered = nil
	}
	return true
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

// nextRecs reads up to max records from the reader position, into buf's
// array (the caller's, reused from call to call; its contents are
// dropped), and moves the reader past them. With none to read it returns a
// channel that is closed when more are written.
func (s *spool) nextRecs(buf []spoolRec, max int) ([]spoolRec, <-chan struct{}, error) {
	recs := buf[:0]
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
				// Wait for notify, which a write closes once notified is
				// set; one that came since the look above finds it unset
				// and does not, so look again then.
				s.mu.Lock()
				wrote := s.curID != curID || s.sizes[s.rID] != size
				s.notified = !wrote
				s.mu.Unlock()
				if wrote {
					continue
				}
				return nil, notify, nil
			}
			break
		}
		if s.rFile != nil && s.rOff >= s.rEnd {
			s.closeReader() // read up to the size it was opened at: reopen past it
		}
		if s.rFile == nil {
			f, err := os.Open(filepath.Join(s.dir, segName(s.rID)))
			if err != nil {
				return nil, nil, fmt.Errorf("spool: %w", err)
			}
			s.rFile, s.rEnd = f, size
			s.rReader = bufio.NewReaderSize(io.NewSectionReader(f, s.rOff, size-s.rOff), 256<<10)
		}
		payload, err := readRecord(s.rReader)
		if err != nil {
			return nil, nil, fmt.Errorf("spool: segment %d offset %d: %w", s.rID, s.rOff, err)
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return nil, nil, fmt.Errorf("spool: segment %d offset %d: %w", s.rID, s.rOff, err)
		}
		recSize := recordHeader + int64(len(payload))
		s.rOff += recSize
		rec.end = spoolPos{s.rID, s.rOff, recSize}
		recs = append(recs, rec)
	}
	return recs, nil, nil
}

// Next returns up to max rows from the reader position and the position
// after them (with the bytes read); the reader moves on, and Release
// records them as shipped. It returns no rows and a channel that is closed
// when more are written.
func (s *spool) Next(max int) ([]*Row, spoolPos, <-chan struct{}, error) {
	start := s.Pos()
	recs, notify, err := s.nextRecs(nil, max)
	if err != nil || len(recs) == 0 {
		return nil, start, notify, err
	}
	rows := make([]*Row, len(recs))
	var read int64
	for i, r := range recs {
		rows[i] = r.row
		if r.res != nil {
			if rows[i], err = r.res.row("", r.ref); err != nil {
				return nil, start, nil, err
			}
		}
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

// Close syncs the current segment, cuts it to its records and closes it.
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
	if s.gathered != nil {
		// The starter of an fdatasync waits for a group that no longer
		// comes: it syncs now.
		close(s.gathered)
		s.gathered = nil
	}
	s.mu.Unlock()
	s.prepWG.Wait()
	s.mu.Lock()
	// Neither a retire nor an fdatasync in flight may find its segment cut.
	for s.retiring != nil || s.syncing != nil {
		wait := s.syncing
		if r := s.retiring; r != nil {
			wait = r.done
		}
		s.mu.Unlock()
		<-wait
		s.mu.Lock()
	}
	if s.next != nil {
		s.next.discard(s.dir)
		s.next = nil
	}
	s.closeReader()
	err := s.finishLocked()
	s.mu.Unlock()
	s.retireWG.Wait() // the last one may still be cutting its segment
	s.relMu.Lock()    // after mu, never inside it: Release takes them the other way round
	if s.cursor != nil {
		s.cursor.Close()
		s.cursor = nil
	}
	s.relMu.Unlock()
	s.lock.Close()
	return err
}
