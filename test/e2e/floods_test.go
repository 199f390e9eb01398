package e2e

import (
	"context"
	encbin "encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Floods and limits: connection caps, slow and oversized clients, many idle
// clients and reconnect storms against the in-process proxy and real
// clusters. PGTENANT_FLOOD=5000 runs the large variants (not with -short).

// floodScale returns PGTENANT_FLOOD as a number, or 0 when unset, invalid
// or the tests run with -short.
func floodScale(t *testing.T) int {
	n, err := strconv.Atoi(os.Getenv("PGTENANT_FLOOD"))
	if err != nil || n <= 0 || testing.Short() {
		return 0
	}
	return n
}

// wantFatal checks that err is a FATAL with code whose message contains mentions.
func wantFatal(t *testing.T, what string, err error, code, mentions string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Severity != "FATAL" || pe.Code != code || !strings.Contains(pe.Message, mentions) {
		t.Errorf("%s: got %v, want FATAL %s mentioning %q", what, err, code, mentions)
	}
}

func TestFloodConnectionLimits(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Configure: func(c *config.Config) {
		c.Limits.MaxConnections, c.Limits.MaxConnectionsPerTenant = 4, 2
	}})
	ctx := ctxT(t)
	a1 := connect(t, env.DSN(t, "42", "eu-west"))
	connect(t, env.DSN(t, "42", "eu-west"))
	_, err := pgconn.Connect(ctx, env.DSN(t, "42", "eu-west"))
	wantFatal(t, "third connection of one tenant", err, "53300", "limit 2")
	mustServe(t, a1, "a tenant at its limit")

	// Other tenants still connect, up to the proxy's limit.
	connect(t, env.DSN(t, "7", "eu-west"))
	connect(t, env.DSN(t, "8", "eu-west"))
	_, err = pgconn.Connect(ctx, env.DSN(t, "9", "eu-west"))
	wantFatal(t, "fifth connection to the proxy", err, "53300", "limit 4")

	// Closing one frees its place.
	if err := a1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	settleClients(t, env, 3)
	if conn, err := pgconn.Connect(ctx, env.DSN(t, "9", "eu-west")); err != nil {
		t.Errorf("after a connection closed: %v", err)
	} else {
		conn.Close(ctx)
	}
}

func TestFloodStartupDribble(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Configure: func(c *config.Config) {
		c.Limits.StartupTimeout = 2 * time.Second
	}})
	conn := dialRaw(t, env)
	b, err := rawStartupMessage(nil).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	// One byte a second: the whole startup packet would take ~40s, well
	// past rawDeadline; only the startup timeout can end it in time.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for _, c := range b {
			if _, err := conn.Write([]byte{c}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	fatal := rawExpectFatalOrClose(t, pgproto3.NewFrontend(conn, conn), "08P01")
	if !strings.Contains(fatal.Message, "startup") {
		t.Errorf("dribbling client: %q does not name the startup timeout", fatal.Message)
	}
	rawStillServes(t, env)
}

func TestFloodMaxMessageBytes(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Configure: func(c *config.Config) {
		c.Limits.MaxMessageBytes = 1 << 20
	}})
	conn := dialRaw(t, env)
	fe, _ := rawLogin(t, conn)
	// A 2 MiB Query: the header announces it, the body streams behind.
	body := []byte("SELECT '" + strings.Repeat("x", 2<<20) + "'\x00")
	head := make([]byte, 5)
	head[0] = 'Q'
	encbin.BigEndian.PutUint32(head[1:], uint32(len(body)+4))
	go func() {
		if _, err := conn.Write(head); err == nil {
			_, _ = conn.Write(body) // the proxy may close before reading it all
		}
	}()
	fatal := rawExpectFatalOrClose(t, fe, "08P01")
	if !strings.Contains(fatal.Message, "limit") {
		t.Errorf("oversized message: %q does not name the limit", fatal.Message)
	}
	rawStillServes(t, env)
}

// floodCluster is a cluster of its own that accepts n client connections.
func floodCluster(t *testing.T, name string, n int) *cluster.Cluster {
	t.Helper()
	return ownCluster(t, name, map[string]string{"max_connections": strconv.Itoa(n + 50)})
}

// heapAndStacks is the Go heap and goroutine stack memory in use after two
// GCs (the second frees what the first moved to sync.Pool's victim cache,
// so pooled relay buffers no session holds are not counted).
func heapAndStacks() (heap, stacks int64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse), int64(m.StackInuse)
}

