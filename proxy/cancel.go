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

// cancelTarget is where a client's cancel goes: its own backend's real key.
type cancelTarget struct {
	secret  [4]byte
	network string
	address string
	pid     uint32
	key     []byte
}

// cancelRegistry maps the keys pgtenant issued to the real backend keys, so a
// CancelRequest reaches exactly the right backend of the right region.
type cancelRegistry struct {
	mu   sync.Mutex
	keys map[uint32]cancelTarget
}

func newCancelRegistry() *cancelRegistry {
	return &cancelRegistry{keys: map[uint32]cancelTarget{}}
}

// issue registers the backend behind a new client-facing key.
func (c *cancelRegistry) issue(bc *backendConn) cancelKey {
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
		c.keys[pid] = cancelTarget{secret: k.secret, network: bc.network, address: bc.address, pid: bc.pid, key: bc.secretKey}
		return k
	}
}

// revoke forgets a key when its session ends.
func (c *cancelRegistry) revoke(k cancelKey) {
	c.mu.Lock()
	delete(c.keys, k.pid)
	c.mu.Unlock()
}

// lookup returns the target of a valid key; an unknown pid or a wrong secret
// finds nothing (PostgreSQL silently ignores such requests too).
func (c *cancelRegistry) lookup(pid uint32, secret []byte) (cancelTarget, bool) {
	c.mu.Lock()
	t, ok := c.keys[pid]
	c.mu.Unlock()
	if !ok || len(secret) != len(t.secret) || subtle.ConstantTimeCompare(secret, t.secret[:]) != 1 {
		return cancelTarget{}, false
	}
	return t, true
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
	t, ok := s.cancels.lookup(req.ProcessID, req.SecretKey)
	if !ok {
		s.log.Debug("cancel request with unknown key ignored")
		return
	}
	if err := t.send(context.Background()); err != nil {
		s.log.Warn("cancel request not delivered", "error", err)
	}
}
