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

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/tenancy"
)

// errAwaitBackend tells run that the client loop stopped reading and the
// backend loop will end the session once it has relayed what is in flight.
var errAwaitBackend = errors.New("session ending after in-flight replies")

// backendSide is the backend half of a session: one backend connection and
// its reader and writer. In session mode a session keeps the one it logged
// in with; in transaction mode (txmode.go) it is swapped at transaction
// boundaries, so nothing here may belong to the client.
type backendSide struct {
	backend   *backendConn
	br        *msgReader
	bw        *connWriter
	backendFD int // the backend socket, -1 when it cannot park (TLS)
}

func newBackendSide(bc *backendConn) backendSide {
	return backendSide{backend: bc, br: &msgReader{r: newConnReader(bc.conn), maxLen: 1<<30 - 1},
		bw: newConnWriter(bc.conn), backendFD: socketFD(bc.conn)}
}

// session is one authenticated client connection: the client side, which
// lives as long as the client, and a backendSide. The client loop owns the
// backend writer; the backend loop owns the client writer (under wmu, which
// the drainer also takes to end an idle session). Its small fields sit
// together so that it fits the 1024-byte allocation class: every idle
// client holds one (TestSessionFitsItsSizeClass).
type session struct {
	srv       *Server
	rt        *runtimeConfig
	id        string
	connID    string // the connection's id, logged from before login
	principal auth.Principal
	region    *region
	user      string
	addr      string
	database  string // the database the client asked for
	appName   string // its application_name
	tls       bool
	started   time.Time
	tc        *tenantCounters // the tenant's console counters
	checker   StatementChecker
	track     *stmtTracker
	// ctx lives as long as the session: audit waits end with it.
	ctx    context.Context
	cancel context.CancelFunc
	key    cancelKey

	client net.Conn
	cr     *msgReader
	wmu    sync.Mutex
	cw     *connWriter
	// backendSide is the attached backend: fixed in session mode, swapped
	// under amu in transaction mode (zero while detached).
	backendSide
	queue pendingQueue
	// tx is the transaction-mode state; nil in session mode.
	tx *txState

	// client loop state
	skip      bool   // a denied extended message: drop input until Sync
	syncsSent uint64 // Syncs forwarded to the server (copyGate)
	auditRefs uint64 // last tenancy.Event.Ref handed out
	bindFmts  []int16
	bindVals  [][]byte
	// lastBind is the latest allowed Bind, for the audit text of an Execute
	// of its portal that a budget refuses, and for the time the check and
	// the audit took at Bind, which its first Execute reports as overhead.
	lastBind struct {
		portal   string
		ref      *stmtRef
		overhead time.Duration
	}
	expiresAt time.Time
	copyIn    copyIn // COPY FROM STDIN: the server's COPY state and the row check (copyin.go)

	// backend loop state
	batchErr   string                 // SQLSTATE of the first error since the last ReadyForQuery
	bportals   map[string]boundPortal // portals the server confirmed (values: a Bind allocates none)
	lastParsed string                 // the latest Parse's text (client loop; parsedText)
	events     []tenancy.Event        // built under wmu, recorded after it
	skipToSync bool                   // an extended message failed: the server skips up to Sync
	idle       atomic.Bool
	idleSince  atomic.Int64 // unix nanoseconds
	idleTimer  *time.Timer
	draining   atomic.Bool
	closed     sync.Once
	ending     atomic.Bool // close or Terminate began: a backend EOF is expected

	// serveStep is serveClient's handler (serveBatches), built once;
	// serveStop and serveErr are what it leaves serve with.
	serveStep func() bool
	serveErr  error
	serveStop bool

	// backendFatal: the backend sent a FATAL (relayed to the client), so
	// its EOF needs no further explanation.
	backendFatal bool
	// fatalSent: the proxy sent the client a FATAL; nothing may follow it
	// (guarded by wmu).
	fatalSent bool

	// Parking of an idle session's backend goroutine (park.go).
	backendDone chan error    // the backend goroutine's result, sent once
	bstate      atomic.Int32  // who reads the backend: bRunning, bParked, bFree, bInline, or bDone
	inline      bool          // the client goroutine runs the backend loop (relaySession, relayInline)
	listening   atomic.Bool   // the session ran LISTEN: notifications may come while it is idle
	parkReq     atomic.Bool   // the sweeper asked the backend goroutine to park
	batches     atomic.Uint64 // ReadyForQuery messages relayed
	sweepSeen   uint64        // batches at the last sweep (sweeper only)
	sweepIdle   bool          // idle at the last sweep (sweeper only)
	parkID      uint32        // the watcher's id for this session (parker's lock)
}

