//go:build linux

package proxy

import (
	"net"
	"syscall"
)

// idleConnAlive reports whether an idle pooled backend connection is still
// usable: nothing to read (no EOF, no FATAL the server sent when it ended
// the session, e.g. idle_session_timeout or a restart). One non-blocking
// peek; a connection without a raw socket (TLS) is assumed alive.
func idleConnAlive(conn net.Conn) bool {
	raw := rawConnOf(conn)
	if raw == nil {
		return true
	}
	alive := true
	var b [1]byte
	if err := raw.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
	}); err != nil {
		return false
	}
	return alive
}
