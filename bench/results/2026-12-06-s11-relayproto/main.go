// Command relayproto is a throw-away PostgreSQL relay with no logic (it
// copies bytes between a client and 127.0.0.1:5432), in the designs issue 13
// weighs, to measure what the relay architecture alone costs against
// PgBouncer on this machine: -mode goroutine (two goroutines per
// connection, blocking reads and writes through Go's netpoller) and -mode
// loop (one thread, one epoll instance, level-triggered, one read and one
// write per readable socket: PgBouncer's shape), with -raw making its
// system calls without the runtime's entersyscall/exitsyscall. Not part of
// pgtenant; see ../2026-12-06-s11-README.md.
package main

import (
	"flag"
	"log"
	"net"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	mode := flag.String("mode", "loop", "loop | goroutine")
	listen := flag.Int("port", 6440, "")
	flag.Parse()
	if *mode == "goroutine" {
		goroutines(*listen)
		return
	}
	loop(*listen)
}

func goroutines(port int) {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			b, err := net.DialTCP("tcp", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432})
			if err != nil {
				c.Close()
				return
			}
			pipe := func(dst, src *net.TCPConn) {
				buf := make([]byte, 16<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						if _, err := dst.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				dst.Close()
				src.Close()
			}
			go pipe(b, c)
			pipe(c, b)
		}()
	}
}

func loop(port int) {
	runtime.LockOSThread()
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	check(err)
	check(unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	check(unix.Bind(lfd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}))
	check(unix.Listen(lfd, 1024))
	ep, err := unix.EpollCreate1(0)
	check(err)
	check(unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}))
	peer := map[int]int{}
	buf := make([]byte, 16<<10)
	events := make([]unix.EpollEvent, 128)
	closeBoth := func(fd int) {
		p := peer[fd]
		unix.Close(fd)
		unix.Close(p)
		delete(peer, fd)
		delete(peer, p)
	}
	for {
		var n int
		if *raw {
			r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 10, 0, 0)
			if e != 0 {
				continue
			}
			n = int(r)
		} else {
			var err error
			n, err = unix.EpollWait(ep, events, -1)
			if err == unix.EINTR {
				continue
			}
			check(err)
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == lfd {
				cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK)
				if err != nil {
					continue
				}
				bfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
				check(err)
				if err := unix.Connect(bfd, &unix.SockaddrInet4{Port: 5432, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
					unix.Close(cfd)
					unix.Close(bfd)
					continue
				}
				unix.SetNonblock(bfd, true)
				for _, f := range []int{cfd, bfd} {
					unix.SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
				}
				peer[cfd], peer[bfd] = bfd, cfd
				check(unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(cfd)}))
				check(unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, bfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(bfd)}))
				continue
			}
			p, ok := peer[fd]
			if !ok {
				continue
			}
			m, err := read(fd, buf)
			if err == unix.EAGAIN {
				continue
			}
			if m <= 0 {
				closeBoth(fd)
				continue
			}
			out := buf[:m]
			for len(out) > 0 {
				k, err := write(p, out)
				if err == unix.EAGAIN {
					continue
				}
				if err != nil {
					break
				}
				out = out[k:]
			}
		}
	}
}

var raw = flag.Bool("raw", false, "raw syscalls")

// read and write are unix.Read and unix.Write, or with -raw the same system
// calls without the runtime's entersyscall/exitsyscall.
func read(fd int, p []byte) (int, error) {
	if !*raw {
		return unix.Read(fd, p)
	}
	return rawIO(unix.SYS_READ, fd, p)
}

func write(fd int, p []byte) (int, error) {
	if !*raw {
		return unix.Write(fd, p)
	}
	return rawIO(unix.SYS_WRITE, fd, p)
}

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
