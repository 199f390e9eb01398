package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// Transaction mode: a session's client side stays; its backend side is
// checked out of a pool at the start of a transaction and given back when
// the server says the transaction ended (ReadyForQuery 'I', nothing in
// flight).
//
// The client loop decides when a transaction may start. Before the first
// message of a batch (anything but Sync, Flush and COPY data after a Query
// or Sync, or on a fresh backend) it waits until every earlier batch is
// answered, so it knows the server's transaction status: 'I' means the
// backend was given back and the message starts a new transaction on
// whichever backend it checks out next; 'T' or 'E' means the transaction
// goes on on the same backend. (While the server skips messages up to a
// Sync not sent yet, nothing it reads starts a transaction and no
// ReadyForQuery can come, so the client loop does not wait; once a Sync is
// in flight it waits for its ReadyForQuery.) The wait is also what makes
// the handover safe: the backend loop gives a backend back only at a
// ReadyForQuery with nothing in flight, and while the client loop handles a
// message without holding tx.mu no ReadyForQuery is outstanding; Sync,
// Flush, COPY data and Terminate, which may follow outstanding replies, are
// handled under tx.mu. A new transaction starts with an injected Bind+Execute of
// a context statement (ctxFixedName(k) for k settings, ctxStatement beyond
// ctxFixedMax), sent in the same write as the client's first message: it
// sets the tenant setting, the subject, the client's startup settings and
// its committed session-level SETs (tenancy.SessionSet, staged until their
// transaction commits) with set_config(name, value, true), so they end with
// the transaction.
// PostgreSQL runs it in the implicit transaction that the client's messages
// continue: an extended batch is one transaction up to Sync
// (exec_execute_message keeps the transaction open for the next message), a
// BEGIN turns the implicit block into an explicit one, and a simple Query
// after extended messages without Sync runs in the same transaction and
// commits it (exec_simple_query's start_xact_command finds it started).
//
// The backend loop settles every ReadyForQuery (settle): with 'I' and
// nothing in flight it detaches the backend, resets it if a statement
// dirtied it, waits for cancel requests in flight to it, and checks it in.
//
// Prepared statements move with the client as in PgBouncer 1.21: a client's
// named Parse is prepared on the backend under a name derived from its text
// (pgtenant_s_<hash>), the backends remember which they hold (LRU), and a
// Bind or Describe of a statement the backend lacks is preceded by an
// injected Parse whose ParseComplete is not relayed. A client's Close of a
// statement is answered by a Close of a name no backend holds (the server's
// CloseComplete is the answer), and a Parse of a text the backend already
// holds by such a Close too, relayed as ParseComplete. The client's unnamed
// statement is parsed again before its Bind or Describe when it was parsed
// on another attachment (another client may have replaced the backend's).
// The policy sees only the client's names and messages, so its mirror and
// Bind checks are those of session mode.

// errDetached ends a backend goroutine that gave its backend back.
var errDetached = errors.New("backend detached at the end of a transaction")

// errYield ends an inline relay whose replies are all in (the transaction
// goes on on the same backend) or that must wait for the client's input
// (the server skips up to a Sync not sent yet).
var errYield = errors.New("inline relay: replies in")

// errGoAsync ends an inline relay at a reply after which the server waits
// for the client (CopyInResponse, CopyBothResponse): a backend goroutine
// relays the rest of the attachment.
var errGoAsync = errors.New("inline relay: the server waits for client data")

// errClientTerminated ends the client loop on a Terminate the session
// answers by ending at once (a pooled session's, one in COPY FROM STDIN).
var errClientTerminated = errors.New("client terminated")

// Reserved statement names of transaction mode: the prefix is pgtenant's,
// so a client can never Parse, Bind or Close them (tenancy.ReservedPrefix).
const (
	serverStmtPrefix = "pgtenant_s_"
	noopStmt         = "pgtenant_none" // never prepared: closing it is a no-op
)

// closeNoop is the body of a Close of noopStmt.
var closeNoop = append(append([]byte{'S'}, noopStmt...), 0)

