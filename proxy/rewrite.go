package proxy

import (
	"strings"
	"sync/atomic"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// Rewrite mode (policy.unscoped: rewrite) in the proxy: the policy's
// rewritten text replaces the client's in Query and Parse messages (see
// onQuery, onParse), and the rows of an allowed COPY ... FROM STDIN are
// checked as they pass.

// rewriteParse builds a Parse body with the same statement name and
// parameter type list (rest, as the client sent it) around a rewritten query
// text (policy.unscoped: rewrite never renumbers parameters).
func rewriteParse(name, query string, rest []byte) []byte {
	b := make([]byte, 0, len(name)+len(query)+2+len(rest))
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, query...)
	b = append(b, 0)
	return append(b, rest...)
}

// copyIn is the state of a checked COPY ... FROM STDIN. The client loop
// owns stream and failed; denial is handed to the backend loop.
type copyIn struct {
	stream    tenancy.CopyStream
	statement string // the COPY's audited text
	// failed: a row was refused and CopyFail sent; the client's remaining
	// COPY messages are dropped
	failed bool
	// denial is the refusal whose CopyFail the server will answer with
	// 57014; the backend loop sends the client this denial instead.
	denial atomic.Pointer[tenancy.Decision]
}

// startCopy begins checking the rows of an allowed COPY ... FROM STDIN.
func (s *session) startCopy(d tenancy.Decision) {
	s.copyIn.stream, s.copyIn.statement, s.copyIn.failed = d.Copy.Stream(), d.Statement, false
}

// copyActive reports whether a COPY message of type t belongs to a checked
// COPY; any other message ends the check (the server left COPY mode).
func (s *session) copyActive(t byte) bool {
	switch t {
	case 'd', 'c', 'f':
		return s.copyIn.stream != nil || s.copyIn.failed
	case 'H':
		return false
	}
	s.copyIn.stream, s.copyIn.failed = nil, false
	return false
}

// onCopyMsg checks one CopyData, CopyDone or CopyFail of a checked COPY.
// The first refused row turns into a CopyFail to the server (which rolls
// the whole COPY back); the client's messages after it are dropped.
func (s *session) onCopyMsg(t byte, n int) error {
	if s.copyIn.failed {
		if _, err := s.cr.r.Discard(n); err != nil {
			return err
		}
		if t != 'd' {
			s.copyIn.failed = false
		}
		return nil
	}
	body, err := s.cr.readBody(n)
	if err != nil {
		return err
	}
	st := s.copyIn.stream
	switch t {
	case 'd':
		if den := st.Write(body); den != nil {
			s.copyIn.failed = true
			return s.copyFail(den)
		}
	case 'c':
		s.copyIn.stream = nil
		if den := st.Close(); den != nil {
			return s.copyFail(den)
		}
	case 'f':
		s.copyIn.stream = nil
	}
	return writeMsg(s.bw, t, body)
}

// copyFail aborts the COPY at the server with the denial's message, and
// records the denial.
func (s *session) copyFail(den *tenancy.Decision) error {
	s.copyIn.stream = nil
	d := *den
	d.Statement = s.copyIn.statement
	s.copyIn.denial.Store(&d)
	s.srv.opts.Metrics.StatementDecided("deny", d.Reason)
	s.recordDenial(d, "")
	return writeMsg(s.bw, 'f', append([]byte(d.Message), 0))
}

// copyDenied replaces the server's answer to pgtenant's CopyFail (57014,
// "COPY from stdin failed: pgtenant: ...") by the denial; other errors are
// left alone.
func (s *session) copyDenied(er *pgproto3.ErrorResponse) ([]byte, bool) {
	d := s.copyIn.denial.Load()
	if d == nil || er.Code != "57014" || !strings.Contains(er.Message, d.Message) {
		return nil, false
	}
	s.copyIn.denial.CompareAndSwap(d, nil)
	out := pgproto3.ErrorResponse{Severity: er.Severity, SeverityUnlocalized: er.SeverityUnlocalized,
		Code: pgerrcode.InsufficientPrivilege, Message: d.Message, Hint: d.Hint, Where: er.Where}
	b, err := out.Encode(nil)
	if err != nil || len(b) < 5 {
		return nil, false
	}
	*er = out
	return b[5:], true
}
