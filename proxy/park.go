package proxy

import (
	"errors"
	"os"
	"sync"
	"time"
)

// Parking idle sessions. A session relays on two goroutines, one per
// direction. An idle session (ReadyForQuery 'I', nothing in flight) needs
// its client goroutine, waiting for the next query, but its backend
// goroutine only waits for what a backend sends unasked (notifications,
// parameter changes, a FATAL, EOF). After an idle spell the backend
// goroutine parks the session: it hands the backend socket to one watcher
// per process (epoll, package-level) and ends, so an idle session costs one
// goroutine stack instead of two. When the backend socket becomes readable
// the watcher starts a new backend goroutine, which relays as before; a
// busy session never parks and pays nothing per statement for this.
//
// Who parks: a sweeper per Server, every parkSweep, asks the backend
// goroutine of each session that was idle at the last sweep with no batch
// since (so idle for at least parkSweep) to park, by setting parkReq and a
// read deadline in the past on the backend socket. The backend goroutine
// parks only at a message boundary with nothing buffered while the session
// is still idle; otherwise it clears the request and goes on relaying.

// parkSweep is how often idle sessions are looked for, and so the least time
// a session stays idle before it parks.
const parkSweep = 250 * time.Millisecond

// Backend goroutine states (session.bstate).
const (
	bRunning int32 = iota // a goroutine relays the backend's messages
	bParked               // none: the watcher holds the backend socket
	bDone                 // the backend side has ended
)

// errParked tells the backend goroutine that it handed its socket to the
// watcher and ends without ending the session.
var errParked = errors.New("backend parked while idle")

// pastDeadline is a read deadline that has always passed.
var pastDeadline = time.Unix(1, 0)

// parker watches the backend sockets of parked sessions.
type parker interface {
	// add arms the watch of s's backend socket (fd); when it becomes
	// readable (or hangs up) the parker calls s.unpark once. It refuses a
	// session that is ending (close removes it under the same lock, before
	// the socket closes, so a closed descriptor is never armed).
	add(s *session, fd int) error
	// remove forgets s (its socket is about to close).
	remove(s *session)
}

var (
	parkerOnce sync.Once
	theParker  parker // nil where parking is unavailable
)

// startParker starts the process's watcher once.
func startParker() { parkerOnce.Do(func() { theParker = newParker() }) }

// sweepIdle asks the backend goroutine of every session that stayed idle
// since the last sweep to park.
func (s *Server) sweepIdle(stop <-chan struct{}) {
	t := time.NewTicker(parkSweep)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		sessions := make([]*session, 0, len(s.sessions))
		for ss := range s.sessions {
			sessions = append(sessions, ss)
		}
		s.mu.Unlock()
		for _, ss := range sessions {
			ss.requestPark()
		}
	}
}

// requestPark asks the backend goroutine to park when the session has been
// idle since the last sweep (called by the sweeper only).
func (s *session) requestPark() {
	if theParker == nil || s.tx != nil || s.backendFD < 0 {
		// a pooled session holds no backend while idle: nothing to park
		return
	}
	b := s.batches.Load()
	idle := s.idle.Load()
	seen, wasIdle := s.sweepSeen, s.sweepIdle
	s.sweepSeen, s.sweepIdle = b, idle
	if !idle || !wasIdle || b != seen || s.bstate.Load() != bRunning || s.parkReq.Load() {
		return
	}
	s.parkReq.Store(true)
	_ = s.backend.conn.SetReadDeadline(pastDeadline)
}

// backendDeadline is the backend reader's answer to a read deadline: false
// surfaces it (a park request at a message boundary of an idle session, or
// not a park request at all), true clears the deadline and reads on.
func (s *session) backendDeadline(buffered int) (retry bool) {
	if !s.parkReq.Load() {
		return false
	}
	if buffered == 0 && s.br.atBoundary && s.idle.Load() && s.queue.empty() {
		return false
	}
	s.parkReq.Store(false)
	_ = s.backend.conn.SetReadDeadline(time.Time{})
	return true
}

// parkNow hands the backend socket to the watcher (backend goroutine, at a
// message boundary with nothing buffered). False: the session is ending or
// the watcher refused, and the goroutine reads on.
func (s *session) parkNow() bool {
	s.parkReq.Store(false)
	_ = s.backend.conn.SetReadDeadline(time.Time{})
	s.br.r.release() // nothing is buffered: a parked session pins no buffer
	if !s.bstate.CompareAndSwap(bRunning, bParked) {
		return false
	}
	if err := theParker.add(s, s.backendFD); err != nil {
		if !s.bstate.CompareAndSwap(bParked, bRunning) {
			return true // close took the parked session and reported for us: just end
		}
		s.log.Debug("idle session not parked", "error", err)
		return false
	}
	return true
}

// unpark starts a backend goroutine for a parked session (the watcher saw
// its backend socket readable). Close may have ended it first.
func (s *session) unpark() {
	if s.bstate.CompareAndSwap(bParked, bRunning) {
		go s.runBackend()
	}
}

// runBackend is the backend goroutine: it relays until the session ends
// (then it closes the session and reports to the client goroutine) or it
// parks.
func (s *session) runBackend() {
	err := s.backendLoop()
	if errors.Is(err, errParked) {
		return
	}
	s.bstate.Store(bDone)
	// Nothing relays backend replies any more: end the session, which
	// also wakes the client loop's read (a client waiting for a reply
	// would otherwise wait forever for a backend that is gone).
	s.close()
	s.backendDone <- err
}

// isParkDeadline reports whether err is the read deadline of a park request.
func (s *session) isParkDeadline(err error) bool {
	return s.parkReq.Load() && errors.Is(err, os.ErrDeadlineExceeded)
}