// txState is a pooled session's transaction-mode state.
type txState struct {
	pool *backendPool

	// mu guards the attachment (pc and the session's backendSide) and
	// skipping; turn is signalled when the backend loop settles.
	mu       sync.Mutex
	turn     sync.Cond
	pc       *pooledConn
	skipping bool // the server skips messages up to Sync (backend loop's copy)
	// async: a backend goroutine relays the current attachment (done is
	// its result, client loop only); otherwise the client loop relays the
	// replies itself (relayInline). Set by the client loop, cleared by the
	// backend loop when it gives the backend back.
	async atomic.Bool
	done  chan error
	wg    sync.WaitGroup
	// onFull is goAsync, bound once per session: the hook of the attached
	// backend's writer.
	onFull func()
	// waiting: the client loop waits for a backend; a cancel request
	// arriving meanwhile ends the wait with a value on cancelWait.
	waiting    bool
	cancelWait chan struct{}
	waiter     waiter // the client loop's, reused from one wait to the next

	// client loop only
	batchOpen bool                  // a message since the last Query or Sync
	stmts     map[string]clientStmt // the client's named statements
	// unnamed is the client's unnamed statement (its Parse body), nil when
	// it has none; unnamedHere: the attached backend holds it (the client
	// parsed it there). Another client may have replaced a backend's
	// unnamed statement between two of this client's transactions.
	unnamed     []byte
	unnamedHere bool

	// backend loop only (the client loop while it relays inline)
	bpc        *pooledConn // the backend the backend loop relays
	swallowing bool        // relaying the injected context statement's replies
	status     byte        // the last ReadyForQuery's transaction status

	// staged are confirmed session-level SETs whose transaction has not
	// ended yet (backend loop only).
	staged []tenancy.SessionSet

	// smu guards the settings in force: the client's startup settings and
	// its committed session-level SETs (by lower-case name), and the Bind
	// that sets them with the tenant context in each transaction.
	smu      sync.Mutex
	ctxBind  []byte
	settings map[string]string

	// immutable after login
	base     []string          // tenant setting and subject: the first names of ctxBind
	values   []string          // their values
	startup  map[string]string // the client's startup settings by lower-case name
	params   paramList         // ParameterStatus reported to the client at startup: the pool's with the client's own settings
	baseline map[string]string // the pool's backends' ParameterStatus by lower-case name (the pool's, shared)
}

// clientStmt is a client's named statement: its server-side name and the
// Parse body that prepares it under that name.
type clientStmt struct {
	srv   string
	parse []byte
}

// authenticatePooled completes the login of a transaction-mode session: it
// checks the region answers (a backend can be had) and builds the session's
// transaction context.
func (s *Server) authenticatePooled(ss *session, req *startupRequest, rt *runtimeConfig, reg *region) error {
	for name, value := range req.Params {
		if strings.EqualFold(name, "client_encoding") && !isUTF8Name(value) {
			return newClientError(pgerrcode.FeatureNotSupported, "pool_client_encoding",
				"pool.mode: transaction serves client_encoding UTF8 only (asked: %q)", truncate(value, 40))
		}
	}
	db := req.Database
	if reg.database != "" {
		db = reg.database
	}
	pool := s.pool(poolKey{region: reg.name, database: db, readOnly: ss.principal.ReadOnly}, reg, rt)
	if !pool.connected() {
		// The pool's first client: a backend proves the region answers and
		// reports the ParameterStatus values clients get. Later logins
		// need no backend, so clients connect while every backend is busy.
		ctx, cancel := context.WithTimeout(context.Background(), reg.base.ConnectTimeout+time.Second)
		defer cancel()
		pc, err := pool.checkout(ctx, ss)
		if err != nil {
			return err
		}
		pool.checkin(pc)
	}
	tx := &txState{pool: pool, stmts: map[string]clientStmt{}, settings: map[string]string{}, startup: map[string]string{},
		base: []string{rt.settings.tenantSetting, subjectSetting}, values: []string{ss.principal.Account, ss.principal.Subject}}
	tx.turn.L = &tx.mu
	tx.cancelWait = make(chan struct{}, 1)
	tx.waiter.ch = make(chan *pooledConn, 1)
	tx.onFull = ss.goAsync
	for name, value := range req.Params {
		ln := strings.ToLower(name)
		if ln == "client_encoding" || ln == "search_path" {
			continue // pinned on every pooled backend
		}
		tx.startup[ln] = value
		tx.settings[ln] = value
	}
	tx.rebuildCtx()
	pool.mu.Lock()
	pool.clients++
	tx.baseline = pool.baseline
	for _, kv := range pool.params {
		if v, ok := tx.settings[strings.ToLower(kv[0])]; ok {
			kv[1] = v
		}
		tx.params = append(tx.params, kv)
	}
	pool.mu.Unlock()
	ss.tx = tx
	ss.attachClient(rt.checkers(ss.principal))
	return nil
}

func isUTF8Name(s string) bool {
	c := cleanEncodingName(s)
	return c == "utf8" || c == "unicode"
}

// ctxBind builds the Bind that sets a transaction's context: of the
// fixed-arity statement for up to ctxFixedMax pairs, else of ctxStatement.
func ctxBind(names, values []string) []byte {
	if len(names) > ctxFixedMax {
		return ctxBindBody(names, values)
	}
	b := append([]byte{0}, ctxFixedName(len(names))...)
	b = append(b, 0, 0, 0) // no parameter format codes: all text
	b = binary.BigEndian.AppendUint16(b, uint16(2*len(names)))
	for i := range names {
		for _, p := range []string{names[i], values[i]} {
			b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
			b = append(b, p...)
		}
	}
	return append(b, 0, 0) // no result format codes: text
}

