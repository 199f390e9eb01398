//go:build linux

package proxy

import (
	"syscall"
	"unsafe"
)

// rawRead and rawWrite are read(2) and send(2) on a non-blocking socket
// without the runtime's entersyscall/exitsyscall: they never block, so the
// scheduler need not hand the P off, and a read does not wake a sleeping
// sysmon (with the blocking-capable syscall.Read, every read after an idle
// moment woke sysmon, which then polled every 20 µs: a futex wake, context
// switches and nanosleeps per statement). send with MSG_NOSIGNAL reports a
// closed peer as EPIPE without raising SIGPIPE.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
