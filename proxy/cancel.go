package proxy

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// cancelKey is the (pid, secret) pair pgtenant hands a client in BackendKeyData.
type cancelKey struct {
	pid    uint32
	secret [4]byte
}

// cancelTarget is a real backend key: where a cancel goes.
type cancelTarget struct {
	network string
	address string
	pid     uint32
	key     []byte
}

// targetOf returns the cancel target of a backend connection.
func targetOf(bc *backendConn) cancelTarget {
	return cancelTarget{network: bc.network, address: bc.address, pid: bc.pid, key: bc.secretKey}
}

// cancelEntry is an issued key: its secret and the session it cancels.
type cancelEntry struct {
	secret [4]byte
	sess   *session
}

// cancelRegistry maps the keys pgtenant issued to their sessions, so a
// CancelRequest reaches exactly the backend the session runs on now (in
// transaction mode, the one it holds, if any) in the right region.
type cancelRegistry struct {
	mu   sync.Mutex
	keys map[uint32]cancelEntry
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{keys: map[uint32]cancelEntry{}}
}

// issue registers a session behind a new client-facing key.
func (c *cancelRegistry) issue(ss *session) cancelKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if _, taken := c.keys[pid]; pid == 0 || taken {
			continue
		}
		k := cancelKey{pid: pid}
		copy(k.secret[:], b[4:])
		c.keys[pid] = cancelEntry{secret: k.secret, sess: ss}
		return k
	}
}

// revoke forgets a key when its session ends.
func (c *cancelRegistry) revoke(k cancelKey) {
	c.mu.Lock()
	delete(c.keys, k.pid)
	c.mu.Unlock()
}

// lookup returns the session of a valid key; an unknown pid or a wrong
// secret finds nothing (PostgreSQL silently ignores such requests too).
func (c *cancelRegistry) lookup(pid uint32, secret []byte) (*session, bool) {
	c.mu.Lock()
	e, ok := c.keys[pid]
	c.mu.Unlock()
	if !ok || len(secret) != len(e.secret) || subtle.ConstantTimeCompare(secret, e.secret[:]) != 1 {
		return nil, false
	}
	return e.sess, true
}

// cancelTarget returns where a cancel of the session's running statement
// goes now, and a function to call once the cancel has been delivered (or
// failed). In transaction mode a session that holds no backend runs
// nothing: ok is false. While a cancel is in flight the backend is not
// handed to another client (txmode.go), so it can never cancel a statement
// of someone else (the PgBouncer #717 class of bug).
func (s *session) cancelTarget() (t cancelTarget, done func(), ok bool) {
	if s.tx == nil {
		return targetOf(s.backend), func() {}, true
	}
	return s.tx.cancelTarget()
}

// sendCancel cancels the session's running statement, if any.
func (s *session) sendCancel(ctx context.Context) error {
	t, done, ok := s.cancelTarget()
	if !ok {
		return nil
	}
	defer done()
	if s.tx != nil {
		s.awaitContextStatement(ctx)
	}
	return t.send(ctx)
}

// send delivers a CancelRequest with the real backend key.
func (t cancelTarget) send(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, t.network, t.address)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := &pgproto3.CancelRequest{ProcessID: t.pid, SecretKey: t.key}
	b, err := req.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := conn.Write(b); err != nil {
		return err
	}
	// The server closes the connection once it has read the request.
	var one [1]byte
	_, _ = conn.Read(one[:])
	return nil
}

// handleCancel serves a CancelRequest body: a valid key cancels the query
// running on its backend; anything else is ignored, as PostgreSQL does.
func (s *Server) handleCancel(body []byte) {
	var req pgproto3.CancelRequest
	if err := req.Decode(body); err != nil {
		return
	}
	ss, ok := s.cancels.lookup(req.ProcessID, req.SecretKey)
	if !ok {
		s.log.Debug("cancel request with unknown key ignored")
		return
	}
	if err := ss.sendCancel(context.Background()); err != nil {
		s.log.Warn("cancel request not delivered", "error", err)
	}
}

// contextWaitLimit bounds how long a cancel waits for a transaction's
// context statement to finish; it takes well under a millisecond.
const contextWaitLimit = time.Second

// awaitContextStatement holds a cancel back while the transaction's context
// statement (transaction mode) runs on the held backend. The server cancels
// whatever runs when the request arrives: cancelling the context statement
// would fail the proxy's own statement instead of the client's, which ends
// the session. After it, the cancel reaches the client's statement, or
// nothing when that has already ended, as a cancel of a direct connection
// does. The held backend cannot go to another client meanwhile (the
// cancel is counted in flight).
func (s *session) awaitContextStatement(ctx context.Context) {
	deadline := time.Now().Add(contextWaitLimit)
	for s.queue.injectInFlight() && time.Now().Before(deadline) && ctx.Err() == nil && !s.ending.Load() {
		time.Sleep(50 * time.Microsecond)
	}
}
