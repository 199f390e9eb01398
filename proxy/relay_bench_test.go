package proxy

import (
	"bytes"
	"io"
	"net"
	"testing"

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
	startParker() // as NewServer does: without it a session relays on two goroutines
	srv := fuzzSessionServer(b)
	clientConn, proxyClient := tcpPair(b)
	proxyBackend, backendConn := tcpPair(b)
	ss := newFuzzSession(srv, proxyClient, proxyBackend)
	if err := ss.sendStartupReply(); err != nil {
		b.Fatal(err)
	}
	// Drain the startup reply (up to and including ReadyForQuery).
	if err := readUntilReady(clientConn); err != nil {
		b.Fatal(err)
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
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := clientConn.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(clientConn, buf[:len(reply)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if !bytes.Equal(buf[:len(reply)], reply) {
		b.Fatalf("the client got %q, want the backend's reply %q", buf[:len(reply)], reply)
	}
	_ = clientConn.Close()
	<-done
	_ = backendConn.Close()
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
	a, err := net.Dial("tcp", ln.Addr().String())
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
