package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
)

// errAwaitBackend tells run that the client loop stopped reading and the
// backend loop will end the session once it has relayed what is in flight.
var errAwaitBackend = errors.New("session ending after in-flight replies")

// session is one authenticated client connection and its backend connection.
// The client loop owns the backend writer; the backend loop owns the client
// writer (under wmu, which the drainer also takes to end an idle session).
type session struct {
	srv       *Server
	rt        *runtimeConfig
	id        string
	log       *slog.Logger
	principal auth.Principal
	region    *region
	user      string
	addr      string
	checker   StatementChecker
	skips     skipAware // checker, when it tracks skipped Parses
	track     *stmtTracker
	key       cancelKey

	client  net.Conn
	cr      *msgReader
	wmu     sync.Mutex
	cw      *connWriter
	backend *backendConn
	br      *msgReader
	bw      *connWriter
	queue   pendingQueue

	// client loop state
	skip      bool                // a denied extended message: drop input until Sync
	stmts     map[string]*stmtRef // prepared statements, for the audit
	portals   map[string]*stmtRef
	auditRefs uint64 // last audit.Event.Ref handed out
	bindFmts  []int16
	bindVals  [][]byte
	expiresAt time.Time

	// backend loop state
	batchErr   string // SQLSTATE of the first error since the last ReadyForQuery
	skipToSync bool   // an extended message failed: the server skips up to Sync
	idle       atomic.Bool
	idleSince  atomic.Int64 // unix nanoseconds
	idleTimer  *time.Timer
	draining   atomic.Bool
	closed     sync.Once
	ending     atomic.Bool // close or Terminate began: a backend EOF is expected
	// backendFatal: the backend sent a FATAL (relayed to the client), so
	// its EOF needs no further explanation.
	backendFatal bool
	// fatalSent: the proxy sent the client a FATAL; nothing may follow it
	// (guarded by wmu).
	fatalSent bool
}

// attach completes an authenticated session with its backend connection
// and its statement checker.
func (s *session) attach(bc *backendConn, checker StatementChecker) {
	s.backend = bc
	s.br = &msgReader{r: newConnReader(bc.conn), maxLen: 1<<30 - 1}
	s.bw = newConnWriter(bc.conn)
	s.cr.maxLen = s.rt.limits.MaxMessageBytes
	s.checker = checker
	s.skips, _ = checker.(skipAware)
	s.track = newStmtTracker()
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// run relays messages until either side ends the session.
func (s *session) run() {
	done := make(chan error, 1)
	go func() {
		err := s.backendLoop()
		// Nothing relays backend replies any more: end the session, which
		// also wakes the client loop's read (a client waiting for a reply
		// would otherwise wait forever for a backend that is gone).
		s.close()
		done <- err
	}()
	err := s.clientLoop()
	if errors.Is(err, errAwaitBackend) {
		err = <-done
		s.close()
	} else {
		s.close()
		<-done
	}
	if err != nil && !isClosedErr(err) {
		s.log.Debug("session ended", "error", err)
	}
}

// close ends both connections once; a blocked read or write returns.
func (s *session) close() {
	s.closed.Do(func() {
		s.ending.Store(true)
		if s.idleTimer != nil {
			s.idleTimer.Stop()
		}
		if s.track != nil {
			s.track.close()
		}
		_ = s.client.Close()
		_ = s.backend.conn.Close()
	})
}

// terminateBackend sends Terminate so the server ends the session cleanly.
func (s *session) terminateBackend() {
	s.ending.Store(true)
	_ = s.backend.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writeHeader(s.bw, 'X', 0)
	_ = s.bw.Flush()
}

// fatal sends a FATAL error to the client now; used only when the session
// ends at once (protocol violations, drain).
func (s *session) fatal(ce *clientError) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.fatalSent = true
	_ = s.client.SetWriteDeadline(time.Now().Add(time.Second))
	_ = encode(s.cw, ce.errorResponse("FATAL"))
	_ = s.cw.Flush()
}

// drain ends the session now if it is idle, or else at its next idle point.
func (s *session) drain() {
	s.draining.Store(true)
	if !s.idle.Load() {
		return
	}
	s.wmu.Lock()
	idle := s.idle.Load()
	s.wmu.Unlock()
	if idle {
		s.fatal(shutdownError())
		s.close()
	}
}

// backendLost tells the client that its backend connection ended under it
// (the server crashed, was killed or shut down), unless the backend said why
// itself (a FATAL already relayed) or the session is ending anyway. It is
// called only at a message boundary of the client stream.
func (s *session) backendLost(err error) {
	if s.backendFatal || s.ending.Load() {
		return
	}
	s.log.Warn("backend connection lost", "error", err)
	s.fatal(newClientError(codeConnectionFailure, "backend_lost", "lost the connection to region %q", s.region.name))
}

func shutdownError() *clientError {
	return newClientError(codeAdminShutdown, "shutdown", "terminating connection because the proxy is shutting down")
}

// event fills the session's fields of an audit event.
func (s *session) event(kind string) audit.Event {
	return audit.Event{
		Kind: kind, Time: time.Now(), AccountID: s.principal.Account, Subject: s.principal.Subject,
		ClientUser: s.user, ClientAddr: s.addr, Region: s.principal.Region, SessionID: s.id, Rows: -1,
	}
}

// sendStartupReply completes the client's startup as PostgreSQL would:
// AuthenticationOk, the backend's ParameterStatus values, pgtenant's own
// BackendKeyData and ReadyForQuery.
func (s *session) sendStartupReply() error {
	if err := encode(s.cw, &pgproto3.AuthenticationOk{}); err != nil {
		return err
	}
	for name, value := range s.backend.params {
		if err := encode(s.cw, &pgproto3.ParameterStatus{Name: name, Value: value}); err != nil {
			return err
		}
	}
	key := &pgproto3.BackendKeyData{ProcessID: s.key.pid, SecretKey: s.key.secret[:]}
	if err := encode(s.cw, key); err != nil {
		return err
	}
	if err := encode(s.cw, &pgproto3.ReadyForQuery{TxStatus: 'I'}); err != nil {
		return err
	}
	s.idle.Store(true)
	s.startIdleTimer()
	return s.cw.Flush()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// recordAsync queues a non-statement audit event; failures are logged.
func (s *session) recordAsync(ev audit.Event) {
	if !s.srv.auditing() {
		return
	}
	if err := s.srv.opts.Auditor.Record(context.Background(), ev); err != nil {
		s.log.Warn("audit event not recorded", "kind", ev.Kind, "error", err)
	}
}
