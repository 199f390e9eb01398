package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// echoPeer reads len(batch) bytes from conn after delay, checks they are
// batch, and answers reply; the result is on the returned channel.
func echoPeer(conn net.Conn, delay time.Duration, batch, reply []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		got := make([]byte, len(batch))
		if _, err := io.ReadFull(conn, got); err != nil {
			done <- err
			return
		}
		if !bytes.Equal(got, batch) {
			done <- errors.New("the peer received other bytes than the batch")
			return
		}
		_, err := conn.Write(reply)
		done <- err
	}()
	return done
}

// TestSendFirst checks that a read with sendFirst set sends the writer's
// batch before it waits, whole, and returns the reply: for a batch that
// fits the socket buffers (sent from the read's callback) and for one that
// does not while the peer has not started reading (small socket buffers:
// the callback sends what fits, and readRaw the rest the ordinary way).
func TestSendFirst(t *testing.T) {
	for _, small := range []bool{false, true} {
		ours, peer := tcpPair(t)
		size, delay := 100, time.Duration(0)
		if small {
			ours, peer = smallBufferPair(t)
			size, delay = bufSize-1, 20*time.Millisecond
		}
		r, w := newConnReader(ours), newConnWriter(ours)
		batch := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		reply := []byte("the reply")
		done := echoPeer(peer, delay, batch, reply)
		if _, err := w.Write(batch); err != nil {
			t.Fatal(err)
		}
		r.sendFirst = w
		// a batch left unsent fails the read instead of hanging the test
		if err := ours.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		got, err := r.Peek(len(reply))
		if err != nil {
			t.Fatalf("batch of %d bytes: %v", size, err)
		}
		if !bytes.Equal(got, reply) {
			t.Fatalf("batch of %d bytes: read %q, want %q", size, got, reply)
		}
		if err := <-done; err != nil {
			t.Fatalf("batch of %d bytes: %v", size, err)
		}
		if r.sendFirst != nil || w.buffered() != 0 {
			t.Errorf("batch of %d bytes: the read kept the writer (%v) or bytes are still buffered (%d)",
				size, r.sendFirst != nil, w.buffered())
		}
	}
}

// TestSendFirstBeforeADeadline checks that a batch set to be sent by a read
// is sent even when the read fails before its callback runs (a deadline
// already passed): nothing must wait for the replies of an unsent batch.
func TestSendFirstBeforeADeadline(t *testing.T) {
	ours, peer := tcpPair(t)
	r, w := newConnReader(ours), newConnWriter(ours)
	batch := []byte("a batch")
	if _, err := w.Write(batch); err != nil {
		t.Fatal(err)
	}
	done := echoPeer(peer, 0, batch, []byte("x"))
	if err := ours.SetReadDeadline(pastDeadline); err != nil {
		t.Fatal(err)
	}
	r.sendFirst = w
	if _, err := r.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want the deadline's", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the batch was not sent")
	}
	if r.sendFirst != nil || w.buffered() != 0 {
		t.Error("the batch stayed with the reader")
	}
}

// TestSendFirstToAClosedPeer checks that a batch the read cannot send (the
// peer is gone) does not fail the read itself: it reads on, so what the
// peer said before it went still arrives (then the reset it answered the
// sends with, or the end of the stream).
func TestSendFirstToAClosedPeer(t *testing.T) {
	ours, peer := tcpPair(t)
	r, w := newConnReader(ours), newConnWriter(ours)
	if _, err := peer.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	time.Sleep(10 * time.Millisecond) // the FIN is in
	// the first send succeeds into the socket buffer, the peer's RST makes a
	// later one fail: send until it does, then read
	for range 100 {
		if _, err := w.Write(make([]byte, 1024)); err != nil {
			break
		}
		if err := w.Flush(); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := w.Write([]byte("unsendable")); err != nil {
		t.Fatal(err)
	}
	r.sendFirst = w
	got, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "last words" {
		t.Errorf("read %q, want the peer's last words", got)
	}
}

// smallBufferPair is a loopback TCP connection whose first end sends, and
// whose second receives, through the smallest socket buffers the kernel
// allows, set before the connection opens so the window stays small.
func smallBufferPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	small := func(opt int) func(network, address string, c syscall.RawConn) error {
		return func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, 1024)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := (&net.ListenConfig{Control: small(syscall.SO_RCVBUF)}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ours, err := (&net.Dialer{Control: small(syscall.SO_SNDBUF)}).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return ours, peer
}
