package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/config"
)

// testPool is a pool whose dial hands out one end of an in-memory pipe.
func testPool(t *testing.T, cfg config.Pool) (*backendPool, *atomic.Int32) {
	t.Helper()
	var dials atomic.Int32
	dial := func(context.Context) (*backendConn, error) {
		n := dials.Add(1)
		a, b := net.Pipe()
		t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
		go func() { // the "server" reads (and drops) whatever it is sent
			buf := make([]byte, 64)
			for {
				if _, err := b.Read(buf); err != nil {
					return
				}
			}
		}()
		return &backendConn{conn: a, pid: uint32(n), params: map[string]string{"server_version": "17"}}, nil
	}
	p := newBackendPool(poolKey{region: "eu-west", database: "app"}, cfg, time.Second, dial, slog.Default())
	t.Cleanup(p.close)
	return p, &dials
}

// waitingCheckout starts a checkout of p and returns once it waits; the
// connection it gets comes on the channel.
func waitingCheckout(t *testing.T, p *backendPool) <-chan *pooledConn {
	t.Helper()
	got := make(chan *pooledConn, 1)
	go func() {
		pc, err := p.checkout(context.Background(), nil)
		if err != nil {
			t.Error(err)
		}
		got <- pc
	}()
	for p.stats().waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	return got
}

