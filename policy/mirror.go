package policy

import "github.com/pgtenant/pgtenant/tenancy"

// The session's mirror of the prepared statements the server holds.
//
// A message that would change them (a Parse, a Close, a Describe that
// reports parameter types, a SQL PREPARE or DEALLOCATE in a Query or through
// Bind/Execute) changes nothing when it is checked: its check returns the
// Changes it makes, and the mirror applies each one only when the proxy
// reports that the server confirmed it (Resolve). Until then the change is
// in flight:
//
//   - a later message of the same batch (no Sync or Query in between) runs
//     only if every earlier message of the batch succeeded, so it is checked
//     against the state those in-flight changes produce;
//   - a message of a later batch runs whatever became of them, so when it
//     depends on a name an unresolved change touches, its check answers Wait:
//     the proxy waits for the server's replies and checks again. That is
//     only when the server will answer without more input from the client:
//     a change made before the last Sync, or by a Query with no extended
//     message since the last Sync (otherwise an error in one of those makes
//     the server skip the Query silently until the client's next Sync) and
//     no COPY (which waits for the client's data). Else the name is unknown;
//   - a change a Bind makes (SQL PREPARE or DEALLOCATE bound to a portal)
//     happens only if and when that portal is executed: until it is
//     resolved, the names it touches are unknown and their use is denied.
//
// A change the server's replies cannot confirm or refuse (a command tag that
// is not the expected one) leaves the names it touches unknown: their use is
// denied until the server confirms a new statement under the name.
//
// The Change, its Outcome and IsStatementTag are package tenancy's, which
// the proxy shares with this package.

type changeOp uint8

const (
	opStore changeOp = iota + 1
	opDrop
	opDropAll // named statements only: DEALLOCATE ALL keeps the unnamed one
	opDescribe
)

// change is an in-flight Change with its effect on the mirror.
type change struct {
	id    uint64
	batch uint64
	// syncs is the number of Syncs forwarded before the change; free: the
	// server answers it without a later Sync (see the package comment).
	syncs  uint64
	free   bool
	copy   bool // made by a Query with a COPY, which may wait for the client's data
	op     changeOp
	name   string
	p      *prepared // opStore
	portal bool      // made by a Bind: happens when (if) its portal runs
}

func (c *change) touches(name string) bool {
	if c.op == opDropAll {
		return name != ""
	}
	return c.name == name
}

// applyTo returns the statement under the change's name once it is applied.
func (c *change) applyTo(p *prepared) *prepared {
	switch c.op {
	case opStore:
		return c.p
	case opDrop, opDropAll:
		return nil
	}
	return p
}

// lookupState says what a lookup found out.
type lookupState uint8

const (
	stateKnown   lookupState = iota // p is what the server will hold (nil: nothing)
	stateWait                       // depends on changes of an earlier batch not resolved yet
	stateUnknown                    // pgtenant cannot know what the server will hold
)

// lookup returns the statement the server will hold under name when it
// runs the message being checked, with local (the changes of earlier
// statements of the same Query) applied after the in-flight ones.
func (s *Session) lookup(name string, local []change) (*prepared, lookupState) {
	st := stateKnown
	if s.unknown[name] || (s.lost && name != "" && !s.relearned[name]) {
		st = stateUnknown
	}
	p := s.prepared[name]
	for i := range s.inflight {
		c := &s.inflight[i]
		if !c.touches(name) {
			continue
		}
		switch {
		case c.batch == s.batch && !c.portal && c.op != opDescribe:
			// it runs before the checked message, which runs only if it
			// succeeded: it alone decides what the server holds
			p, st = c.applyTo(p), stateKnown
		case c.batch == s.batch && c.op == opDescribe:
			// learns types only; which statement it is does not change
		case c.portal || c.copy:
			st = stateUnknown
		case c.free || c.syncs < s.syncs:
			if st == stateKnown {
				st = stateWait
			}
		default:
			st = stateUnknown
		}
	}
	for i := range local {
		if local[i].touches(name) && local[i].op != opDescribe {
			p, st = local[i].applyTo(p), stateKnown
		}
	}
	if st != stateKnown {
		return nil, st
	}
	return p, stateKnown
}

