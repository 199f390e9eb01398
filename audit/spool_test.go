package audit

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

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
	s, err := openSpool(t.TempDir(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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

	s2, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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
	s, err := openSpool(t.TempDir(), 2000)
	if err != nil {
		t.Fatal(err)
	}
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

func BenchmarkSpoolDurableAppend(b *testing.B) {
	s, err := openSpool(b.TempDir(), 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rows := spoolRows(b, 1)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(rows, true, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestSpoolShippingFreesTheHighWaterMark(t *testing.T) {
	s, err := openSpool(t.TempDir(), 4000)
	if err != nil {
		t.Fatal(err)
	}
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
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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

	s2, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
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
	s, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(spoolRows(t, 5), true, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorFile), []byte("1 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := openSpool(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := len(drain(t, s2)); n != 5 {
		t.Fatalf("read %d rows with a cursor inside a record, want all 5", n)
	}
}