// ctxBindBody builds the Bind of ctxStatement (unnamed portal, text
// parameters: the names and the values as text arrays, no result formats).
func ctxBindBody(names, values []string) []byte {
	b := append([]byte{0}, ctxStatement...)
	b = append(b, 0, 0, 1, 0, 0, 0, 2)
	for _, arr := range []string{textArray(names), textArray(values)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(arr)))
		b = append(b, arr...)
	}
	return append(b, 0, 0)
}

// textArray is the text form of a text[] of elems, every element quoted.
func textArray(elems []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for _, c := range []byte(e) {
			if c == '"' || c == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// executeUnnamed is the body of an Execute of the unnamed portal, all rows.
var executeUnnamed = []byte{0, 0, 0, 0, 0}

// startPooled runs a transaction-mode session on one new goroutine: the
// client loop, which also relays the backend's replies of most batches
// itself (relayInline); a backend goroutine relays an attachment only when
// the server waits for client input before it answers (runPooledBackend).
func (s *session) startPooled(finish func()) {
	go func() {
		defer finish()
		err := s.clientLoop()
		if errors.Is(err, errAwaitBackend) {
			// the replies in flight end the session (a FATAL after them)
			s.tx.mu.Lock()
			attached := s.tx.pc != nil
			s.tx.mu.Unlock()
			done, async := s.tx.done, s.tx.async.Load()
			switch {
			case attached && async:
				err = <-done
			case attached && !s.queue.empty():
				if err = s.relayInline(); err == nil && s.tx.done != nil {
					err = <-s.tx.done // the relay went on on a backend goroutine
				}
			}
		}
		s.close()
		s.tx.wg.Wait()
		if err != nil && !isClosedErr(err) && !errors.Is(err, errAwaitBackend) {
			s.logger().Debug("session ended", "error", err)
		}
	}()
}

// flushBackend writes what the client loop buffered for the backend (the
// client has no more input buffered). In transaction mode it then relays
// the replies itself when the server answers everything sent without more
// client input, or else starts a backend goroutine for the attachment.
func (s *session) flushBackend() error {
	if s.tx == nil {
		return s.flushSession()
	}
	tx := s.tx
	tx.mu.Lock()
	if tx.pc == nil {
		tx.mu.Unlock()
		return nil
	}
	if !tx.async.Load() && s.sendsFromRelay() {
		// no backend goroutine reads the attachment (checked first: its
		// reader is that goroutine's), so none can give the backend back
		// before the relay's first read sends the batch (connReader.sendFirst)
		s.br.r.sendFirst = s.bw
		tx.mu.Unlock()
		return s.relayInline()
	}
	if err := s.bw.Flush(); err != nil {
		tx.mu.Unlock()
		return err
	}
	if tx.async.Load() || s.queue.empty() {
		tx.mu.Unlock()
		return nil
	}
	if !s.queue.settles(tx.skipping) {
		tx.mu.Unlock()
		s.startAsync()
		return nil
	}
	tx.mu.Unlock()
	return s.relayInline()
}

// relayInline runs the backend loop on the client loop's goroutine until
// the replies in flight are in: the backend is given back (checked in
// here), or the transaction goes on and the server waits for the client.
// A reply after which the server waits for client data (COPY FROM STDIN)
// hands the rest of the attachment to a backend goroutine. Relaying on the
// client's goroutine costs no goroutine start or wake-up per transaction:
// transaction mode waits for a batch's replies before the next batch
// anyway (beginPooled). An error other than those ends the session.
func (s *session) relayInline() error {
	tx := s.tx
	pc := tx.bpc
	s.inline = true
	err := s.backendLoop()
	s.inline = false
	switch {
	case errors.Is(err, errYield):
		return nil
	case errors.Is(err, errDetached):
		s.checkinPooled(pc)
		return nil
	case errors.Is(err, errGoAsync):
		s.startAsync()
		return nil
	}
	s.close()
	if err == nil {
		err = net.ErrClosed // the session was ended with a FATAL meanwhile
	}
	return err
}

// startAsync starts a backend goroutine that relays the current attachment
// until it is given back (client loop, attached, no backend goroutine).
func (s *session) startAsync() {
	tx := s.tx
	tx.async.Store(true)
	tx.done = make(chan error, 1)
	tx.wg.Add(1)
	go s.runPooledBackend(tx.bpc, tx.done)
}

// goAsync is the attached backend writer's onFull: a batch larger than a
// buffer goes to the server in parts, and the server may answer the first
// part while the client loop still writes the rest, so a backend goroutine
// must read the replies from then on, or both directions' socket buffers
// could fill with nobody reading.
func (s *session) goAsync() {
	if !s.tx.async.Load() {
		s.startAsync()
	}
}

// relayAsync makes sure a backend goroutine relays the attachment while the
// client loop blocks on something only the server's replies end (a checker
// waiting for them, statements.go); tx.mu not held.
func (s *session) relayAsync() {
	if s.tx == nil {
		s.goBackend()
		return
	}
	s.tx.mu.Lock()
	defer s.tx.mu.Unlock()
	if s.tx.pc != nil && !s.tx.async.Load() {
		s.startAsync()
	}
}

// yieldInline reports whether an inline relay is done after a settled
// ReadyForQuery or error: nothing is in flight, or the server skips
// messages up to a Sync the client has not sent yet.
func (s *session) yieldInline() bool {
	return s.queue.idle() || (s.skipToSync && !s.queue.syncPending())
}

// startsBatch reports whether a client message may start a transaction when
// it is the first since the last Query or Sync.
func startsBatch(t byte) bool {
	switch t {
	case 'Q', 'P', 'B', 'E', 'D', 'C', 'F':
		return true
	}
	return false
}

// heldDuring reports whether the client loop handles t holding tx.mu: the
// messages that may be handled while a ReadyForQuery is outstanding (Sync,
// Flush, COPY data, Terminate), so the backend cannot be given back between
// the check that it is attached and the write. The others never run while
// one is outstanding (see beginPooled) and may wait for the server's replies
// (statements.go), which needs the backend loop to settle freely.
func heldDuring(t byte) bool { return !startsBatch(t) }

// beginPooled prepares the pooled session for client message t (header
// read): it waits for the transaction status at a batch start, checks out a
// backend and injects the transaction context when a transaction starts, or
// answers the message itself when it needs no backend. local reports that
// the message was consumed. When local is false and heldDuring(t), tx.mu is
// held until endPooled.
func (s *session) beginPooled(t byte, n int) (local bool, err error) {
	tx := s.tx
	tx.mu.Lock()
	if tx.pc != nil && !tx.batchOpen && (startsBatch(t) || t == 'X') {
		// the status the server will have when it reads t: wait for the
		// replies to everything sent so far. A Terminate waits too: a
		// client that leaves the moment it has its last ReadyForQuery
		// would otherwise find the backend still attached while the backend
		// loop settles it, and close a backend the pool could keep. (A
		// Terminate in COPY FROM STDIN never gets here: onCopyModeMsg.)
		if err := s.bw.Flush(); err != nil {
			tx.mu.Unlock()
			return true, err
		}
		// While the server skips up to a Sync not sent yet, nothing it reads
		// starts a transaction and no ReadyForQuery can come: go on. Once
		// a Sync is in flight, its ReadyForQuery decides.
		for tx.pc != nil && !s.queue.idle() && !s.ending.Load() && !(tx.skipping && !s.queue.syncPending()) {
			if tx.async.Load() {
				tx.turn.Wait()
				continue
			}
			// no backend goroutine: relay the replies here
			tx.mu.Unlock()
			err := s.relayInline()
			tx.mu.Lock()
			if err != nil {
				tx.mu.Unlock()
				return true, err
			}
		}
		if s.ending.Load() {
			tx.mu.Unlock()
			return true, net.ErrClosed
		}
	}
	if tx.pc != nil {
		if !heldDuring(t) {
			tx.mu.Unlock()
		}
		return false, nil
	}
	tx.mu.Unlock()
	switch t {
	case 'X':
		_, err := s.cr.r.Discard(n)
		if err == nil {
			err = errClientTerminated
		}
		return true, err
	case 'S':
		// no transaction is open: answer as the server would
		s.track.apply(s.checker)
		s.checker.Sent('S')
		s.skip = false
		return true, s.writeLocal(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case 'H', 'd', 'c', 'f':
		// nothing to flush; COPY messages outside COPY are ignored, as the
		// server ignores them
		_, err := s.cr.r.Discard(n)
		return true, err
	}
	pc, err := s.checkoutPooled()
	if err != nil {
		if errors.Is(err, errWaitCancelled) {
			// the client cancelled the statement while it waited for a backend
			err = newClientError(pgerrcode.QueryCanceled, "cancelled",
				"canceling statement due to user request (it was waiting for a backend connection)")
		}
		return true, s.poolRefusal(t, n, err)
	}
	tx.mu.Lock()
	if s.ending.Load() {
		tx.mu.Unlock()
		tx.pool.checkin(pc)
		return true, net.ErrClosed
	}
	s.backendSide = pc.side
	tx.pc = pc
	tx.done = nil
	tx.bpc, tx.swallowing = pc, false
	pc.side.bw.onFull = tx.onFull
	tx.batchOpen = false
	tx.skipping = false
	tx.unnamedHere = false
	// the context first, in the same write as the client's message
	s.queue.push(pending{kind: pendInject})
	tx.smu.Lock()
	err = writeMsg(s.bw, 'B', tx.ctxBind)
	tx.smu.Unlock()
	if err == nil {
		err = writeMsg(s.bw, 'E', executeUnnamed)
	}
	if !heldDuring(t) {
		tx.mu.Unlock()
	}
	return false, err
}

// checkoutPooled checks a backend out for a new transaction: an idle one
// at once, or else after a wait that a cancel request ends.
func (s *session) checkoutPooled() (*pooledConn, error) {
	tx := s.tx
	if pc := tx.pool.checkoutIdle(s); pc != nil {
		return pc, nil
	}
	tx.mu.Lock()
	tx.waiting = true
	tx.mu.Unlock()
	pc, err := tx.pool.acquire(s.ctx, s, &tx.waiter, tx.cancelWait)
	tx.mu.Lock()
	tx.waiting = false
	select {
	case <-tx.cancelWait: // came as the wait ended: the statement runs
	default:
	}
	tx.mu.Unlock()
	return pc, err
}

// endPooled ends the handling of client message t.
func (s *session) endPooled(t byte) {
	tx := s.tx
	switch {
	case t == 'Q' || t == 'F':
		// the server drops the unnamed statement at every simple Query
		// (exec_simple_query), so the client has none any more
		tx.batchOpen = false
		tx.unnamed, tx.unnamedHere = nil, false
	case t == 'S':
		tx.batchOpen = false
	case startsBatch(t):
		tx.batchOpen = true
	}
	if heldDuring(t) {
		tx.mu.Unlock()
	}
}

// writeLocal answers the client without a backend (no backend loop runs).
func (s *session) writeLocal(msgs ...pgproto3.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, m := range msgs {
		if err := encode(s.cw, m); err != nil {
			return err
		}
	}
	return s.cw.Flush()
}

// poolRefusal answers a message for which no backend could be had (waited
// pool.max_wait, or the region is down) with an error, as the server would
// answer a failing statement: a Query gets the error and ReadyForQuery; an
// extended message the error, and the messages up to Sync are skipped.
func (s *session) poolRefusal(t byte, n int, err error) error {
	if isClosedErr(err) || errors.Is(err, context.Canceled) {
		return err
	}
	ce := toClientError(err)
	if ce.Code == pgerrcode.QueryCanceled {
		s.logger().Debug("statement cancelled while waiting for a backend connection")
	} else {
		s.logger().Warn("no backend connection for a transaction", "reason", ce.Reason, "error", err)
	}
	if _, derr := s.cr.r.Discard(n); derr != nil {
		return derr
	}
	d := tenancy.Decision{SQLState: ce.Code, Reason: ce.Reason, Message: ce.Message, Hint: ce.Hint}
	s.decided(d)
	er := ce.errorResponse("ERROR")
	if t == 'Q' || t == 'F' {
		s.checker.Sent('Q')
		s.idle.Store(true)
		return s.writeLocal(er, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	s.skip = true
	return s.writeLocal(er)
}

// runPooledBackend relays an attachment's backend until it is given back
// (then it checks it in) or the session ends; the client loop started it
// when the server waits for client input before it answers (startAsync).
func (s *session) runPooledBackend(pc *pooledConn, done chan<- error) {
	defer s.tx.wg.Done()
	err := s.backendLoop()
	if errors.Is(err, errDetached) {
		s.checkinPooled(pc)
		done <- nil
		return
	}
	s.close()
	done <- err
}

// settle tells the client loop the outcome of a ReadyForQuery or of an
// error (backend loop, client writer free); it gives the backend back when
// the transaction ended with nothing in flight.
func (s *session) settle(ready bool, status byte) (detached bool) {
	tx := s.tx
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if ready {
		s.queue.unhold()
	}
	tx.skipping = s.skipToSync
	defer tx.turn.Broadcast()
	if !ready || status != 'I' || tx.pc != tx.bpc || !s.queue.empty() {
		return false
	}
	tx.pc = nil
	tx.async.Store(false)
	s.backendSide = backendSide{}
	return true
}

// checkinPooled gives a detached backend back to its pool: reset when a
// statement changed its session state, closed when its state is unknown,
// and only once no cancel request to it is in flight.
func (s *session) checkinPooled(pc *pooledConn) {
	side := &pc.side
	side.bw.onFull = nil
	if err := side.bw.Flush(); err != nil {
		pc.lost = true
	}
	if side.br.r.Buffered() > 0 {
		pc.lost = true // the server sent something after ReadyForQuery
	}
	if pc.dirty && !pc.lost {
		if err := resetBackend(side); err != nil {
			s.logger().Warn("pool: backend reset failed: closing it", "error", err)
			pc.lost = true
		}
		pc.dirty = false
	}
	pc.cancels.Wait()
	if pc.lost {
		pc.pool.discard(pc)
		return
	}
	pc.pool.checkin(pc)
}

// resetBackend runs RESET ALL on a detached backend: the pins are its
// startup parameters, so they come back, and every other setting a client
// changed at session level returns to its default.
func resetBackend(side *backendSide) error {
	_ = side.backend.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = side.backend.conn.SetDeadline(time.Time{}) }()
	if err := writeMsg(side.bw, 'Q', append([]byte("RESET ALL"), 0)); err != nil {
		return err
	}
	if err := side.bw.Flush(); err != nil {
		return err
	}
	failed := false
	for {
		t, n, err := side.br.header()
		if err != nil {
			return err
		}
		if t == 'E' {
			failed = true
		}
		if t == 'Z' {
			body, err := side.br.readBody(n)
			if err != nil {
				return err
			}
			if failed || len(body) != 1 || body[0] != 'I' {
				return fmt.Errorf("RESET ALL failed (status %q)", body)
			}
			return nil
		}
		if _, err := side.br.r.Discard(n); err != nil {
			return err
		}
	}
}

// closePooled gives up the attached backend of an ending session: mid-
// transaction, its state is unknown, so it is closed (the server rolls the
// transaction back).
func (s *session) closePooled() {
	tx := s.tx
	tx.mu.Lock()
	pc := tx.pc
	tx.pc = nil
	tx.turn.Broadcast()
	tx.mu.Unlock()
	if pc != nil {
		pc.pool.discard(pc)
	}
	tx.pool.mu.Lock()
	tx.pool.clients--
	tx.pool.mu.Unlock()
}

// cancelTarget is the backend the session holds, if any (see
// session.cancelTarget).
func (tx *txState) cancelTarget() (cancelTarget, func(), bool) {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	pc := tx.pc
	if pc == nil {
		if tx.waiting {
			// waiting for a backend: the statement ends there, with 57014
			select {
			case tx.cancelWait <- struct{}{}:
			default:
			}
		}
		return cancelTarget{}, nil, false
	}
	pc.cancels.Add(1)
	return targetOf(pc.side.backend), pc.cancels.Done, true
}

// relayPooled handles the backend messages transaction mode treats apart:
// the injected context statement's replies, replies to injected Parse and
// Close messages, and ParameterStatus of the client's own settings. handled
// reports that the message was consumed.
func (s *session) relayPooled(t byte, n int) (handled, end bool, err error) {
	tx := s.tx
	switch t {
	case '2':
		if p, ok := s.queue.peek(); ok && p.kind == pendInject {
			tx.swallowing = true
			_, err := s.br.r.Discard(n)
			return true, false, err
		}
	case 'D':
		if tx.swallowing {
			_, err := s.br.r.Discard(n)
			return true, false, err
		}
	case 'C':
		if tx.swallowing {
			tx.swallowing = false
			s.queue.pop()
			_, err := s.br.r.Discard(n)
			return true, false, err
		}
		body, err := s.br.readBody(n)
		if err != nil {
			return true, false, err
		}
		tag := string(body[:max(len(body)-1, 0)])
		s.noteSessionState(tag)
		switch tag {
		case "COMMIT":
			tx.endStaged(true)
		case "ROLLBACK":
			// also ROLLBACK TO SAVEPOINT: its SETs since the savepoint are
			// undone, and those before are dropped too (a client's setting
			// may revert; nothing leaks)
			tx.endStaged(false)
		}
		p, ok := s.queue.peek()
		if !ok || !answers('C', p.kind) {
			end, err := s.lostTrack('C', p.kind)
			return true, end, err
		}
		return true, false, s.onCompletionBody('C', body, p)
	case 'E':
		if p, ok := s.queue.peek(); ok && (p.kind == pendInject || tx.swallowing) {
			return true, true, s.injectFailed(n)
		}
	case '1':
		if p, ok := s.queue.peek(); ok && p.kind == pendParse && p.injected {
			s.queue.pop()
			_, err := s.br.r.Discard(n)
			return true, false, err
		}
	case '3':
		p, ok := s.queue.peek()
		switch {
		case ok && p.kind == pendClose && p.injected:
			s.queue.pop()
			_, err := s.br.r.Discard(n)
			return true, false, err
		case ok && p.kind == pendParse && p.alias:
			s.queue.pop()
			s.track.resolveAll(p.changes, tenancy.Confirmed)
			if _, err := s.br.r.Discard(n); err != nil {
				return true, false, err
			}
			return true, false, writeHeader(s.cw, '1', 0)
		}
	case 'S':
		body, err := s.br.readBody(n)
		if err != nil {
			return true, false, err
		}
		name, rest, ok := cstring(body)
		value, _, ok2 := cstring(rest)
		ln := strings.ToLower(name)
		if want, mine := tx.wanted(ln); ok && ok2 && mine && value != want && value == tx.baseline[ln] {
			// the pooled backend's own value coming back at the end of a
			// transaction: the client's setting stays in force for it
			return true, false, nil
		}
		return true, false, writeMsg(s.cw, 'S', body)
	case 'Z':
		s.queue.hold() // settled by the backend loop (settle)
	}
	return false, false, nil
}

// injectFailed ends the session when the transaction context could not be
// set: nothing of the client's may run without it.
func (s *session) injectFailed(n int) error {
	body, err := s.br.readBody(n)
	if err != nil {
		return err
	}
	var er pgproto3.ErrorResponse
	msg := "unknown error"
	if er.Decode(body) == nil {
		msg = er.Message
	}
	s.logger().Warn("pool: setting the transaction context failed", "error", msg)
	s.backendFatal = true
	s.tx.bpc.lost = true
	ce := newClientError(pgerrcode.InternalError, "pool_context", "could not set the transaction's tenant context: %s", msg)
	s.fatalSent = true
	return encode(s.cw, ce.errorResponse("FATAL"))
}

// noteSessionState marks the held backend when a completed statement left
// state in its session that the policy should have refused (defence in
// depth, e.g. with a permissive checker): settings are reset at checkin,
// anything else closes the backend.
func (s *session) noteSessionState(tag string) {
	pc := s.tx.bpc
	switch {
	case tag == "SET" || tag == "RESET":
		// also SET LOCAL, which needs no reset: RESET ALL is harmless then
		pc.dirty = true
	case strings.HasPrefix(tag, "PREPARE"), strings.HasPrefix(tag, "DEALLOCATE"), strings.HasPrefix(tag, "LISTEN"),
		strings.HasPrefix(tag, "DISCARD"), strings.HasPrefix(tag, "CREATE"), strings.HasPrefix(tag, "DECLARE CURSOR"),
		strings.HasPrefix(tag, "LOAD"):
		// DECLARE CURSOR: a WITH HOLD cursor would outlive the transaction
		pc.lost = true
	}
}

// serverStmtName is the server-side name of a statement: the same for the
// same text and parameter types, so clients share a backend's statements.
func serverStmtName(parseRest []byte) string {
	sum := sha256.Sum256(parseRest)
	return serverStmtPrefix + hex.EncodeToString(sum[:12])
}

// parsePooled forwards a client's named Parse (body: name, query, types)
// under its server-side name, or answers it with a no-op when the backend
// holds that statement already.
func (s *session) parsePooled(name string, body []byte, changes []tenancy.Change) error {
	rest := body[len(name)+1:]
	srv := serverStmtName(rest)
	parse := append(append([]byte(srv), 0), rest...)
	s.tx.stmts[name] = clientStmt{srv: srv, parse: parse}
	if s.tx.pc.hasPrepared(srv) {
		s.queue.push(pending{kind: pendParse, changes: changes, alias: true})
		return writeMsg(s.bw, 'C', closeNoop)
	}
	return s.preparePooled(srv, parse, changes, false)
}

// preparePooled sends a Parse under srv, closing the backend's least
// recently used statement beyond maxPreparedPerBackend.
func (s *session) preparePooled(srv string, parse []byte, changes []tenancy.Change, injected bool) error {
	if evict := s.tx.pc.addPrepared(srv); evict != "" {
		s.queue.push(pending{kind: pendClose, injected: true})
		if err := writeMsg(s.bw, 'C', append(append([]byte{'S'}, evict...), 0)); err != nil {
			return err
		}
	}
	s.queue.push(pending{kind: pendParse, changes: changes, srv: srv, injected: injected})
	return writeMsg(s.bw, 'P', parse)
}

// parseUnnamed notes a client's Parse of the unnamed statement (forwarded
// as it is).
func (s *session) parseUnnamed(body []byte) {
	s.tx.unnamed = append(s.tx.unnamed[:0], body...)
	s.tx.unnamedHere = true
}

// pooledStatement returns the server-side name of a client's statement
// with its NUL (a slice of the Parse that prepares it), preparing it on the
// backend first when it lacks it: a named one under its server-side name,
// the unnamed one again when it was parsed on another backend (or before
// another client's transaction on this one). It returns nil when the name
// goes to the server as it is: the unnamed statement, or a name the client
// never prepared, which the server fails as PostgreSQL would (no client
// statement is ever prepared under its own name).
func (s *session) pooledStatement(name string) ([]byte, error) {
	if name == "" {
		if s.tx.unnamed != nil && !s.tx.unnamedHere {
			s.tx.unnamedHere = true
			s.queue.push(pending{kind: pendParse, injected: true})
			if err := writeMsg(s.bw, 'P', s.tx.unnamed); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	cs, ok := s.tx.stmts[name]
	if !ok {
		return nil, nil
	}
	if !s.tx.pc.hasPrepared(cs.srv) {
		if err := s.preparePooled(cs.srv, cs.parse, nil, true); err != nil {
			return nil, err
		}
	}
	return cs.parse[:len(cs.srv)+1], nil
}

// writeRenamed writes message t whose body is head, then name (with its
// NUL) and tail: a client's message with a statement renamed, written
// without building the new body.
func writeRenamed(w *connWriter, t byte, head, name, tail []byte) error {
	if err := writeHeader(w, t, len(head)+len(name)+len(tail)); err != nil {
		return err
	}
	if _, err := w.Write(head); err != nil {
		return err
	}
	if _, err := w.Write(name); err != nil {
		return err
	}
	_, err := w.Write(tail)
	return err
}

// describeOrClosePooled rewrites a Describe or Close of a named statement;
// a Close is answered by the no-op Close (the backend keeps the statement
// for other clients and the LRU closes it in time).
func (s *session) describeOrClosePooled(t byte, body []byte, name string) ([]byte, error) {
	if body[0] != 'S' {
		return body, nil
	}
	if name == "" {
		if t == 'C' {
			s.tx.unnamed, s.tx.unnamedHere = nil, false
			return body, nil
		}
		_, err := s.pooledStatement("")
		return body, err
	}
	if t == 'C' {
		delete(s.tx.stmts, name)
		return closeNoop, nil
	}
	srv, err := s.pooledStatement(name)
	if err != nil || srv == nil {
		return body, err
	}
	return append([]byte{'S'}, srv...), nil
}

// The pooled backend's prepared-statement list is used by the client loop
// (hasPrepared, addPrepared) and the backend loop (dropPrepared on a failed
// Parse): pmu guards it.

// dropFailedParse forgets the server-side name of a Parse the server
// refused (backend loop).
func (s *session) dropFailedParse(p pending) {
	if s.tx != nil && p.kind == pendParse && p.srv != "" {
		s.tx.bpc.dropPrepared(p.srv)
	}
}

// rebuildCtx builds the context Bind from the settings in force (smu held
// or not yet shared).
func (tx *txState) rebuildCtx() {
	names := append([]string(nil), tx.base...)
	values := append([]string(nil), tx.values...)
	for _, name := range slices.Sorted(maps.Keys(tx.settings)) {
		names = append(names, name)
		values = append(values, tx.settings[name])
	}
	tx.ctxBind = ctxBind(names, values)
}

// stageSets notes the session-level SETs of statement k that its command
// tag confirmed; they take effect for later transactions once their own
// transaction commits (endStaged).
func (tx *txState) stageSets(sets []tenancy.SessionSet, k int, tag string) {
	if tag != "SET" && tag != "RESET" {
		return
	}
	for _, set := range sets {
		if set.Stmt == k {
			tx.staged = append(tx.staged, set)
		}
	}
}

// endStaged applies the staged SETs when their transaction committed and
// drops them when it rolled back, as PostgreSQL does with session-level SETs.
func (tx *txState) endStaged(commit bool) {
	if len(tx.staged) == 0 {
		return
	}
	if commit {
		tx.smu.Lock()
		for _, set := range tx.staged {
			if set.All {
				tx.settings = maps.Clone(tx.startup) // back to the connection's own values
				continue
			}
			if v, ok := tx.startup[set.Name]; set.Reset && ok {
				tx.settings[set.Name] = v // RESET returns to the connection's own value
			} else if set.Reset {
				delete(tx.settings, set.Name)
			} else {
				tx.settings[set.Name] = set.Value
			}
		}
		tx.rebuildCtx()
		tx.smu.Unlock()
	}
	tx.staged = tx.staged[:0]
}

// wanted is the value the client holds for a setting: a SET of its open
// transaction, or one in force (backend loop).
func (tx *txState) wanted(name string) (string, bool) {
	for i := len(tx.staged) - 1; i >= 0; i-- {
		if set := tx.staged[i]; set.Name == name || set.All {
			if set.Reset {
				v, ok := tx.startup[name]
				return v, ok
			}
			return set.Value, true
		}
	}
	tx.smu.Lock()
	defer tx.smu.Unlock()
	v, ok := tx.settings[name]
	return v, ok
}
