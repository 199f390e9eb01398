package cluster

import (
	"fmt"
	"net"
	"sync"
)

// ports handed to clusters of this process that are still alive; a port
// the kernel hands out twice to concurrent Starts is skipped.
var (
	portsMu  sync.Mutex
	reserved = map[int]bool{}
)

// nextPort picks the port for the next start attempt (a variable so tests
// can hand out a taken port).
var nextPort = pickPort

// pickPort returns a TCP port on 127.0.0.1 that was free a moment ago and
// is not used by another cluster of this process, and reserves it. Another
// process can still take it before the server binds; Start retries then.
func pickPort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if reservePort(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free port: no unreserved port after 20 tries")
}

// reservePort marks port as used by this process; false if it already was.
func reservePort(port int) bool {
	portsMu.Lock()
	defer portsMu.Unlock()
	if reserved[port] {
		return false
	}
	reserved[port] = true
	return true
}

// releasePort forgets a reservation.
func releasePort(port int) {
	portsMu.Lock()
	defer portsMu.Unlock()
	delete(reserved, port)
}
