package proxy

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
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

// awaitingChecker allows everything, but like package policy's mirror a
// Bind waits until the server has confirmed the named Parse before it
// (change 1).
type awaitingChecker struct {
	fuzzChecker
	confirmed bool // Resolve(1) came (client loop, like every checker call)
}

func (c *awaitingChecker) CheckParse(string, string, []uint32) tenancy.Decision {
	return tenancy.Decision{Allow: true, Changes: []tenancy.Change{{ID: 1}}}
}

func (c *awaitingChecker) CheckBind(string, []int16, [][]byte) tenancy.Decision {
	if !c.confirmed {
		return tenancy.Decision{Wait: true, Reason: "await_server"}
	}
	return tenancy.Decision{Allow: true}
}

func (c *awaitingChecker) Resolve(id uint64, o tenancy.Outcome, _ []uint32) {
	c.confirmed = c.confirmed || (id == 1 && o == tenancy.Confirmed)
}

// TestCheckWaitingForRepliesReadsThem checks that a Bind whose check waits
// for the server's answer to a Parse in an earlier batch of the same
// pipeline gets it from a backend goroutine the wait starts: between
// batches nobody reads a session's backend socket (bFree), and without
// the sweeper (not started here) nothing else would ever read it. A
// session that relied on the sweeper to arm the watcher hung for good
// once the server stopped sweeping (Shutdown), and otherwise waited up to
// a sweep (250 ms) for every such pipeline.
func TestCheckWaitingForRepliesReadsThem(t *testing.T) {
	_, ss, clientConn, backendConn := parkableSession(t)
	ss.checker = &awaitingChecker{}
	finished := make(chan struct{})
	ss.start(func() { close(finished) })
	defer func() {
		_ = clientConn.Close()
		_ = backendConn.Close()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("the session did not end when both its connections closed")
		}
	}()
	if st := ss.bstate.Load(); st != bFree {
		t.Fatalf("backend state %d before the pipeline, want free (%d)", st, bFree)
	}

	// The backend answers like PostgreSQL: ParseComplete and ReadyForQuery
	// for the first batch, then the Bind's batch.
	backendDone := make(chan error, 1)
	go func() {
		be := pgproto3.NewBackend(backendConn, backendConn)
		var reply []byte
		for {
			m, err := be.Receive()
			if err != nil {
				backendDone <- err
				return
			}
			switch m.(type) {
			case *pgproto3.Parse:
				reply, _ = (&pgproto3.ParseComplete{}).Encode(reply)
			case *pgproto3.Bind:
				reply, _ = (&pgproto3.BindComplete{}).Encode(reply)
			case *pgproto3.Execute:
				reply, _ = (&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")}).Encode(reply)
			case *pgproto3.Sync:
				reply, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(reply)
				if _, err := backendConn.Write(reply); err != nil {
					backendDone <- err
					return
				}
				reply = reply[:0]
			}
		}
	}()

	var pipeline []byte
	pipeline, _ = (&pgproto3.Parse{Name: "s1", Query: "SELECT 1"}).Encode(pipeline)
	pipeline, _ = (&pgproto3.Sync{}).Encode(pipeline)
	pipeline, _ = (&pgproto3.Bind{PreparedStatement: "s1"}).Encode(pipeline)
	pipeline, _ = (&pgproto3.Execute{}).Encode(pipeline)
	pipeline, _ = (&pgproto3.Sync{}).Encode(pipeline)
	if _, err := clientConn.Write(pipeline); err != nil {
		t.Fatal(err)
	}
	// a generous bound that only a hang exceeds
	_ = clientConn.SetReadDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(clientConn, io.Discard)
	var got []string
	for ready := 0; ready < 2; {
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v (with no sweeper, a waiting check must read the replies itself)", got, err)
		}
		got = append(got, fmt.Sprintf("%T", m))
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			ready++
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("the pipeline failed: %s %s", e.Code, e.Message)
		}
	}
	want := "[*pgproto3.ParseComplete *pgproto3.ReadyForQuery *pgproto3.BindComplete *pgproto3.CommandComplete *pgproto3.ReadyForQuery]"
	if fmt.Sprint(got) != want {
		t.Errorf("client got %v, want %s", got, want)
	}
	select {
	case err := <-backendDone:
		t.Fatalf("backend: %v", err)
	default:
	}
}
