package proxy

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// Parking idle clients. An idle session's client goroutine blocks reading
// the client's next message with a stack of its own (4 KiB: most of what
// an idle client costs). After two sweeps that found the session idle
// (parkSweep apart), the sweeper asks the client goroutine to park: a read
// deadline in the past wakes it, and at a message boundary with nothing
// buffered it hands over to awaitClient, a goroutine with a small stack
// that waits for the client socket to become readable (peeking, never
// reading) and then runs the client loop again. Anything else the read
// deadline finds (a message under way, the session no longer idle) clears
// it and the read goes on. Session mode on plain sockets only: a TLS client
// has buffered state, and a pooled session's goroutine is parked by
// transaction mode itself.

// errClientPark ends the client loop of a session whose client goroutine
// parks (it is not the session's end).
var errClientPark = errors.New("client goroutine parked while idle")

// requestClientPark asks the client goroutine of a session idle since the
// last sweep to park (sweeper only).
func (s *session) requestClientPark() {
	if s.tx != nil || s.cr == nil || s.cr.r.raw == nil || s.clientParked.Load() || s.clientParkReq.Load() {
		return
	}
	idle := s.idle.Load()
	b := s.batches.Load()
	seen, wasIdle := s.clientSweepSeen, s.clientSweepIdle
	s.clientSweepSeen, s.clientSweepIdle = b, idle
	if !idle || !wasIdle || b != seen {
		return
	}
	s.clientParkReq.Store(true)
	_ = s.client.SetReadDeadline(pastDeadline)
}

// clientDeadline is the client reader's answer to a read deadline: false
// surfaces it (the park request found the session idle at a message
// boundary), true clears it and reads on.
func (s *session) clientDeadline(buffered int) (retry bool) {
	if s.clientParkReq.Load() && buffered == 0 && s.cr.atBoundary && s.idle.Load() && s.queue.empty() {
		return false
	}
	s.clientParkReq.Store(false)
	_ = s.client.SetReadDeadline(time.Time{})
	return true
}

// isClientPark reports whether err is the park request surfacing.
func (s *session) isClientPark(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && s.clientParkReq.Load()
}

// parkClient hands the wait for the client's next message to awaitClient,
// which runs the session on (run) once the client socket is readable; the
// caller's goroutine then ends.
func (s *session) parkClient(run func()) {
	s.clientParkReq.Store(false)
	_ = s.client.SetReadDeadline(time.Time{})
	s.cr.r.release() // nothing is buffered: a parked client pins no buffer
	s.clientParked.Store(true)
	go s.awaitClient(run)
}

// awaitClient waits, on a goroutine of its own whose stack stays small,
// until the client socket is readable (or closed), then runs the session.
func (s *session) awaitClient(run func()) {
	var b [1]byte
	_ = s.cr.r.raw.Read(func(fd uintptr) bool {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return errno != syscall.EAGAIN // data, EOF or an error: the client loop reads it
	})
	s.clientParked.Store(false)
	run()
}

// ParkedClients is the number of sessions whose client goroutine is
// parked: idle, with only awaitClient's small goroutine waiting for the
// client.
func (s *Server) ParkedClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ss := range s.sessions {
		if ss.clientParked.Load() {
			n++
		}
	}
	return n
}
