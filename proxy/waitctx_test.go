package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitCtxEndsAtItsBound(t *testing.T) {
	c := newWaitCtx(context.Background(), 20*time.Millisecond)
	defer c.release()
	if err := c.Err(); err != nil {
		t.Fatalf("Err before the bound: %v", err)
	}
	if d, ok := c.Deadline(); !ok || time.Until(d) > 20*time.Millisecond {
		t.Fatalf("Deadline %v %v, want within 20ms", d, ok)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the bound")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err after the bound: %v", c.Err())
	}
}

func TestWaitCtxErrPassesItsBoundWithoutDone(t *testing.T) {
	c := newWaitCtx(context.Background(), time.Millisecond)
	defer c.release()
	time.Sleep(5 * time.Millisecond)
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err after the bound, Done never called: %v", c.Err())
	}
}

func TestWaitCtxFollowsItsParent(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	unarmed := newWaitCtx(parent, time.Hour)
	armed := newWaitCtx(parent, time.Hour)
	defer unarmed.release()
	defer armed.release()
	done := armed.Done()
	if unarmed.Value(key{}) != "v" {
		t.Fatal("Value does not reach the parent")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("an armed context's Done did not close with its parent")
	}
	for name, c := range map[string]*waitCtx{"armed": armed, "unarmed": unarmed} {
		if !errors.Is(c.Err(), context.Canceled) {
			t.Errorf("%s: Err %v after the parent was canceled", name, c.Err())
		}
	}
	select {
	case <-unarmed.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done armed after the parent ended did not close")
	}
}

func TestWaitCtxTakesTheEarlierDeadline(t *testing.T) {
	parent, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	c := newWaitCtx(parent, time.Hour)
	defer c.release()
	if d, _ := c.Deadline(); time.Until(d) > time.Second {
		t.Fatalf("Deadline %v: not the parent's", d)
	}
}