func TestPoolBoundsWaitsAndHandsOver(t *testing.T) {
	cfg := config.Pool{Mode: config.PoolTransaction, Size: 1, IdleTimeout: time.Hour, MaxWait: 100 * time.Millisecond}
	p, dials := testPool(t, cfg)
	ctx := context.Background()
	first, err := p.checkout(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.checkout(ctx, nil)
	var ce *clientError
	if !errors.As(err, &ce) || ce.Code != pgerrcode.TooManyConnections ||
		!strings.Contains(ce.Hint, "pool.size") || !strings.Contains(ce.Message, "pool.max_wait") {
		t.Fatalf("checkout of a full pool: %v, want 53300 naming pool.size and pool.max_wait", err)
	}
	if d := time.Since(start); d < cfg.MaxWait {
		t.Errorf("refused after %s, before pool.max_wait", d)
	}
	got := waitingCheckout(t, p)
	p.checkin(first)
	if pc := <-got; pc != first {
		t.Errorf("the waiter got %p, want the checked-in connection %p", pc, first)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials for pool.size 1", n)
	}
	if p.params == nil || p.params[0] != [2]string{"server_version", "17"} {
		t.Errorf("pool params = %v", p.params)
	}
}

func TestPoolDiscardRefillsForAWaiter(t *testing.T) {
	p, dials := testPool(t, config.Pool{Size: 1, IdleTimeout: time.Hour, MaxWait: 5 * time.Second})
	pc, err := p.checkout(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { _, err := p.checkout(context.Background(), nil); got <- err }()
	for p.stats().waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	p.discard(pc)
	if err := <-got; err != nil {
		t.Fatalf("waiter after a discard: %v", err)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (the discarded connection was replaced)", n)
	}
}

func TestPoolIdleTimeoutKeepsMinIdle(t *testing.T) {
	p, _ := testPool(t, config.Pool{Size: 3, MinIdle: 1, IdleTimeout: 50 * time.Millisecond, MaxWait: time.Second})
	var pcs []*pooledConn
	for range 3 {
		pc, err := p.checkout(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		pcs = append(pcs, pc)
	}
	for _, pc := range pcs {
		p.checkin(pc)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.stats()
		if st.idle == 1 && st.active == 0 && len(st.servers) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after idle_timeout: %d idle, %d servers; want min_idle 1", st.idle, len(st.servers))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A reload that raises pool.size serves the clients waiting at once; one
// that lowers it closes idle connections beyond it now and busy ones as
// they come back, and pool.max_wait applies to the next wait.
func TestPoolReloadResizes(t *testing.T) {
	p, dials := testPool(t, config.Pool{Size: 1, IdleTimeout: time.Hour, MaxWait: time.Minute})
	ctx := context.Background()
	first, err := p.checkout(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := waitingCheckout(t, p)
	p.setConfig(config.Pool{Size: 3, IdleTimeout: time.Hour, MaxWait: time.Minute})
	select {
	case second := <-got:
		if second == first || second == nil {
			t.Fatalf("the waiter got %p (first %p)", second, first)
		}
		p.checkin(second)
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting client was not served after pool.size grew")
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}

	// Down to one connection, with a short wait: the idle one closes now,
	// the busy one stays until it is checked in.
	p.setConfig(config.Pool{Size: 1, IdleTimeout: time.Hour, MaxWait: 20 * time.Millisecond})
	if st := p.stats(); st.idle != 0 || len(st.servers) != 1 {
		t.Fatalf("after lowering pool.size to 1: %d idle, %d servers", st.idle, len(st.servers))
	}
	start := time.Now()
	if _, err := p.checkout(ctx, nil); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("checkout of the full resized pool: %v after %s, want pool.max_wait 20ms", err, time.Since(start))
	}
	p.checkin(first)
	if st := p.stats(); st.idle != 1 || len(st.servers) != 1 {
		t.Fatalf("after checkin: %d idle, %d servers, want 1, 1", st.idle, len(st.servers))
	}
}

func TestPooledConnPreparedLRU(t *testing.T) {
	pc := newPooledConn(nil, &backendConn{conn: nopConn{}}, 1)
	for i := range maxPreparedPerBackend {
		if evict := pc.addPrepared(fmt.Sprint("s", i)); evict != "" {
			t.Fatalf("evicted %q below the limit", evict)
		}
	}
	if !pc.hasPrepared("s0") { // s0 becomes the most recently used
		t.Fatal("s0 missing")
	}
	if evict := pc.addPrepared("new"); evict != "s1" {
		t.Errorf("evicted %q, want the least recently used s1", evict)
	}
	pc.dropPrepared("new")
	if pc.hasPrepared("new") || pc.hasPrepared("s1") || !pc.hasPrepared("s2") {
		t.Error("drop or eviction not reflected")
	}
}

// The context Bind decodes to text arrays PostgreSQL reads back as the
// names and values, whatever quotes and backslashes they hold.
func TestCtxBindBody(t *testing.T) {
	names := []string{"app.current_account_id", "app.current_subject", "application_name"}
	values := []string{`42`, `us"er\x`, `a,b {c}`}
	var b pgproto3.Bind
	if err := b.Decode(ctxBindBody(names, values)); err != nil {
		t.Fatal(err)
	}
	if b.PreparedStatement != ctxStatement || b.DestinationPortal != "" || len(b.Parameters) != 2 {
		t.Fatalf("bind = %+v", b)
	}
	want := `{"app.current_account_id","app.current_subject","application_name"}`
	if got := string(b.Parameters[0]); got != want {
		t.Errorf("names = %s, want %s", got, want)
	}
	if got, want := string(b.Parameters[1]), `{"42","us\"er\\x","a,b {c}"}`; got != want {
		t.Errorf("values = %s, want %s", got, want)
	}
}

// nopConn is a net.Conn that does nothing, for structures that need one.
type nopConn struct{ net.Conn }

// Up to ctxFixedMax pairs, the context Bind names the fixed-arity statement
// and carries each name and value as a text parameter; beyond, the arrays.
func TestCtxBindFixedArity(t *testing.T) {
	names := []string{"app.current_account_id", "app.current_subject", "application_name"}
	values := []string{`42`, `us"er\x`, `a,b {c}`}
	var b pgproto3.Bind
	if err := b.Decode(ctxBind(names, values)); err != nil {
		t.Fatal(err)
	}
	if b.PreparedStatement != "pgtenant_ctx3" || b.DestinationPortal != "" || len(b.ParameterFormatCodes) != 0 ||
		len(b.ResultFormatCodes) != 0 || len(b.Parameters) != 6 {
		t.Fatalf("bind = %+v", b)
	}
	for i := range names {
		if string(b.Parameters[2*i]) != names[i] || string(b.Parameters[2*i+1]) != values[i] {
			t.Errorf("pair %d = %q, %q", i, b.Parameters[2*i], b.Parameters[2*i+1])
		}
	}
	if !strings.Contains(ctxPrepareSQL, "PREPARE pgtenant_ctx3(text, text, text, text, text, text) AS SELECT "+
		"pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true), pg_catalog.set_config($5, $6, true);\n") {
		t.Errorf("ctxPrepareSQL = %s", ctxPrepareSQL)
	}
	many := make([]string, ctxFixedMax+1)
	if err := b.Decode(ctxBind(many, many)); err != nil || b.PreparedStatement != ctxStatement {
		t.Errorf("%d pairs: bind %+v, %v; want %s", len(many), b, err, ctxStatement)
	}
}
