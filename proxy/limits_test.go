package proxy

import (
	"testing"
	"time"
)

func TestAuthBackoffDelaysOnlyRepeatedFailures(t *testing.T) {
	b := newAuthBackoff()
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	for i := range authFailFree {
		if d := b.failed("10.0.0.1"); d != 0 {
			t.Fatalf("failure %d delayed by %s; the first %d are free", i+1, d, authFailFree)
		}
	}
	var prev time.Duration
	for i := range 12 {
		d := b.failed("10.0.0.1")
		if d <= 0 || d < prev || d > authMaxBackoff {
			t.Fatalf("failure %d: delay %s after %s (cap %s)", authFailFree+i+1, d, prev, authMaxBackoff)
		}
		prev = d
	}
	if prev != authMaxBackoff {
		t.Errorf("delay did not reach the cap: %s", prev)
	}
	if d := b.failed("10.0.0.2"); d != 0 {
		t.Errorf("another address inherited the backoff: %s", d)
	}
	b.succeeded("10.0.0.1")
	if d := b.failed("10.0.0.1"); d != 0 {
		t.Errorf("a success did not clear the address: %s", d)
	}
	if d := b.failed(""); d != 0 {
		t.Errorf("unix-socket clients (no address) are not tracked, got %s", d)
	}
}

func TestAuthBackoffIsBounded(t *testing.T) {
	b := newAuthBackoff()
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	for i := range authMaxTracked + 10 {
		b.failed(time.Duration(i).String())
	}
	if len(b.addrs) > authMaxTracked {
		t.Fatalf("tracking %d addresses, cap %d", len(b.addrs), authMaxTracked)
	}
	now = now.Add(authForgetIdle + time.Second)
	b.failed("fresh")
	if len(b.addrs) != 1 {
		t.Errorf("idle entries were not forgotten: %d left", len(b.addrs))
	}
}
