//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// epollParker is the watcher of parked sessions' backend sockets: one epoll
// instance and one goroutine per process. Each socket is armed one-shot, so
// it reports once per park; the event carries the session's id, never a
// pointer (the kernel's copy is invisible to the garbage collector).
type epollParker struct {
	epfd int

	mu     sync.Mutex
	byID   map[uint32]*session
	nextID uint32
}

// errSessionEnding: a session that began to close is not parked.
var errSessionEnding = errors.New("session ending")

func newParker() parker {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		slog.Warn("idle sessions will not park: epoll unavailable", "error", err)
		return nil
	}
	p := &epollParker{epfd: epfd, byID: map[uint32]*session{}}
	go p.loop()
	return p
}

func (p *epollParker) add(s *session, fd int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.ending.Load() {
		return errSessionEnding
	}
	op := unix.EPOLL_CTL_MOD
	if s.parkID == 0 {
		for {
			p.nextID++
			if _, taken := p.byID[p.nextID]; p.nextID != 0 && !taken {
				break
			}
		}
		s.parkID = p.nextID
		op = unix.EPOLL_CTL_ADD
	}
	p.byID[s.parkID] = s
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(s.parkID)}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		delete(p.byID, s.parkID)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

func (p *epollParker) remove(s *session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.parkID == 0 {
		return
	}
	delete(p.byID, s.parkID)
	_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.backendFD, nil)
	s.parkID = 0
}

func (p *epollParker) loop() {
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			slog.Error("idle-session watcher stopped", "error", err)
			return
		}
		for i := range n {
			p.mu.Lock()
			s := p.byID[uint32(events[i].Fd)]
			p.mu.Unlock()
			if s != nil {
				s.unpark()
			}
		}
	}
}