// attach completes an authenticated session with its backend connection
// and its statement checker.
func (s *session) attach(bc *backendConn, checker StatementChecker) {
	s.backendSide = newBackendSide(bc)
	s.br.r.onDeadline = s.backendDeadline
	// a batch larger than a buffer goes out in parts, and the server may
	// answer the first while the rest is written: someone must read
	s.bw.onFull = s.goBackend
	s.attachClient(checker)
}

// attachClient completes the client side of an authenticated session.
func (s *session) attachClient(checker StatementChecker) {
	s.cr.maxLen = s.rt.limits.MaxMessageBytes
	s.cr.body = nil // the password message's buffer: a session that stays idle need not keep it
	s.checker = checker
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.track = newStmtTracker()
	s.bportals = map[string]boundPortal{}
}

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// start relays messages on a new goroutine, the client goroutine, until
// either side ends the session, then calls finish. The client goroutine
// also relays the replies of most batches (relaySession); a backend
// goroutine runs only when the server answers without being asked, or
// waits for the client before it answers (park.go). An idle session's
// client goroutine waits with a stack the GC shrinks to the smallest, 2 KiB
// (clientLoop's serveClient, or its awaitInput on a TLS connection).
func (s *session) start(finish func()) {
	if s.tx != nil {
		s.startPooled(finish)
		return
	}
	s.backendDone = make(chan error, 1)
	if theParker != nil && s.backendFD >= 0 && s.br.r.Buffered() == 0 {
		// nothing to relay yet: nobody reads the backend until a batch
		// (or the watcher, once the sweeper arms it)
		s.bstate.Store(bFree)
	} else {
		// TLS, or no watcher: only a reader sees what the backend sends
		// unasked, so one reads all the time
		s.bstate.Store(bRunning)
		go s.runBackend()
	}
	go func() {
		defer finish()
		err := s.clientLoop()
		if errors.Is(err, errAwaitBackend) {
			s.goBackend() // the replies in flight end the session
			err = <-s.backendDone
			s.close()
		} else {
			s.close()
			<-s.backendDone
		}
		if err != nil && !isClosedErr(err) {
			s.logger().Debug("session ended", "error", err)
		}
	}()
}

// relaySession relays the replies to the batch the client goroutine just
// wrote, on the client goroutine (session mode, bw flushed, something in
// flight, no backend goroutine): one goroutine per session and no wake-up
// of another per batch. It returns once the replies are in and nothing is
// buffered (the backend socket is then read by nobody, bFree), or hands
// the backend to a backend goroutine when the server waits for client input
// first (a batch without Sync, COPY FROM STDIN). When the backend side ends
// it reports as a backend goroutine would and returns errAwaitBackend.
func (s *session) relaySession() error {
	if !s.queue.settles(s.skipToSync) {
		s.goBackend()
		return nil
	}
	s.inline = true
	err := s.backendLoop()
	s.inline = false
	switch {
	case errors.Is(err, errYield):
		s.freeBackend(bInline)
		if s.listening.Load() {
			// a notification may come any time: let the watcher see it now
			s.parkFree()
		}
		return nil
	case errors.Is(err, errGoAsync):
		s.goBackend()
		return nil
	}
	s.bstate.Store(bDone)
	s.close()
	s.backendDone <- err
	return errAwaitBackend
}

// run is start that returns when the session has ended.
func (s *session) run() {
	done := make(chan struct{})
	s.start(func() { close(done) })
	<-done
}