func TestFloodIdleClients(t *testing.T) {
	n := 1000
	if s := floodScale(t); s > 0 {
		n = s
	}
	c := floodCluster(t, "flood-idle", n)
	env := faultEnv(t, c, proxytest.Options{Regions: []string{"eu-west"}})
	token := proxytest.Token(t, "42", "eu-west", 0)
	admin := connect(t, c.SuperuserDSN(c.Database))
	backends := func() int {
		var k int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend'`, c.ServiceUser).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	// Warm up (pools, the first session's one-time allocations).
	warm, err := loginRaw(env.Addr, token, true, hangBound)
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()
	settleClients(t, env, 0)
	baseG := runtime.NumGoroutine()
	baseHeap, baseStacks := heapAndStacks()

	conns := make([]net.Conn, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	next := atomic.Int64{}
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				conn, err := loginRaw(env.Addr, token, true, hangBound)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = conn
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				conn.Close()
			}
		}
	}()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d idle clients failed to log in; first: %v", f, n, firstErr.Load())
	}
	if got := env.Server.ActiveClients(); got != int64(n) {
		t.Errorf("the proxy runs %d client handlers, want %d", got, n)
	}
	if got := backends(); got != n {
		t.Errorf("%d backend sessions for %d idle clients", got, n)
	}
	heap, stacks := heapAndStacks()
	g := runtime.NumGoroutine()
	heapPer, stackPer := (heap-baseHeap)/int64(n), (stacks-baseStacks)/int64(n)
	perConn := heapPer + stackPer
	t.Logf("%d idle clients logged in in %v: %+d B/conn of heap and stacks (heap %+d, stacks %+d; the heap includes the test's bare client sockets), %.2f goroutines/conn",
		n, elapsed.Round(time.Millisecond), perConn, heapPer, stackPer, float64(g-baseG)/float64(n))
	if perConn > idleClientBound {
		t.Errorf("%d B of heap and stacks per idle connection, want <= %d", perConn, idleClientBound)
	}
	// An idle session pins no 16 KiB relay buffer on either side.
	if heapPer >= 16<<10 {
		t.Errorf("%d B of heap per idle connection: an idle session holds a relay buffer", heapPer)
	}
	// Idle sessions are alive: a sample of them still answers.
	for i := 0; i < n; i += n / 10 {
		_ = conns[i].SetDeadline(time.Now().Add(hangBound))
		fe := pgproto3.NewFrontend(conns[i], conns[i])
		if rows, er := rawQuery(t, fe, "SELECT current_setting('app.current_account_id')"); er != nil || len(rows) != 1 || rows[0] != "42" {
			t.Fatalf("idle client %d: rows %v, error %+v", i, rows, er)
		}
	}
	// All closed: the proxy and the backends let go of everything.
	for i, conn := range conns {
		conn.Close()
		conns[i] = nil
	}
	settleClients(t, env, 0)
	if k := settle(backends, 0); k > 0 {
		t.Errorf("%d backend sessions left after the idle clients closed", k)
	}
	if got := settle(runtime.NumGoroutine, baseG); got > baseG {
		t.Errorf("goroutines: %d after, %d before", got, baseG)
	}
}

func TestFloodReconnectStorm(t *testing.T) {
	const rate = 1000 // connects per second
	d := 2 * time.Second
	if floodScale(t) > 0 {
		d = 10 * time.Second
	}
	c := floodCluster(t, "flood-storm", 200)
	env := faultEnv(t, c, proxytest.Options{Regions: []string{"eu-west"}})
	admin := connect(t, c.SuperuserDSN(c.Database))
	backends := func() int {
		var k int
		if err := admin.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE usename = $1 AND backend_type = 'client backend'`, c.ServiceUser).Scan(&k); err != nil {
			t.Fatal(err)
		}
		return k
	}
	cfg, err := pgconn.ParseConfig(env.DSN(t, "42", "eu-west"))
	if err != nil {
		t.Fatal(err)
	}
	warm, err := pgconn.ConnectConfig(ctxT(t), cfg.Copy())
	if err != nil {
		t.Fatal(err)
	}
	warm.Close(context.Background())
	settleClients(t, env, 0)
	baseG := runtime.NumGoroutine()

	// A ticker hands out connect permits at the target rate for d; 64
	// workers take them, each connecting, running one query and closing.
	permits := make(chan struct{}, 64)
	go func() {
		defer close(permits)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
			select {
			case permits <- struct{}{}:
			default: // workers are behind: the permit is dropped, the rate measured
			}
		}
	}()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range permits {
				if err := stormOnce(cfg); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("reconnect storm: %d connect+query+close in %v (%.0f/s, target %d/s), %d failed",
		ok.Load(), elapsed.Round(time.Millisecond), float64(ok.Load())/elapsed.Seconds(), rate, failed.Load())
	if f := failed.Load(); f > 0 {
		t.Errorf("%d of %d storm connections failed; first: %v", f, f+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no storm connection succeeded")
	}
	settleClients(t, env, 0)
	if k := settle(backends, 0); k > 0 {
		t.Errorf("%d backend sessions left after the storm", k)
	}
	if got := settle(runtime.NumGoroutine, baseG); got > baseG {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after, %d before\n%s", got, baseG, buf[:runtime.Stack(buf, true)])
	}
}

// stormOnce connects, checks the tenant context with one query and closes.
func stormOnce(cfg *pgconn.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), hangBound)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "SELECT current_setting('app.current_account_id')").ReadAll()
	if err != nil {
		return err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "42" {
		return fmt.Errorf("unexpected result %v", res)
	}
	return nil
}
