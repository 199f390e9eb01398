package audit

import (
	"sync"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

// One database row per client statement: in spool and async mode an
// allowed statement's row waits (in memory, or in the spool already
// durable) for its result, which is merged into it before it is shipped.
// A statement whose result does not come within holdMax (a long query), or
// whose session ends first, is shipped alone; a result that finds no
// statement waiting is then shipped as its own result row.
const (
	holdMax = 500 * time.Millisecond
	// heldMax bounds the statements waiting for results in one region; past
	// it statements are shipped without waiting.
	heldMax = 1 << 16
)

// stmtKey identifies a statement within a proxy's sessions.
type stmtKey struct {
	session string
	ref     uint64
}

func keyOf(r *Row, ref uint64) (stmtKey, bool) {
	if ref == 0 || r.SessionID == nil {
		return stmtKey{}, false
	}
	return stmtKey{*r.SessionID, ref}, true
}

// waitsForResult reports whether a statement row should wait for its result.
func waitsForResult(r *Row, ref uint64) bool {
	return ref != 0 && r.Kind == tenancy.KindStatement && r.SessionID != nil && r.Verdict != nil && *r.Verdict == tenancy.VerdictAllow
}

// mergeResult copies a result's outcome into its statement's row.
func mergeResult(stmt, res *Row) {
	stmt.Rows, stmt.DurationUS = res.Rows, res.DurationUS
	if res.SQLState != nil {
		stmt.SQLState = res.SQLState
	}
}

// mergeEvent is mergeResult for a result event that was never made a row
// (async mode, its statement held): the same fields, cleaned as newRow
// cleans them, without the row, event id and hashing a result row costs.
func mergeEvent(stmt *Row, ev tenancy.Event) {
	o := &struct {
		rows, dur int64
		state     string
	}{dur: ev.DurationUS}
	stmt.Rows = nil
	if ev.Rows >= 0 {
		o.rows = ev.Rows
		stmt.Rows = &o.rows
	}
	stmt.DurationUS = &o.dur
	if ev.SQLState != "" {
		o.state = clean(ev.SQLState)
		stmt.SQLState = &o.state
	}
}

// held is a statement row waiting for its result; pos is whatever its
// owner needs to release it (the spool position of its record).
type held struct {
	row   *Row
	since time.Time
	pos   any
}

// merger holds statements until their results arrive. It is safe for
// concurrent use.
type merger struct {
	mu   sync.Mutex
	rows map[stmtKey]*held
}

func newMerger() *merger { return &merger{rows: map[stmtKey]*held{}} }

// hold parks a statement; false when too many are held (ship it now).
func (m *merger) hold(k stmtKey, h *held) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.rows) >= heldMax {
		return false
	}
	m.rows[k] = h
	return true
}

// take removes and returns the statement k, if held.
func (m *merger) take(k stmtKey) *held {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.rows[k]
	delete(m.rows, k)
	return h
}

// takeSession removes and returns every statement of session.
func (m *merger) takeSession(session string) []*held {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*held
	for k, h := range m.rows {
		if k.session == session {
			out = append(out, h)
			delete(m.rows, k)
		}
	}
	return out
}

// expired removes and returns the statements held since before cutoff
// (all of them when cutoff is zero).
func (m *merger) expired(cutoff time.Time) []*held {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*held
	for k, h := range m.rows {
		if cutoff.IsZero() || h.since.Before(cutoff) {
			out = append(out, h)
			delete(m.rows, k)
		}
	}
	return out
}

// len returns how many statements are held.
func (m *merger) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}
