//go:build !linux

package proxy

import "syscall"

// rawRead and rawWrite fall back to the ordinary system calls where the
// raw ones are not wired up (see rawio_linux.go).
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errnoOf(err)
}

func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	if err != nil {
		return syscall.EIO
	}
	return 0
}

// enableInq reports that TCP_INQ is not wired up here: serve then reads
// until the socket is empty.
func enableInq(uintptr) bool { return false }

// inqRead is never called here (enableInq says no); it reads as rawRead,
// reporting that something may be left.
func inqRead(fd uintptr, p []byte) (int, bool, syscall.Errno) {
	n, e := rawRead(fd, p)
	return n, true, e
}
