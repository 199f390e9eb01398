package proxy

import (
	"bytes"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// BenchmarkSessionRelay measures the relay alone: one extended-protocol
// point query (Parse, Bind, Describe, Execute, Sync) per op through a
// session over real loopback TCP sockets, to a fake backend that answers
// each Sync with canned bytes. The client and the backend allocate nothing
// per op, so allocs/op is the session's own (the checker is fuzzChecker,
// which allocates nothing for an allowed statement). ns/op includes both
// peers and the kernel; compare it between versions, not with PostgreSQL.
func BenchmarkSessionRelay(b *testing.B) {
	rig := startRelayRig(b, tcpPair)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rig.roundTrip()
	}
	b.StopTimer()
	rig.stop()
}

// TestSessionRelayAllocations checks what a relayed statement allocates:
// one stmtRef (what its Bind audits, shared by the pending entry, the last
// Bind and the confirmed portal), nothing per message.
func TestSessionRelayAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts under the race detector are not the product's (race_on_test.go); make test runs this without it")
	}
	rig := startRelayRig(t, tcpPair)
	defer rig.stop()
	for range 100 { // warm up: the session's maps, the buffer pool
		rig.roundTrip()
	}
	if got := testing.AllocsPerRun(1000, rig.roundTrip); got > 1 {
		t.Errorf("%.2f allocations per relayed statement, want at most 1", got)
	}
}

// TestSessionRelayPipelined checks that a client that sends its next batch
// before it reads the replies to the last one gets both: the relay must not
// wait for client bytes that came while it sent the replies (a wake-up lost
// that way hung node-postgres and drizzle in the client matrix).
func TestSessionRelayPipelined(t *testing.T) {
	for name, pair := range socketPairs {
		t.Run(name, func(t *testing.T) {
			rig := startRelayRig(t, pair)
			defer rig.stop()
			rig.roundTrip()
			for i := range 300 {
				rig.pipelined(time.Duration(i%60) * time.Microsecond)
			}
		})
	}
}

// TestClientSideParksWithoutAProbingRead checks what serve saves: over
// TCP, once a batch's replies are out the client side parks without first
// reading a socket the client has not written to yet (TCP_INQ said the
// read before took everything). A Unix socket cannot say so, and there the
// relay does read until EAGAIN, once per batch, which shows the count
// would catch a probing read.
func TestClientSideParksWithoutAProbingRead(t *testing.T) {
	const batches = 200
	// The hook stays installed until every session of the test has ended
	// (a session reads it from its own goroutine).
	var (
		counting atomic.Bool
		client   atomic.Pointer[connReader]
		empty    atomic.Int64
	)
	testHookEmptyRead = func(r *connReader) {
		if counting.Load() && r == client.Load() {
			empty.Add(1)
		}
	}
	defer func() { testHookEmptyRead = nil }()
	for name, c := range map[string]struct {
		pair     func(testing.TB) (net.Conn, net.Conn)
		min, max int64
	}{
		"tcp":  {tcpPair, 0, batches / 20}, // serve's first read, a stray wake-up
		"unix": {unixPair, batches * 3 / 4, 2 * batches},
	} {
		t.Run(name, func(t *testing.T) {
			rig := startRelayRig(t, c.pair)
			client.Store(rig.client)
			rig.roundTrip()
			empty.Store(0)
			counting.Store(true)
			for range batches {
				rig.roundTrip()
				// the client thinks a moment, as a pgbench client does
				// between statements: the relay has gone back to the
				// socket, found it empty or not, before the next batch
				time.Sleep(50 * time.Microsecond)
			}
			counting.Store(false)
			rig.stop()
			n := empty.Load()
			t.Logf("%d empty reads in %d batches", n, batches)
			if n < c.min || n > c.max {
				t.Errorf("%d reads of the client socket found it empty in %d batches, want %d to %d", n, batches, c.min, c.max)
			}
		})
	}
}

// TestSessionEndsWithTheClientsLastBatch checks that a client whose last
// batch and end of stream arrive together is seen to leave: one wake-up
// stands for both, and the read that takes the batch stops short of the
// end (on TCP, TCP_INQ says one is left; on a Unix socket the relay reads
// until the socket is empty). A session that missed it would wait for the
// client forever.
func TestSessionEndsWithTheClientsLastBatch(t *testing.T) {
	for name, pair := range socketPairs {
		t.Run(name, func(t *testing.T) {
			for range 20 {
				rig := startRelayRig(t, pair)
				rig.roundTrip()
				rig.hangUp()
				rig.stop()
			}
		})
	}
}

// relayRig is a session between a client and a fake backend (startRelayRig).
type relayRig struct {
	// roundTrip sends one extended-protocol point query (Parse, Bind,
	// Describe, Execute, Sync) and reads the canned reply (the client and
	// the backend allocate nothing doing so).
	roundTrip func()
	// pipelined sends two such batches gap apart, without reading between
	// them, then reads both replies.
	pipelined func(gap time.Duration)
	// hangUp sends a batch and the end of the client's stream in one go,
	// reads the reply and fails unless the session then ends.
	hangUp func()
	// stop ends the session.
	stop func()
	// client is the session's reader of the client socket.
	client *connReader
}

