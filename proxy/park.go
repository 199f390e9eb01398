package proxy

import (
	"errors"
	"os"
	"sync"
	"time"
)

// Parking idle sessions. A session relays the backend's replies to a batch
// on its client goroutine (relaySession) when the batch ends with a Sync or
// a Query; between batches nobody reads the backend socket. Something the
// backend sends unasked (notifications, parameter changes, a FATAL, EOF)
// is watched for by one watcher per process (epoll, package-level): a
// session's backend socket is armed in it while nobody reads it, and when
// it becomes readable the watcher starts a backend goroutine, which relays
// as before. A batch the server answers only with more client input (COPY
// FROM STDIN, messages without Sync, a batch larger than a buffer) is
// relayed by a backend goroutine too, while the client goroutine goes on
// reading the client.
//
// Who arms and parks: a sweeper per Server, every parkSweep, arms the
// watcher for each session nobody reads (bFree), and asks the backend
// goroutine of each session that was idle at the last sweep with no batch
// since (so idle for at least parkSweep) to park, by setting parkReq and a
// read deadline in the past on the backend socket. The backend goroutine
// parks only at a message boundary with nothing buffered while the session
// is still idle; otherwise it clears the request and goes on relaying. A
// session that ran LISTEN arms the watcher at the end of every batch, so a
// notification reaches its client at once; any other session may hear of
// an unasked message up to two sweeps late, or with its next batch.

// parkSweep is how often idle sessions are looked for, and so the least time
// a session stays idle before it parks.
const parkSweep = 250 * time.Millisecond

// Backend goroutine states (session.bstate).
const (
	bRunning int32 = iota // a backend goroutine relays the backend's messages
	bParked               // none: the watcher holds the backend socket
	bDone                 // the backend side has ended
	bFree                 // none, and the watcher is not armed (sweepIdle arms it)
	bInline               // the client goroutine relays a batch's replies (relaySession)
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
	if s.bstate.Load() == bFree {
		s.parkFree()
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
		s.logger().Debug("idle session not parked", "error", err)
		return false
	}
	return true
}

// parkFree arms the watcher for a session whose backend socket nobody
// reads (bFree: nothing is buffered, see relaySession). The client
// goroutine may take the socket back at any moment (bParked to bInline):
// the watcher's event then finds the session not parked and is ignored.
func (s *session) parkFree() {
	if !s.bstate.CompareAndSwap(bFree, bParked) {
		return
	}
	if err := theParker.add(s, s.backendFD); err != nil {
		s.logger().Debug("idle session not parked", "error", err)
		s.freeBackend(bParked)
	}
}

// freeBackend hands the backend socket from state from to nobody (bFree).
// A close that ran meanwhile found the socket taken and sent no report for
// the backend side (close tries bParked and bFree only), so when the
// session is ending the report is sent here: close sets ending before it
// tries, so one of the two sees the other.
func (s *session) freeBackend(from int32) {
	if !s.bstate.CompareAndSwap(from, bFree) {
		return
	}
	if s.ending.Load() && s.bstate.CompareAndSwap(bFree, bDone) {
		s.backendDone <- nil
	}
}

// goBackend makes sure a backend goroutine relays the backend's messages
// (client goroutine, session mode): the server answers what was sent only
// after more client input, or the client goroutine waits for replies it
// cannot relay itself. Taking a parked session back while the watcher
// reports it starts one goroutine either way (the CAS decides).
func (s *session) goBackend() {
	for {
		st := s.bstate.Load()
		if st != bFree && st != bParked && st != bInline {
			return // running already, or ended
		}
		if s.bstate.CompareAndSwap(st, bRunning) {
			go s.runBackend()
			return
		}
	}
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
