package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// parkableSession is a session past its startup, not yet started, on TCP
// sockets the watcher can arm: the test's ends are the client's and the
// server's connections. It skips where there is no watcher.
func parkableSession(t *testing.T) (*Server, *session, net.Conn, net.Conn) {
	t.Helper()
	startParker()
	if theParker == nil {
		t.Skip("no epoll here: sessions do not park")
	}
	srv := fuzzSessionServer(t)
	clientConn, proxyClient := tcpPair(t)
	proxyBackend, backendConn := tcpPair(t)
	ss := newFuzzSession(srv, proxyClient, proxyBackend)
	if err := srv.track(ss); err != nil {
		t.Fatal(err)
	}
	if err := ss.sendStartupReply(); err != nil {
		t.Fatal(err)
	}
	if err := readUntilReady(clientConn); err != nil {
		t.Fatal(err)
	}
	return srv, ss, clientConn, backendConn
}

// TestIdleSessionParks checks that an idle session's backend goroutine
// parks, that what the backend then sends unasked wakes it and reaches the
// client, that a parked session still relays a query, and that closing a
// parked session ends it.
func TestIdleSessionParks(t *testing.T) {
	srv, ss, clientConn, backendConn := parkableSession(t)
	stop := make(chan struct{})
	defer close(stop)
	go srv.sweepIdle(stop)
	finished := make(chan struct{})
	ss.start(func() { close(finished) })

	awaitState := func(want int32, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for ss.bstate.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: backend state %d, want %d", what, ss.bstate.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	awaitState(bParked, "idle session")

	// A notification wakes the parked session and reaches the client.
	note, _ := (&pgproto3.NotificationResponse{PID: 7, Channel: "ch", Payload: "p"}).Encode(nil)
	if _, err := backendConn.Write(note); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(clientConn, io.Discard)
	_ = clientConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := fe.Receive()
	if n, ok := m.(*pgproto3.NotificationResponse); err != nil || !ok || n.Payload != "p" {
		t.Fatalf("client got %#v, %v; want the notification", m, err)
	}

	// Parked again, a query still goes through and its answer comes back.
	awaitState(bParked, "idle again")
	if _, err := clientConn.Write([]byte{'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 14)
	_ = backendConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(backendConn, got); err != nil || got[0] != 'Q' {
		t.Fatalf("backend got %q, %v", got, err)
	}
	var reply []byte
	reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(reply)
	reply, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(reply)
	if _, err := backendConn.Write(reply); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}

	// Closing a parked session ends it.
	awaitState(bParked, "idle after the query")
	_ = clientConn.Close()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("a parked session did not end when its client left")
	}
	if ss.bstate.Load() != bDone {
		t.Errorf("backend state %d after the end, want %d", ss.bstate.Load(), bDone)
	}
}

// TestParkedSessionRelaysOnItsClientGoroutine checks that a query sent by a
// parked session is relayed by the client goroutine, whatever the watcher
// sees first: the reply may be readable before the client goroutine gets
// to take the socket back, and a watcher that started a backend goroutine
// then would leave a busy session on two goroutines for good.
func TestParkedSessionRelaysOnItsClientGoroutine(t *testing.T) {
	_, ss, clientConn, backendConn := parkableSession(t)
	// The reply is in before the relay begins, every time: a watcher still
	// armed for the session reports it. (Set before the session's goroutines
	// start and cleared after they end.)
	testHookBatchSent = func() { time.Sleep(2 * time.Millisecond) }
	finished := make(chan struct{})
	ss.start(func() { close(finished) })
	defer func() {
		_ = clientConn.Close()
		<-finished
		testHookBatchSent = nil
	}()

	// The backend answers each query the moment it arrives.
	var reply []byte
	reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}).Encode(reply)
	reply, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(reply)
	go func() {
		q := make([]byte, 14)
		for {
			if _, err := io.ReadFull(backendConn, q); err != nil {
				return
			}
			if _, err := backendConn.Write(reply); err != nil {
				return
			}
		}
	}()
	query := []byte{'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0}
	fe := pgproto3.NewFrontend(clientConn, io.Discard)
	for i := range 50 {
		ss.parkFree()
		if st := ss.bstate.Load(); st != bParked {
			t.Fatalf("round %d: backend state %d before the query, want parked (%d)", i, st, bParked)
		}
		if _, err := clientConn.Write(query); err != nil {
			t.Fatal(err)
		}
		_ = clientConn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for ss.bstate.Load() == bInline && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
		if st := ss.bstate.Load(); st != bFree {
			t.Fatalf("round %d: backend state %d after the reply, want free (%d): a backend goroutine took the session", i, st, bFree)
		}
	}
}