// logger returns the session's logger. It is built at each use rather than
// kept: a session logs a few lines in its life, and an idle one then holds
// no preformatted attributes (about 330 bytes of the idle-client bound).
func (s *session) logger() *slog.Logger {
	return s.srv.log.With("conn_id", s.connID, "client_addr", s.addr,
		"session_id", s.id, "account_id", s.principal.Account, "region", s.principal.Region)
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
		if s.cancel != nil {
			s.cancel()
		}
		s.queue.releaseAll()
		s.copyIn.gate.end()
		if s.cr.r.serving.Load() {
			// Close waits for the raw read serveClient runs in, and that
			// read's callback may be this goroutine, or wait for the
			// backend this close is about to end: close once it returns.
			go s.client.Close() //nolint:errcheck // as below
		} else {
			_ = s.client.Close()
		}
		if s.tx != nil {
			s.closePooled()
			return
		}
		if theParker != nil && s.backendFD >= 0 {
			theParker.remove(s)
		}
		_ = s.backend.conn.Close()
		if s.bstate.CompareAndSwap(bParked, bDone) || s.bstate.CompareAndSwap(bFree, bDone) {
			s.backendDone <- nil // no backend goroutine will report
		}
	})
}

// terminateBackend sends Terminate so the server ends the session cleanly.
func (s *session) terminateBackend() {
	s.ending.Store(true)
	if s.tx != nil {
		return // a pooled backend outlives the client: close detaches it (closePooled)
	}
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
	s.logger().Warn("backend connection lost", "error", err)
	s.fatal(newClientError(pgerrcode.ConnectionFailure, "backend_lost", "lost the connection to region %q", s.region.name))
}

func shutdownError() *clientError {
	return newClientError(pgerrcode.AdminShutdown, "shutdown", "terminating connection because the proxy is shutting down")
}

// event fills the session's fields of an audit event.
func (s *session) event(kind string) tenancy.Event {
	return tenancy.Event{
		Kind: kind, Time: time.Now(), AccountID: s.principal.Account, Subject: s.principal.Subject,
		ClientUser: s.user, ClientAddr: s.addr, Region: s.principal.Region, SessionID: s.id, Rows: -1,
		Role: s.principal.Role(), Actor: s.principal.Actor, Purpose: s.principal.Purpose, Ticket: s.principal.Ticket,
	}
}

// sendStartupReply completes the client's startup as PostgreSQL would:
// AuthenticationOk, the backend's ParameterStatus values, pgtenant's own
// BackendKeyData and ReadyForQuery.
func (s *session) sendStartupReply() error {
	// Under wmu: the session is tracked already, so a Shutdown's drain may
	// end it with a FATAL as soon as it is idle, and must write that after
	// the ReadyForQuery, not into the middle of this reply.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := encode(s.cw, &pgproto3.AuthenticationOk{}); err != nil {
		return err
	}
	if s.tx != nil {
		for _, kv := range s.tx.params {
			if err := encode(s.cw, &pgproto3.ParameterStatus{Name: kv[0], Value: kv[1]}); err != nil {
				return err
			}
		}
	} else {
		for name, value := range s.backend.params {
			if err := encode(s.cw, &pgproto3.ParameterStatus{Name: name, Value: value}); err != nil {
				return err
			}
		}
		s.backend.params = nil // reported once; an idle session need not keep them
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

// auditWait bounds every wait for the audit: an audit outage must not stall
// a session, nor Shutdown, without bound.
const auditWait = 5 * time.Second

// record hands ev to the auditor, waiting at most auditWait and no longer
// than parent lives.
func (s *session) record(parent context.Context, ev tenancy.Event) error {
	ctx := newWaitCtx(parent, auditWait)
	err := s.srv.opts.Auditor.Record(ctx, ev)
	ctx.release()
	return err
}

// recordAsync queues a non-statement audit event for the running session;
// failures are logged.
func (s *session) recordAsync(ev tenancy.Event) { s.recordWithin(s.ctx, ev) }

// recordWithin records ev within parent; failures are logged.
func (s *session) recordWithin(parent context.Context, ev tenancy.Event) {
	if !s.srv.auditing() {
		return
	}
	if err := s.record(parent, ev); err != nil {
		s.logger().Warn("audit event not recorded", "kind", ev.Kind, "error", err)
	}
}

// deferEvent keeps an event the backend loop built while it held the client
// writer: it is recorded once the lock is released (flushEvents).
func (s *session) deferEvent(ev tenancy.Event) { s.events = append(s.events, ev) }

// flushEvents records the deferred events (backend loop, writer lock free).
func (s *session) flushEvents() {
	for i, ev := range s.events {
		s.recordAsync(ev)
		s.events[i] = tenancy.Event{}
	}
	s.events = s.events[:0]
}
