package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// bufSize is the size of every pooled relay buffer.
const bufSize = 16 << 10

// bufPool holds relay buffers. A session takes one only while bytes are in
// flight, so an idle session pins no buffer memory (issue: <= 16 KiB RSS per
// idle client connection).
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// connWriter is a buffered writer whose buffer is borrowed from bufPool at
// the first Write and returned at Flush.
type connWriter struct {
	w   io.Writer
	buf *[]byte
	n   int
}

func newConnWriter(w io.Writer) *connWriter { return &connWriter{w: w} }

// Write buffers p, writing through when it does not fit.
func (c *connWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.buf == nil {
			if len(p) >= bufSize {
				n, err := c.w.Write(p) // large and nothing buffered: skip the copy
				return written + n, err
			}
			c.buf = bufPool.Get().(*[]byte)
		}
		k := copy((*c.buf)[c.n:], p)
		c.n += k
		written += k
		p = p[k:]
		if c.n == bufSize {
			if err := c.flushBuf(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// Flush writes what is buffered and returns the buffer to the pool.
func (c *connWriter) Flush() error {
	if c.buf == nil {
		return nil
	}
	err := c.flushBuf()
	bufPool.Put(c.buf)
	c.buf = nil
	return err
}

func (c *connWriter) flushBuf() error {
	if c.n == 0 {
		return nil
	}
	_, err := c.w.Write((*c.buf)[:c.n])
	c.n = 0
	return err
}

// connReader is a buffered reader whose buffer is borrowed from bufPool
// while bytes are buffered. When the buffer is empty and the last read
// drained the socket, it waits for the socket to become readable before
// borrowing a buffer again, so a reader blocked on an idle peer holds none.
type connReader struct {
	r       io.Reader
	raw     syscall.RawConn // nil when the connection cannot wait for readability (TLS)
	buf     *[]byte
	start   int
	end     int
	drained bool // the last read returned less than it asked for
	err     error
}

func newConnReader(conn net.Conn) *connReader {
	// drained: nothing is buffered yet, so the first read waits for the
	// socket to become readable before borrowing a buffer (a session whose
	// backend stays silent after startup holds none).
	c := &connReader{r: conn, drained: true}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c
}

// Buffered returns the number of bytes that can be read without blocking.
func (c *connReader) Buffered() int { return c.end - c.start }

// fill reads until at least n bytes are buffered (n <= bufSize).
func (c *connReader) fill(n int) error {
	for c.Buffered() < n {
		if c.err != nil {
			err := c.err
			c.err = nil
			return err
		}
		if c.Buffered() == 0 && c.drained && c.raw != nil {
			c.release()
			if err := c.waitReadable(); err != nil {
				return err
			}
		}
		if c.buf == nil {
			c.buf = bufPool.Get().(*[]byte)
			c.start, c.end = 0, 0
		}
		if c.start > 0 && bufSize-c.start < n {
			c.end = copy(*c.buf, (*c.buf)[c.start:c.end])
			c.start = 0
		}
		m, err := c.r.Read((*c.buf)[c.end:])
		c.end += m
		c.drained = c.end < bufSize
		if err != nil {
			c.err = err
		}
	}
	return nil
}

// waitReadable parks until the socket has data (or an error), without
// reading it. RawConn.Read resets the poller's readiness before calling the
// callback, so the callback first peeks without blocking: data that arrived
// since the last read is seen here, and data arriving later wakes the poller.
func (c *connReader) waitReadable() error {
	var probe [1]byte
	waited := false
	err := c.raw.Read(func(fd uintptr) bool {
		if waited {
			return true
		}
		_, _, err := syscall.Recvfrom(int(fd), probe[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == syscall.EAGAIN || err == syscall.EINTR {
			waited = true
			return false // nothing yet: park on the runtime's poller
		}
		return true // data, EOF or an error: the following Read reports it
	})
	if errors.Is(err, syscall.EINVAL) {
		c.raw = nil // not pollable: plain blocking reads from now on
		return nil
	}
	return err
}

// release returns an empty buffer to the pool.
func (c *connReader) release() {
	if c.buf != nil {
		bufPool.Put(c.buf)
		c.buf = nil
		c.start, c.end = 0, 0
	}
}

// Peek returns the next n bytes without consuming them (n <= bufSize).
func (c *connReader) Peek(n int) ([]byte, error) {
	if n > bufSize {
		return nil, errors.New("peek beyond buffer size")
	}
	if err := c.fill(n); err != nil {
		if c.Buffered() < n {
			return nil, err
		}
	}
	return (*c.buf)[c.start : c.start+n], nil
}

// Discard skips the next n bytes, reading them as needed.
func (c *connReader) Discard(n int) (int, error) {
	done := 0
	for done < n {
		if c.Buffered() == 0 {
			if err := c.fill(1); err != nil {
				return done, err
			}
		}
		k := min(n-done, c.Buffered())
		c.start += k
		done += k
	}
	return done, nil
}

// Read reads up to len(p) bytes.
func (c *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.Buffered() == 0 {
		if err := c.fill(1); err != nil {
			return 0, err
		}
	}
	k := copy(p, (*c.buf)[c.start:c.end])
	c.start += k
	return k, nil
}