// startRelayRig starts a session whose client connection comes from pair
// and whose backend is a fake over loopback TCP.
func startRelayRig(tb testing.TB, pair func(testing.TB) (net.Conn, net.Conn)) relayRig {
	startParker() // as NewServer does: without it a session relays on two goroutines
	srv := fuzzSessionServer(tb)
	clientConn, proxyClient := pair(tb)
	proxyBackend, backendConn := tcpPair(tb)
	ss := newFuzzSession(srv, proxyClient, proxyBackend)
	if err := ss.sendStartupReply(); err != nil {
		tb.Fatal(err)
	}
	// Drain the startup reply (up to and including ReadyForQuery).
	if err := readUntilReady(clientConn); err != nil {
		tb.Fatal(err)
	}

	var req []byte
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Parse{Query: "SELECT abalance FROM accounts WHERE account_id = 42 AND aid = $1"},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("7")}},
		&pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{},
		&pgproto3.Sync{},
	} {
		req, _ = m.Encode(req)
	}
	var reply []byte
	for _, m := range []pgproto3.BackendMessage{
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("abalance"), DataTypeOID: 23, DataTypeSize: 4, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1234")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	} {
		reply, _ = m.Encode(reply)
	}
	// The backend answers every request (they arrive whole: one per op,
	// and the client waits for each answer) with the canned reply.
	go func() {
		buf := make([]byte, 4096)
		got := 0
		for {
			n, err := backendConn.Read(buf)
			if err != nil {
				return
			}
			got += n
			for got >= len(req) {
				got -= len(req)
				if _, err := backendConn.Write(reply); err != nil {
					return
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { defer close(done); ss.run() }()

	buf := make([]byte, 4096)
	rig := relayRig{client: ss.cr.r}
	rig.pipelined = func(gap time.Duration) {
		// the second batch follows the first after gap, before its replies
		_ = clientConn.SetReadDeadline(time.Now().Add(10 * time.Second))
		defer func() { _ = clientConn.SetReadDeadline(time.Time{}) }()
		if _, err := clientConn.Write(req); err != nil {
			tb.Fatal(err)
		}
		time.Sleep(gap)
		if _, err := clientConn.Write(req); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(clientConn, buf[:2*len(reply)]); err != nil {
			tb.Fatalf("replies to two batches sent %v apart: %v", gap, err)
		}
		if want := append(append([]byte(nil), reply...), reply...); !bytes.Equal(buf[:2*len(reply)], want) {
			tb.Fatalf("replies to two batches sent %v apart: %q, want the backend's reply twice", gap, buf[:2*len(reply)])
		}
	}
	rig.roundTrip = func() {
		if _, err := clientConn.Write(req); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.ReadFull(clientConn, buf[:len(reply)]); err != nil {
			tb.Fatal(err)
		}
		if !bytes.Equal(buf[:len(reply)], reply) {
			tb.Fatalf("the client got %q, want the backend's reply %q", buf[:len(reply)], reply)
		}
	}
	rig.hangUp = func() {
		hc, ok := clientConn.(interface{ CloseWrite() error })
		if !ok {
			tb.Fatalf("%T cannot half-close", clientConn)
		}
		// One write and the FIN right after: they arrive before the
		// session wakes, most of the time.
		if _, err := clientConn.Write(req); err != nil {
			tb.Fatal(err)
		}
		if err := hc.CloseWrite(); err != nil {
			tb.Fatal(err)
		}
		_ = clientConn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(clientConn, buf[:len(reply)]); err != nil {
			tb.Fatalf("the reply to the last batch: %v", err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			tb.Fatal("the session still runs 5 s after the client's end of stream")
		}
	}
	rig.stop = func() {
		_ = clientConn.Close()
		<-done
		_ = backendConn.Close()
	}
	return rig
}

// socketPairs are the client connections the relay tests run over: TCP
// (TCP_INQ) and a Unix socket (read until EAGAIN).
var socketPairs = map[string]func(testing.TB) (net.Conn, net.Conn){"tcp": tcpPair, "unix": unixPair}

// unixPair returns both ends of a Unix socket connection (no TCP_INQ).
func unixPair(tb testing.TB) (net.Conn, net.Conn) {
	return socketPair(tb, "unix", filepath.Join(tb.TempDir(), "s"))
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	return socketPair(tb, "tcp", "127.0.0.1:0")
}

// socketPair returns both ends of a connection to a listener on addr.
func socketPair(tb testing.TB, network, addr string) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	a, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		tb.Fatal(r.err)
	}
	tb.Cleanup(func() { _ = a.Close(); _ = r.c.Close() })
	return a, r.c
}

// readUntilReady reads backend messages until a ReadyForQuery.
func readUntilReady(conn net.Conn) error {
	fe := pgproto3.NewFrontend(conn, io.Discard)
	for {
		m, err := fe.Receive()
		if err != nil {
			return err
		}
		if _, ok := m.(*pgproto3.ReadyForQuery); ok {
			return nil
		}
	}
}
