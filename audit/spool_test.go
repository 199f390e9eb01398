package audit

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

func spoolRows(t testing.TB, n int) []*Row {
	t.Helper()
	rows := make([]*Row, n)
	for i := range rows {
		r, err := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: "a1", Statement: "SELECT 1"}, "eu-west", "t", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		rows[i] = r
	}
	return rows
}

func drain(t *testing.T, s *spool) []*Row {
	t.Helper()
	var out []*Row
	for {
		rows, pos, _, err := s.Next(100)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			return out
		}
		out = append(out, rows...)
		if err := s.Release(pos, len(rows)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSpoolConcurrentDurableAppendsAreAllRead(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	const writers, each = 8, 50
	sent := make([][]*Row, writers)
	var wg sync.WaitGroup
	for w := range writers {
		sent[w] = spoolRows(t, each)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range sent[w] {
				if err := s.Append([]*Row{r}, true, true); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got := drain(t, s)
	if len(got) != writers*each {
		t.Fatalf("read %d rows, wrote %d", len(got), writers*each)
	}
	seen := map[[16]byte]bool{}
	for _, r := range got {
		seen[r.EventID] = true
	}
	for _, rows := range sent {
		for _, r := range rows {
			if !seen[r.EventID] {
				t.Fatalf("event %s lost", r.EventID)
			}
		}
	}
	if s.Pending() != 0 {
		t.Errorf("pending = %d after releasing everything", s.Pending())
	}
}

func TestSpoolSurvivesRestartAndRepairsTornTail(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	rows := spoolRows(t, 20)
	for _, r := range rows {
		if err := s.Append([]*Row{r}, true, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash mid-write leaves half a record at the end of the segment.
	segs, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 9, 9})
	f.Close()

	s2 := mustOpenSpool(t, dir, 1<<30)
	defer s2.Close()
	if s2.Pending() != 20 {
		t.Fatalf("pending after restart = %d, want 20", s2.Pending())
	}
	extra := spoolRows(t, 1)
	if err := s2.Append(extra, true, true); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s2)
	if len(got) != 21 || got[0].EventID != rows[0].EventID || got[20].EventID != extra[0].EventID {
		t.Fatalf("read %d rows after restart, want the 20 old ones then the new one", len(got))
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(left) != 1 {
		t.Errorf("%d segments left after shipping everything, want only the current one", len(left))
	}
}

func TestSpoolHighWaterMark(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 2000)
	defer s.Close()
	var full bool
	for i := 0; i < 100 && !full; i++ {
		err := s.Append(spoolRows(t, 1), true, true)
		if err == ErrSpoolFull {
			full = true
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("spool never reported full")
	}
	// Non-statement events are still taken past the mark.
	if err := s.Append(spoolRows(t, 1), false, false); err != nil {
		t.Fatalf("unlimited append refused: %v", err)
	}
	drain(t, s)
}

// BenchmarkSpoolDurableAppend is what a statement pays before it is
// forwarded: in group mode its fdatasync (shared), in interval mode (the
// default) the copy into the segment.
func BenchmarkSpoolDurableAppend(b *testing.B) {
	for _, bc := range []struct {
		name        string
		syncEvery   time.Duration
		parallelism int
	}{{"group", 0, 16}, {"interval", 10 * time.Millisecond, 4}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := openSpoolSync(b.TempDir(), 1<<40, bc.syncEvery)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rows := spoolRows(b, 1)
			b.SetParallelism(bc.parallelism)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Append(rows, true, true); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestSpoolShippingFreesTheHighWaterMark(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 4000)
	defer s.Close()
	for round := 0; round < 5; round++ {
		n := 0
		for ; ; n++ {
			err := s.Append(spoolRows(t, 1), true, true)
			if err == ErrSpoolFull {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if n == 0 {
			t.Fatalf("round %d: spool still full after shipping everything", round)
		}
		if got := len(drain(t, s)); got != n {
			t.Fatalf("round %d: shipped %d of %d", round, got, n)
		}
	}
}

func TestSpoolDirectoryIsExclusive(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	if _, err := openSpool(dir, 1<<30); err == nil {
		t.Fatal("a second spool opened the same directory")
	}
	s.Close()
	s2, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	s2.Close()
}

func TestSpoolRestartResumesAfterTheShippedCursor(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	rows := spoolRows(t, 30)
	for _, r := range rows {
		if err := s.Append([]*Row{r}, true, true); err != nil {
			t.Fatal(err)
		}
	}
	got, pos, _, err := s.Next(10)
	if err != nil || len(got) != 10 {
		t.Fatalf("next: %d rows, %v", len(got), err)
	}
	if err := s.Release(pos, len(got)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2 := mustOpenSpool(t, dir, 1<<30)
	if s2.Pending() != 20 {
		t.Errorf("pending after restart = %d, want 20", s2.Pending())
	}
	rest := drain(t, s2)
	if len(rest) != 20 || rest[0].EventID != rows[10].EventID {
		t.Fatalf("after restart read %d rows, want the 20 after the cursor", len(rest))
	}
	s2.Close()
}

func TestSpoolDistrustsACursorOffARecordBoundary(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	if err := s.Append(spoolRows(t, 5), true, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("1 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpenSpool(t, dir, 1<<30)
	defer s2.Close()
	if n := len(drain(t, s2)); n != 5 {
		t.Fatalf("read %d rows with a cursor inside a record, want all 5", n)
	}
}

// waitFor polls cond until it holds (or fails the test after a while).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// expectNoSync checks that no durable append of errs has returned within
// 50 ms (before what it names) and that the spool started no fdatasync
// (started says when that would be wrong).
func expectNoSync(t *testing.T, s *spool, errs <-chan error, before, started string) {
	t.Helper()
	select {
	case err := <-errs:
		t.Fatalf("a durable append returned (%v) before %s", err, before)
	case <-time.After(50 * time.Millisecond):
	}
	if n := s.syncs.Load(); n != 0 {
		t.Fatalf("%d fdatasyncs %s", n, started)
	}
}

// isGathering reports whether the starter of an fdatasync is waiting for
// its group (gatherLocked).
func (s *spool) isGathering() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gathered != nil
}

// Group mode: statements that arrive while an fdatasync is in flight are
// written at once, wait for it, and then share one fdatasync started by
// whichever wakes first (the leader handoff); an append that needs no fsync
// (a result) never waits for one.
func TestSpoolGroupSharesOneFsyncAfterTheOneInFlight(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	// An fdatasync "in flight": syncTo waits for this channel.
	inflight := make(chan struct{})
	s.mu.Lock()
	s.syncing = inflight
	s.mu.Unlock()

	const waiters = 8
	errs := make(chan error, waiters)
	for range waiters {
		go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	}
	waitFor(t, "every statement's record to be written", func() bool { return s.Pending() == waiters })
	if err := s.Append(spoolRows(t, 1), false, false); err != nil {
		t.Fatal(err) // returned although an fsync is in flight: results do not wait for it
	}
	expectNoSync(t, s, errs, "an fsync covered it", "started while one was in flight")

	s.mu.Lock()
	s.syncing = nil
	s.mu.Unlock()
	close(inflight)
	for range waiters {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.syncs.Load(); n != 1 {
		t.Fatalf("%d fdatasyncs for the statements that waited together, want 1", n)
	}
	s.mu.Lock()
	gen := s.writeGen
	s.mu.Unlock()
	if s.syncedGen.Load() < gen-1 {
		t.Fatalf("synced generation %d does not cover the statements (written up to %d)", s.syncedGen.Load(), gen-1)
	}
	if got := len(drain(t, s)); got != waiters+1 {
		t.Fatalf("read %d records, wrote %d", got, waiters+1)
	}
}

// Group mode gathers: the append that starts an fdatasync first waits
// until as many durable appends as the last fdatasync covered have been
// written (or gatherMax passed), so the group shares one fdatasync instead
// of the first append syncing alone and the rest waiting for it and then
// for one more. A group that shrank costs one wait of gatherMax, and the
// next fdatasync starts at once.
func TestSpoolGroupGathersTheLastGroupBeforeItsFsync(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	const group = 8
	s.mu.Lock()
	s.lastGroup = group // the last fdatasync covered eight statements
	s.gatherMax = time.Minute
	s.mu.Unlock()
	errs := make(chan error, group)
	go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	waitFor(t, "the first statement's append to wait for its group", s.isGathering)
	for i := 1; i < group; i++ {
		if n := s.syncs.Load(); n != 0 {
			t.Fatalf("an fdatasync started with %d of the %d statements written", i, group)
		}
		go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
		if i < group-1 {
			waitFor(t, "the next statement's record to be written", func() bool { return s.Pending() == int64(i+1) })
		}
	}
	for range group {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := s.syncs.Load(); n != 1 {
		t.Fatalf("%d fdatasyncs for one group of %d statements, want 1", n, group)
	}
	if s.syncedGen.Load() < group {
		t.Fatalf("synced generation %d: a statement returned before its fdatasync", s.syncedGen.Load())
	}

	// The clients went idle but one: its append waits out gatherMax once,
	// then the group is one statement and nobody waits.
	s.mu.Lock()
	s.gatherMax = 10 * time.Millisecond
	s.mu.Unlock()
	if err := s.Append(spoolRows(t, 1), true, true); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	last := s.lastGroup
	s.mu.Unlock()
	if last != 1 || s.syncs.Load() != 2 {
		t.Fatalf("after a lone statement: last group %d, %d fdatasyncs; want 1 and 2", last, s.syncs.Load())
	}
	// The next lone statement syncs at once, however long a gathering
	// could wait.
	s.mu.Lock()
	s.gatherMax = time.Hour
	s.mu.Unlock()
	go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	waitFor(t, "a lone statement's fdatasync without gathering", func() bool { return len(errs) == 1 })
	if err := <-errs; err != nil || s.syncs.Load() != 3 {
		t.Fatalf("lone statement: %v, %d fdatasyncs; want nil and 3", err, s.syncs.Load())
	}
	if got := len(drain(t, s)); got != group+2 {
		t.Fatalf("read %d records, wrote %d", got, group+2)
	}
}

// A segment rotated while the starter of an fdatasync gathered its group
// holds records that only its retire syncs: the starter must leave them to
// it rather than sync the new segment and count them as covered. Here the
// retire is held back; no durable append returns until it has synced.
func TestSpoolGroupGatherThatSeesARotationLeavesItToRetire(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<40)
	defer s.Close()
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	testHookRetire = func() { <-release }
	defer func() { testHookRetire = nil }()
	defer free() // before Close, which waits for the retire, on any failure
	const group = 4
	s.mu.Lock()
	s.lastGroup, s.gatherMax = group, time.Hour
	s.mu.Unlock()
	errs := make(chan error, group)
	go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	waitFor(t, "the first statement's append to gather its group", s.isGathering)
	// Results (not durable, so not counted in the group) fill the segment
	// until it rotates; its retire waits for release.
	big := bigRow(t)
	for i := 0; ; i++ {
		s.mu.Lock()
		rotating := s.retiring != nil
		s.mu.Unlock()
		if rotating {
			break
		}
		if i > 2*segmentMaxBytes/(64<<10) {
			t.Fatal("the spool never rotated")
		}
		if err := s.AppendRef(big, uint64(i+1), false, false); err != nil {
			t.Fatal(err)
		}
	}
	for range group - 1 {
		go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	}
	waitFor(t, "the group's records to be written", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.gathered == nil && s.syncing == nil
	})
	expectNoSync(t, s, errs, "the rotated segment holding the first was synced", "of the new segment while the rotated one was unsynced")
	free()
	for range group {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	written := s.writeGen
	s.mu.Unlock()
	if s.syncedGen.Load() < written {
		t.Fatalf("synced generation %d, written %d", s.syncedGen.Load(), written)
	}
}

// Closing the spool while the starter of an fdatasync gathers its group
// ends the wait: the appends already written are synced (by that fdatasync
// or Close's own) and return, and Close does not cut the segment under an
// fdatasync in flight.
func TestSpoolCloseEndsAGathering(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	s.mu.Lock()
	s.lastGroup, s.gatherMax = 4, time.Hour
	s.mu.Unlock()
	errs := make(chan error, 1)
	go func() { errs <- s.Append(spoolRows(t, 1), true, true) }()
	waitFor(t, "the statement's append to gather its group", s.isGathering)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	waitFor(t, "the gathering append to return once the spool closes", func() bool { return len(errs) == 1 })
	if err := <-errs; err != nil {
		t.Fatalf("the gathered append: %v", err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if s.syncedGen.Load() < 1 {
		t.Fatalf("synced generation %d: the append returned unsynced", s.syncedGen.Load())
	}
}

// Concurrent durable appends in group mode share fdatasyncs, every record
// is read back once, and every durable append returned only after an
// fdatasync covered it.
func TestSpoolGroupSharesFsyncsOfConcurrentAppends(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	const writers, each = 32, 40
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := s.Append(spoolRows(t, 1), true, true); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	written := s.writeGen
	s.mu.Unlock()
	if written != writers*each {
		t.Fatalf("%d appends written, want %d", written, writers*each)
	}
	if s.syncedGen.Load() != written {
		t.Fatalf("synced generation %d, written %d: a durable append returned before its fsync", s.syncedGen.Load(), written)
	}
	if syncs := s.syncs.Load(); syncs >= writers*each {
		t.Logf("no two appends shared an fdatasync (%d for %d records): the machine ran them one by one", syncs, writers*each)
	}
	if got := len(drain(t, s)); got != writers*each {
		t.Fatalf("read %d records, wrote %d", got, writers*each)
	}
}

// An append that needs a new segment and cannot start one fails, leaves
// the counts and the log as they were, and the next append that can works.
func TestSpoolFailedRotation(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	defer s.Close()
	if err := s.Append(spoolRows(t, 1), true, true); err != nil {
		t.Fatal(err)
	}
	before, id := s.Bytes(), s.curID
	// The next segment's name is taken, and a statement too long for the
	// rest of the current segment needs it.
	blocker := filepath.Join(dir, segName(id+1))
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	big, err := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: "a1",
		Statement: "SELECT '" + strings.Repeat("x", segmentMaxBytes) + "'"}, "eu-west", "t", StatementFull)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]*Row{big}, true, true); err == nil {
		t.Fatal("an append that could not start a segment succeeded")
	}
	if s.Bytes() != before || s.Pending() != 1 || s.curID != id {
		t.Fatalf("after a failed rotation: %d bytes, %d pending, segment %d; want %d, 1, %d",
			s.Bytes(), s.Pending(), s.curID, before, id)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(spoolRows(t, 1), true, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]*Row{big}, true, true); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s)
	if len(got) != 3 || got[2].Statement == nil || len(*got[2].Statement) < segmentMaxBytes {
		t.Fatalf("read %d records, want the 3 written, the long statement last", len(got))
	}
}

// A record is in the file (the page cache) as soon as its append returns,
// before any fsync: what survives kill -9 of the process. The segment being
// written is read back through the file while it is written, and reads
// stop at its last record, not at the zeros allocated past it.
func TestSpoolAppendIsInTheFileAtOnce(t *testing.T) {
	dir := t.TempDir()
	s, err := openSpoolSync(dir, 1<<30, time.Hour) // no fsync during the test
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows := spoolRows(t, 3)
	for i, r := range rows {
		if err := s.AppendRef(r, uint64(i+1), false, false); err != nil {
			t.Fatal(err)
		}
	}
	size, n, _, err := readSegmentCopy(t, filepath.Join(dir, segName(s.curID)))
	if err != nil || n != 3 || size != s.Bytes() {
		t.Fatalf("the file holds %d records in %d bytes (%v); want 3 in %d", n, size, err, s.Bytes())
	}
	// Forget what recent holds: the shipper reads the file, up to the last
	// record, then picks up the next one appended.
	s.mu.Lock()
	s.recent = s.recent[:0]
	s.mu.Unlock()
	recs, _, err := s.nextRecs(nil, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("read %d records (%v) from the segment being written, want 3", len(recs), err)
	}
	if err := s.AppendRef(rows[0], 4, false, false); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.recent = s.recent[:0]
	s.mu.Unlock()
	recs, _, err = s.nextRecs(nil, 10)
	if err != nil || len(recs) != 1 || recs[0].ref != 4 {
		t.Fatalf("after one more append read %d records (%v), want the one with ref 4", len(recs), err)
	}
}

// TestSpoolAppendAndShipAllocateNothing: in the steady state (the shipper
// right behind the writers) a record costs the spool no allocation on
// either side: the encoding buffer comes from a pool, recent reuses its
// array once the shipper has taken everything, and nextRecs fills the
// shipper's buffer. Per statement these were about 1.3 KiB, paid again in
// GC work.
func TestSpoolAppendAndShipAllocateNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops buffers under the race detector")
	}
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	row := spoolRows(t, 1)[0]
	res := &resultRec{}
	var buf []spoolRec
	ref := uint64(0)
	step := func() {
		ref++
		if err := s.AppendRef(row, ref, false, false); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendResult(res, ref); err != nil {
			t.Fatal(err)
		}
		recs, _, err := s.nextRecs(buf, 16)
		if err != nil || len(recs) != 2 || recs[0].ref != ref || recs[1].res != res {
			t.Fatalf("read %d records (%v), want the statement and result just appended", len(recs), err)
		}
		buf = recs
	}
	step() // the first round sizes the arrays
	if n := testing.AllocsPerRun(1000, step); n != 0 {
		t.Errorf("%v allocations per statement and result appended and read, want 0", n)
	}
}

// readSegmentCopy repairs a copy of a segment file (as a restart would,
// leaving the original alone) and returns its size and record count.
func readSegmentCopy(t *testing.T, path string) (size, n, boundary int64, err error) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	cp := filepath.Join(t.TempDir(), "copy.seg")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		return 0, 0, 0, err
	}
	return repairSegment(cp, 0)
}

// TestSpoolRecentIsWhatTheFileSays checks that a record the shipper takes
// from memory (recent) is the row it would have decoded from the file, for
// every kind of row the proxy writes, and that records recent no longer
// holds are read from the file in order.
func TestSpoolRecentIsWhatTheFileSays(t *testing.T) {
	var rows []*Row
	var refs []uint64
	for i := range 40 {
		var ev tenancy.Event
		switch i % 5 {
		case 0:
			ev = stmt("42", "s1", i)
		case 1:
			ev = attributed(i)
			ev.FullStatement = "SELECT * FROM orders WHERE account_id = 42 AND note = 'x'"
		case 2:
			ev = tenancy.Event{Kind: tenancy.KindResult, Time: time.Now(), AccountID: "42", Region: "eu-west",
				SessionID: "s1", Verdict: tenancy.VerdictAllow, Rows: int64(i), SQLState: "00000"}
		case 3:
			ev = tenancy.Event{Kind: tenancy.KindDisconnect, Time: time.Now(), AccountID: "7", Region: "eu-west", SessionID: "s2", Rows: -1}
		case 4:
			ev = stmt("7", "s2", i)
			ev.Verdict, ev.Reason, ev.SQLState = tenancy.VerdictDeny, "unscoped", "42501"
		}
		mode := StatementNormalized
		if i%2 == 1 {
			mode = StatementFull
		}
		r, err := NewRow(ev, "eu-west", "inst", mode)
		if err != nil {
			t.Fatal(err)
		}
		rows, refs = append(rows, r), append(refs, uint64(i%3))
	}

	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	for i, r := range rows {
		if err := s.AppendRef(r, refs[i], true, true); err != nil {
			t.Fatal(err)
		}
	}
	// From memory: the appended rows themselves.
	mem, _, err := s.nextRecs(nil, len(rows))
	if err != nil || len(mem) != len(rows) {
		t.Fatalf("from memory: %d records, %v", len(mem), err)
	}
	// From the file: the same records, read back with recent emptied.
	s.mu.Lock()
	s.recent = s.recent[:0]
	s.mu.Unlock()
	s.Rewind(spoolPos{id: s.rID})
	file, _, err := s.nextRecs(nil, len(rows))
	if err != nil || len(file) != len(rows) {
		t.Fatalf("from the file: %d records, %v", len(file), err)
	}
	for i := range rows {
		if mem[i].row != rows[i] || mem[i].ref != refs[i] {
			t.Fatalf("record %d from memory is not the row appended", i)
		}
		if mem[i].end != file[i].end || file[i].ref != refs[i] {
			t.Fatalf("record %d: memory says %+v ref %d, the file %+v ref %d", i, mem[i].end, mem[i].ref, file[i].end, file[i].ref)
		}
		m, f := *mem[i].row, *file[i].row
		m.TS, f.TS = m.TS.UTC(), f.TS.UTC()
		if !m.TS.Equal(f.TS) {
			t.Fatalf("record %d: time %v in memory, %v in the file", i, m.TS, f.TS)
		}
		m.TS = f.TS
		if !reflect.DeepEqual(m, f) {
			t.Fatalf("record %d differs:\nmemory %+v\nfile   %+v", i, m, f)
		}
	}

	// Past recentMax the oldest records are read from the file, in order.
	s.mu.Lock()
	s.recent = s.recent[:0]
	s.mu.Unlock()
	n := 2*recentMax + 100 // over twice: trimmed to the newest recentMax
	for i := range n {
		if err := s.AppendRef(rows[i%len(rows)], uint64(i), false, false); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := s.nextRecs(nil, n)
	if err != nil || len(got) != n {
		t.Fatalf("after overflowing recent: %d records, %v", len(got), err)
	}
	for i, r := range got {
		if r.ref != uint64(i) {
			t.Fatalf("record %d has ref %d: out of order", i, r.ref)
		}
		fromMemory := r.row == rows[i%len(rows)]
		if i >= n-recentMax && !fromMemory {
			t.Fatalf("record %d, held in recent, was read from the file", i)
		}
		if i < recentMax && fromMemory {
			t.Fatalf("record %d, trimmed from recent, was not read from the file", i)
		}
	}
}

// The cursor is rewritten in place at a fixed width, and a restart reads
// it back, as it reads an earlier build's unpadded one.
func TestSpoolCursorInPlace(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<30)
	var first os.FileInfo
	for _, p := range []spoolPos{{id: 7, off: 123456}, {id: 8, off: 9}} {
		if err := s.writeCursor(p); err != nil {
			t.Fatal(err)
		}
		got, ok := readCursor(dir)
		if !ok || got.id != p.id || got.off != p.off {
			t.Fatalf("cursor reads %+v (%v), wrote %+v", got, ok, p)
		}
		st, err := os.Stat(filepath.Join(dir, cursorFile))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != cursorLen {
			t.Fatalf("cursor of %d bytes, want the fixed %d", st.Size(), cursorLen)
		}
		if first == nil {
			first = st
		} else if !os.SameFile(first, st) {
			t.Fatal("the cursor was replaced by a new file, not rewritten in place")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("3 77\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, ok := readCursor(dir); !ok || got.id != 3 || got.off != 77 {
		t.Fatalf("an unpadded cursor reads %+v (%v)", got, ok)
	}
}

// mustOpenSpool opens the spool in dir with a high-water mark of max bytes.
func mustOpenSpool(t testing.TB, dir string, max int64) *spool {
	t.Helper()
	s, err := openSpool(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bigRow is a statement row of about 64 KiB: a few fill a segment.
func bigRow(t *testing.T) *Row {
	t.Helper()
	r, err := NewRow(tenancy.Event{Kind: tenancy.KindStatement, AccountID: "a1",
		Statement: "SELECT '" + strings.Repeat("x", 64<<10) + "'"}, "eu-west", "t", StatementFull)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Appends that cross several segments, concurrently and durable in group
// mode, are all read back once and in each writer's order; every durable
// append returned covered by an fdatasync, the rotated segments are cut to
// their records, and Close leaves no prepared segment behind.
func TestSpoolRotatesUnderConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<40)
	big := bigRow(t)
	const writers, each = 4, 100 // about 26 MiB: three rotations
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.AppendRef(big, uint64(w*each+i+1), true, true); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	written, segments := s.writeGen, len(s.sizes)
	s.mu.Unlock()
	if s.syncedGen.Load() < written {
		t.Fatalf("synced generation %d, written %d: a durable append returned before its fsync", s.syncedGen.Load(), written)
	}
	if segments < 4 {
		t.Fatalf("%d segments for %d MiB", segments, writers*each*64>>10)
	}
	s.mu.Lock()
	s.recent = s.recent[:0] // read it all from the files
	s.mu.Unlock()
	last := make([]uint64, writers)
	n := 0
	for {
		recs, _, err := s.nextRecs(nil, 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			w := (r.ref - 1) / each
			if r.ref <= last[w] {
				t.Fatalf("writer %d: ref %d after %d", w, r.ref, last[w])
			}
			last[w] = r.ref
			n++
		}
	}
	if n != writers*each {
		t.Fatalf("read %d records, wrote %d", n, writers*each)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ids, err := s.segments()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, id := range ids {
		st, err := os.Stat(filepath.Join(dir, segName(id)))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() == 0 {
			t.Errorf("segment %d is empty: a prepared segment was left behind", id)
		}
		total += st.Size()
	}
	if want := int64(writers * each * len(encodeSpoolRecord(nil, big, 1))); total != want {
		t.Fatalf("segments hold %d bytes, the records %d: not cut to their records", total, want)
	}
}

// A crash that leaves the segment being written at its allocated size
// (zeros past its records) and the next segment prepared but unused loses
// nothing: a restart reads every record back, the empty prepared segment
// reads as empty, and new appends go to a segment after both.
func TestSpoolRestartAfterACrashWithAPreparedSegment(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenSpool(t, dir, 1<<40)
	big := bigRow(t)
	const n = 70 // past half of a segment: the next one is prepared
	for i := range n {
		if err := s.AppendRef(big, uint64(i+1), true, true); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the next segment to be prepared", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.next != nil
	})
	s.mu.Lock()
	prepared, current := s.next.id, s.curID
	s.mu.Unlock()
	// The crash: the process is gone without Close (its lock goes with it).
	s.lock.Close()

	s2 := mustOpenSpool(t, dir, 1<<40)
	defer s2.Close()
	if s2.curID <= prepared || s2.Pending() != n {
		t.Fatalf("after the crash: writing segment %d (crashed in %d, %d prepared), %d records pending, want %d",
			s2.curID, current, prepared, s2.Pending(), n)
	}
	if err := s2.AppendRef(big, n+1, true, true); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s2)
	if len(got) != n+1 {
		t.Fatalf("read %d records after the crash, want %d", len(got), n+1)
	}
}

// A write wakes the reader that found nothing to read (it closes the
// channel nextRecs returned); while the reader is not waiting, writes keep
// the channel (no channel is made per append).
func TestSpoolNotifyWakesAWaitingReader(t *testing.T) {
	s := mustOpenSpool(t, t.TempDir(), 1<<30)
	defer s.Close()
	recs, ch, err := s.nextRecs(nil, 10)
	if err != nil || len(recs) != 0 || ch == nil {
		t.Fatalf("empty spool: %d records, channel %v, %v", len(recs), ch, err)
	}
	if err := s.Append(spoolRows(t, 1), false, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("an append did not wake the waiting reader")
	}
	if recs, _, err = s.nextRecs(nil, 10); err != nil || len(recs) != 1 {
		t.Fatalf("read %d records, %v; want the one appended", len(recs), err)
	}
	s.mu.Lock()
	before := s.notify
	s.mu.Unlock()
	for range 3 {
		if err := s.Append(spoolRows(t, 1), false, false); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	same := s.notify == before
	s.mu.Unlock()
	if !same {
		t.Fatal("appends replaced the notify channel though no reader waited on it")
	}
}

// TestSpoolRotationLeavesTheSyncToItsOwnGoroutine: the append whose record
// starts a new segment returns without waiting for the fdatasync of the
// segment it rotated out (tens of milliseconds, which a statement used to
// wait for); Close still waits for it.
func TestSpoolRotationLeavesTheSyncToItsOwnGoroutine(t *testing.T) {
	s, err := openSpoolSync(t.TempDir(), 1<<30, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	release, started := make(chan struct{}), make(chan struct{}, 1)
	testHookRetire = func() {
		started <- struct{}{}
		<-release
	}
	defer func() { testHookRetire = nil }()
	row := bigRow(t)
	appended := make(chan error, 1)
	go func() {
		first := s.curID
		for i := 0; s.curID == first; i++ {
			if i > 2*segmentMaxBytes/(64<<10) {
				appended <- errors.New("the spool never rotated")
				return
			}
			if err := s.AppendRef(row, uint64(i+1), true, false); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	select {
	case err := <-appended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the append that rotated the spool waited for the old segment's sync")
	}
	<-started
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the rotated segment was synced", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
