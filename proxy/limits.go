package proxy

import (
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
)

// Failed-authentication backoff, as PostgreSQL's auth_delay: after
// authFailFree failures from one address, each further failure from it is
// answered only after a delay that doubles with every failure (capped at
// authMaxBackoff). Valid tokens are never delayed, so one misbehaving client
// behind a shared address (a sidecar's clients are all 127.0.0.1) does not
// lock out the others; a success clears the address.
const (
	authFailFree   = 5
	authMinBackoff = 250 * time.Millisecond
	authMaxBackoff = 30 * time.Second
	authForgetIdle = 10 * time.Minute
	authMaxTracked = 100000
)

// authBackoff tracks failed authentications per client address.
type authBackoff struct {
	mu    sync.Mutex
	addrs map[string]*authFailures
	now   func() time.Time
}

type authFailures struct {
	count int
	last  time.Time
}

func newAuthBackoff() *authBackoff {
	return &authBackoff{addrs: map[string]*authFailures{}, now: time.Now}
}

// failed records a failed authentication from addr and returns how long to
// wait before answering it.
func (b *authBackoff) failed(addr string) time.Duration {
	if addr == "" {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if len(b.addrs) >= authMaxTracked {
		b.forgetIdle(now)
	}
	f, ok := b.addrs[addr]
	if !ok {
		if len(b.addrs) >= authMaxTracked {
			return authMaxBackoff // still full of recent failures: do not grow without bound
		}
		f = &authFailures{}
		b.addrs[addr] = f
	}
	f.count++
	f.last = now
	if f.count <= authFailFree {
		return 0
	}
	return min(authMinBackoff<<min(f.count-authFailFree-1, 16), authMaxBackoff)
}

// succeeded clears addr's failures.
func (b *authBackoff) succeeded(addr string) {
	b.mu.Lock()
	delete(b.addrs, addr)
	b.mu.Unlock()
}

func (b *authBackoff) forgetIdle(now time.Time) {
	for addr, f := range b.addrs {
		if now.Sub(f.last) > authForgetIdle {
			delete(b.addrs, addr)
		}
	}
}

// startIdleTimer arms the idle-session timeout after the session became
// idle (ReadyForQuery 'I' with nothing in flight).
func (s *session) startIdleTimer() {
	d := s.rt.limits.IdleTimeout
	if d <= 0 {
		return
	}
	s.idleSince.Store(time.Now().UnixNano())
	if s.idleTimer == nil {
		s.idleTimer = time.AfterFunc(d, s.idleExpired)
		return
	}
	s.idleTimer.Reset(d)
}

// idleExpired ends the session if it has stayed idle for the whole timeout.
func (s *session) idleExpired() {
	d := s.rt.limits.IdleTimeout
	s.wmu.Lock()
	stillIdle := s.idle.Load() && time.Since(time.Unix(0, s.idleSince.Load())) >= d
	s.wmu.Unlock()
	if !stillIdle {
		return
	}
	s.logger().Info("closing idle session", "idle_timeout", d.String())
	s.fatal(newClientError(pgerrcode.IdleSessionTimeout, "idle_timeout", "terminating connection due to idle-session timeout"))
	s.close()
}

// sleepUntilDeadline waits d, but never past most of the startup timeout, so
// the delayed rejection is still delivered.
func sleepUntilDeadline(d, startupTimeout time.Duration) {
	time.Sleep(min(d, startupTimeout*3/4))
}
