package e2e

import (
	"context"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(entries)
}

// settle waits until f() <= want, returning the last value seen.
func settle(f func() int, want int) int {
	deadline := time.Now().Add(10 * time.Second)
	v := f()
	for v > want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		runtime.GC()
		v = f()
	}
	return v
}

// Sessions that end in every way (Terminate, client vanishing mid-result,
// mid-transaction, during startup) leave no goroutine or file descriptor behind.
func TestNoGoroutineOrFDLeaks(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	ctx := ctxT(t)
	warm := connect(t, env.DSN(t, "42", "eu-west"))
	if err := warm.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	warm.Close(ctx)
	time.Sleep(200 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	dsn := env.DSN(t, "42", "eu-west")
	for range 10 {
		// Clean close.
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)

		// Vanish mid-result and mid-transaction: close the socket under pgx.
		c, err = pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		rows, err := c.Query(ctx, "SELECT repeat('x', 10000) FROM generate_series(1, 2000)")
		if err != nil {
			t.Fatal(err)
		}
		rows.Next()
		_ = c.PgConn().Conn().Close()
		rows.Close()

		// Vanish during startup.
		raw, err := net.Dial("tcp", env.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = raw.Write([]byte{0, 0, 0, 40})
		raw.Close()
	}
	if g := settle(runtime.NumGoroutine, baseG); g > baseG {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines: %d after, %d before\n%s", g, baseG, buf[:runtime.Stack(buf, true)])
	}
	if fd := settle(func() int { return openFDs(t) }, baseFD); fd > baseFD {
		t.Errorf("open file descriptors: %d after, %d before", fd, baseFD)
	}
	// The backend sessions of vanished clients are gone too (rolled back, closed).
	admin := connect(t, env.Clusters["eu-west"].SuperuserDSN(env.Clusters["eu-west"].Database))
	n := settle(func() int {
		var n int
		_ = admin.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND backend_type = 'client backend'").Scan(&n)
		return n
	}, 0)
	if n > 0 {
		t.Errorf("%d backend sessions of closed clients are still open", n)
	}
}