// register makes c in flight and returns its Change.
func (s *Session) register(c change, stmt int, tag string) tenancy.Change {
	s.nextID++
	c.id, c.batch, c.syncs = s.nextID, s.batch, s.syncs
	s.inflight = append(s.inflight, c)
	return tenancy.Change{ID: c.id, Stmt: stmt, Tag: tag, Portal: c.portal}
}

// Sent tells the session that a message it did not check was forwarded:
// 'S' (Sync) and 'Q' (a Query, after its check) end a batch: an error before
// them no longer makes the server skip the messages after them. 'E'
// (Execute), 'D' (Describe) and 'C' (Close), of a portal as of a statement,
// are extended messages that may fail (a Describe of a portal that does not
// exist, a Close of neither kind), after which the server skips a Query
// silently until the next Sync: no change of that Query may be waited for.
func (s *Session) Sent(kind byte) {
	switch kind {
	case 'S':
		s.batch++
		s.syncs++
		s.extOpen = false
	case 'Q':
		s.batch++
	case 'E', 'D', 'C':
		s.extOpen = true
	}
}

// Resolve applies the server's answer to change id. Resolve(0, Unknown, nil)
// reports a prepared-statement command the proxy did not expect: every named
// statement becomes unknown. paramOIDs are a ParameterDescription's types,
// for a Describe's change.
func (s *Session) Resolve(id uint64, o tenancy.Outcome, paramOIDs []uint32) {
	if id == 0 {
		if o == tenancy.Unknown {
			s.lost, s.relearned = true, nil
		}
		return
	}
	i := 0
	for i < len(s.inflight) && s.inflight[i].id != id {
		i++
	}
	if i == len(s.inflight) {
		return
	}
	c := s.inflight[i]
	s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
	if len(s.inflight) == 0 {
		s.inflight = nil // let a long pipeline's backing array go
	}
	switch o {
	case tenancy.Confirmed:
		s.confirm(&c, paramOIDs)
	case tenancy.Unknown:
		if c.op == opDropAll {
			s.lost, s.relearned = true, nil
			return
		}
		if s.unknown == nil {
			s.unknown = map[string]bool{}
		}
		s.unknown[c.name] = true
	}
}

// confirm applies a change the server made.
func (s *Session) confirm(c *change, paramOIDs []uint32) {
	switch c.op {
	case opStore, opDrop:
		if c.op == opStore {
			s.prepared[c.name] = c.p
		} else {
			delete(s.prepared, c.name)
		}
		// the server said what it holds under the name now
		delete(s.unknown, c.name)
		if s.lost && c.name != "" {
			if s.relearned == nil {
				s.relearned = map[string]bool{}
			}
			s.relearned[c.name] = true
		}
	case opDropAll:
		for name := range s.prepared {
			if name != "" {
				delete(s.prepared, name)
			}
		}
		unnamed := s.unknown[""]
		s.unknown, s.lost, s.relearned = nil, false, nil
		if unnamed {
			s.unknown = map[string]bool{"": true}
		}
	case opDescribe:
		if p := s.prepared[c.name]; p != nil && paramOIDs != nil {
			cp := *p
			cp.oids = append([]uint32(nil), paramOIDs...)
			s.prepared[c.name] = &cp
		}
	}
}

// CloseStatement returns the Change a Close of statement name makes.
func (s *Session) CloseStatement(name string) tenancy.Change {
	s.Sent('C')
	return s.register(change{op: opDrop, name: name}, 0, "")
}

// DescribeStatement returns the Change a Describe of statement name makes:
// the server's ParameterDescription tells the types it gave the statement's
// parameters, by which binary values are then read.
func (s *Session) DescribeStatement(name string) tenancy.Change {
	s.Sent('D')
	return s.register(change{op: opDescribe, name: name}, 0, "")
}

// confirmAll confirms every in-flight change as if the server ran every
// message (RunCorpusRow and tests: no server answers).
func (s *Session) confirmAll() {
	for len(s.inflight) > 0 {
		s.Resolve(s.inflight[0].id, tenancy.Confirmed, nil)
	}
}
