package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// waitCtx is context.WithTimeout(parent, d) that arms its timer only when
// a waiter asks for Done. The auditor almost never waits (a spool write or a
// queue with room returns at once), and a timer armed and stopped per audit
// event was 5 % of the proxy's CPU in spool mode (pprof, pgbench prepared,
// 8 clients). Deadline and Err hold from the start; Done arms the timer and
// the parent's cancellation on first call. release must be called once the
// waiter is done, as a CancelFunc would be.
type waitCtx struct {
	context.Context // the parent: Value, and Err before Done arms
	deadline        time.Time

	once  sync.Once
	armed atomic.Bool
	inner context.Context // WithDeadline(parent, deadline) once armed
	stop  context.CancelFunc
}

// newWaitCtx returns a context that ends with parent or after d.
func newWaitCtx(parent context.Context, d time.Duration) *waitCtx {
	return &waitCtx{Context: parent, deadline: time.Now().Add(d)}
}

// Deadline is the earlier of the parent's deadline and the bound.
func (c *waitCtx) Deadline() (time.Time, bool) {
	if d, ok := c.Context.Deadline(); ok && d.Before(c.deadline) {
		return d, true
	}
	return c.deadline, true
}

// Done arms the bound on first call.
func (c *waitCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		c.inner, c.stop = context.WithDeadline(c.Context, c.deadline)
		c.armed.Store(true)
	})
	return c.inner.Done()
}

// Err is the parent's error, or DeadlineExceeded once the bound has passed.
func (c *waitCtx) Err() error {
	if c.armed.Load() {
		return c.inner.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// release frees the timer if Done armed one.
func (c *waitCtx) release() {
	if c.armed.Load() {
		c.stop()
	}
}
