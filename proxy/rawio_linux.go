//go:build linux

package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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

// enableInq sets TCP_INQ on fd; false when the socket is not TCP (a Unix
// socket) or the kernel predates it (4.18).
func enableInq(fd uintptr) bool {
	return unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_INQ, 1) == nil
}

// inqRead is rawRead with recvmsg(2) on a TCP socket that has TCP_INQ set:
// it also reports whether the read left anything in the socket, bytes or a
// FIN (the kernel counts a pending end of stream as a byte for this), and
// true when the kernel did not say. A read that left nothing needs no
// second read to be sure: whatever arrives later wakes the poller
// (connReader.serve).
func inqRead(fd uintptr, p []byte) (n int, left bool, errno syscall.Errno) {
	var (
		iov syscall.Iovec
		msg syscall.Msghdr
		ctl [32]byte // room for one TCP_CM_INQ control message
	)
	iov.Base = &p[0]
	iov.SetLen(len(p))
	msg.Iov = &iov
	msg.Iovlen = 1
	msg.Control = &ctl[0]
	msg.SetControllen(len(ctl))
	m, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, true, e
	}
	left = true
	if msg.Controllen >= uint64(unix.CmsgSpace(4)) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		if h.Level == unix.SOL_TCP && h.Type == unix.TCP_CM_INQ {
			left = *(*int32)(unsafe.Pointer(&ctl[unix.CmsgLen(0)])) != 0
		}
	}
	return int(m), left, 0
}
