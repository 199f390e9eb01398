package cluster

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestStartRetriesWhenPortIsTaken hands Start a port another listener holds
// (as when another process wins the race for a free port) and expects it to
// move on to a new port.
func TestStartRetriesWhenPortIsTaken(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port
	calls := 0
	nextPort = func() (int, error) {
		calls++
		if calls == 1 {
			reservePort(busy)
			return busy, nil
		}
		return pickPort()
	}
	t.Cleanup(func() { nextPort = pickPort })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Config{Name: "retry"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Port == busy || calls < 2 {
		t.Errorf("port %d after %d picks; busy port was %d", c.Port, calls, busy)
	}
	if err := c.Exec(ctx, "app", "SELECT 1"); err != nil {
		t.Error(err)
	}
	portsMu.Lock()
	stillReserved := reserved[busy]
	portsMu.Unlock()
	if stillReserved {
		t.Error("the busy port stays reserved after the retry")
	}
}
