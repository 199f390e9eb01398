package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// bufSize is the size of every pooled relay buffer.
const bufSize = 16 << 10

// bufPool holds relay buffers. A session takes one only while bytes are in
// flight, so an idle session pins no buffer memory (issue: <= 16 KiB RSS per
// idle client connection).
var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// connWriter is a buffered writer whose buffer is borrowed from bufPool at
// the first Write and returned at Flush. On a socket it writes with raw
// non-blocking send(2) calls, waiting for writability on the runtime's
// poller only when the socket buffer is full (see rawio_linux.go).
type connWriter struct {
	w   io.Writer
	raw syscall.RawConn // nil: write through w (TLS, pipes)
	buf *[]byte
	n   int

	// The raw write's callback, built once so a write allocates nothing,
	// and its arguments and results.
	writeFn func(fd uintptr) bool
	pending []byte
	done    int
	werr    error

	// onFull, when set, is called before a write that a full buffer (or a
	// message larger than one) forces ahead of Flush: the writer's owner
	// learns that the peer may answer before the batch is complete.
	onFull func()
}

func newConnWriter(w io.Writer) *connWriter {
	c := &connWriter{w: w, raw: rawConnOf(w)}
	if c.raw != nil {
		c.writeFn = c.writeRaw
	}
	return c
}

// socketFD returns conn's socket descriptor, or -1 when conn is not a plain
// socket (TLS): only a plain socket's readability tells that bytes wait.
func socketFD(conn net.Conn) int {
	raw := rawConnOf(conn)
	if raw == nil {
		return -1
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1
	}
	return fd
}

// rawConnOf returns w's raw socket when it has one.
func rawConnOf(w any) syscall.RawConn {
	sc, ok := w.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// Write buffers p, writing through when it does not fit.
func (c *connWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.buf == nil {
			if len(p) >= bufSize {
				if c.onFull != nil {
					c.onFull()
				}
				n, err := c.write(p) // large and nothing buffered: skip the copy
				return written + n, err
			}
			c.buf = bufPool.Get().(*[]byte)
		}
		k := copy((*c.buf)[c.n:], p)
		c.n += k
		written += k
		p = p[k:]
		if c.n == bufSize {
			if c.onFull != nil {
				c.onFull()
			}
			if err := c.flushBuf(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// header buffers a message header (type and length of an n-byte body)
// in place, so writing one allocates nothing.
func (c *connWriter) header(t byte, n int) error {
	if c.buf != nil && bufSize-c.n < 5 {
		if c.onFull != nil {
			c.onFull()
		}
		if err := c.flushBuf(); err != nil {
			return err
		}
	}
	if c.buf == nil {
		c.buf = bufPool.Get().(*[]byte)
	}
	h := (*c.buf)[c.n : c.n+5]
	h[0] = t
	binary.BigEndian.PutUint32(h[1:], uint32(n+4))
	c.n += 5
	return nil
}

// buffered is how many bytes Flush would write.
func (c *connWriter) buffered() int { return c.n }

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
	_, err := c.write((*c.buf)[:c.n])
	c.n = 0
	return err
}

// write writes all of p to the connection.
func (c *connWriter) write(p []byte) (int, error) {
	if c.raw == nil {
		return c.w.Write(p)
	}
	c.pending, c.done, c.werr = p, 0, nil
	err := c.raw.Write(c.writeFn)
	if err == nil {
		err = c.werr
	}
	done := c.done
	c.pending, c.werr = nil, nil
	return done, err
}

// sendAll writes everything buffered to fd without waiting and returns the
// buffer to the pool; false when it could not (a full socket buffer or an
// error), leaving the rest buffered for Flush. It runs in the callback of a
// read of the same socket (connReader.sendFirst).
func (c *connWriter) sendAll(fd uintptr) bool {
	if c.buf == nil {
		return true
	}
	p := (*c.buf)[:c.n]
	done := 0
	for done < len(p) {
		n, errno := rawWrite(fd, p[done:])
		switch errno {
		case 0:
			done += n
		case syscall.EINTR:
		default:
			c.n = copy(*c.buf, p[done:])
			return false
		}
	}
	c.n = 0
	bufPool.Put(c.buf)
	c.buf = nil
	return true
}

// writeRaw is the raw write's callback: it sends c.pending until done or
// the socket buffer is full (false: wait for writability).
func (c *connWriter) writeRaw(fd uintptr) bool {
	for c.done < len(c.pending) {
		n, errno := rawWrite(fd, c.pending[c.done:])
		switch errno {
		case 0:
			c.done += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // socket buffer full: wait for the poller
		default:
			c.werr = os.NewSyscallError("write", errno)
			return true
		}
	}
	return true
}

// connReader is a buffered reader whose buffer is borrowed from bufPool
// while bytes are buffered. On a socket it reads with raw non-blocking
// read(2) calls straight into the buffer and parks on the runtime's poller
// when there is nothing to read, returning an empty buffer to the pool
// first: a reader blocked on an idle peer holds none.
type connReader struct {
	r     io.Reader
	raw   syscall.RawConn // nil when the connection is not a socket (TLS, pipes)
	buf   *[]byte
	start int
	end   int
	err   error

	// onDeadline, when set, decides about a read deadline that passed:
	// true clears it and reads on, false reports it (see park.go).
	onDeadline func(buffered int) bool

	// The raw read's callback, built once so a read allocates nothing, and
	// its argument and result.
	readFn func(fd uintptr) bool
	want   int
	rerr   error

	// inq: the socket has TCP_INQ set (by serve's first call), so a read
	// says whether it left anything in the socket (left).
	inq, left bool

	// serve's callback, built by its first call like readFn (an idle
	// session parks in it), and the handler it runs.
	serveFn func(fd uintptr) bool
	handle  func() bool
	// serving: serve's raw read is under way, which closing the socket
	// waits for (session.close reads it from other goroutines).
	serving atomic.Bool

	// sendFirst, when set, is the writer of the same socket: the next read
	// sends its buffered bytes (the batch whose replies it waits for) from
	// inside the read, once the runtime's poller is armed for it. A reply
	// then wakes the read however fast it comes, so the read parks at once
	// instead of first trying the socket (a read(2) that returns EAGAIN
	// once per batch, since the server cannot have answered yet).
	//
	// Only for a batch the peer is sure to answer (one that ends in a Sync
	// or a Query): arming the poller forgets a wake-up for bytes that came
	// before it, so the read must be woken by bytes that come after. That
	// rules out the client side: a client may have sent its next message
	// before it has the replies, and then sends nothing more.
	// It stays set until the batch is out: when the callback cannot send it
	// whole without waiting (or the read fails first), readRaw sends the
	// rest the ordinary way.
	sendFirst *connWriter
}

func newConnReader(conn net.Conn) *connReader {
	c := &connReader{r: conn, raw: rawConnOf(conn)}
	if c.raw != nil {
		c.readFn = c.readCallback
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
		if c.raw != nil {
			c.readRaw(n)
			continue
		}
		if c.buf == nil {
			c.buf = bufPool.Get().(*[]byte)
			c.start, c.end = 0, 0
		}
		c.compact(n)
		m, err := c.r.Read((*c.buf)[c.end:])
		c.end += m
		if err != nil {
			c.err = err
		}
	}
	return nil
}

// awaitInput waits until the socket has bytes to read, or a read fails
// (kept in c.err for the next read), when nothing is buffered. It reads
// as fill would, from a shallower stack.
func (c *connReader) awaitInput() {
	if c.Buffered() == 0 && c.err == nil && c.raw != nil {
		c.readRaw(1)
	}
}

// compact moves the buffered bytes to the front when fewer than n would
// fit after them.
func (c *connReader) compact(n int) {
	if c.start > 0 && bufSize-c.start < n {
		c.end = copy(*c.buf, (*c.buf)[c.start:c.end])
		c.start = 0
	}
}

// readRaw reads once from the socket, parking on the poller until it is
// readable; the outcome is in the buffer or in c.err. A batch set to be
// sent first (sendFirst) has been sent, or has failed, when it returns.
func (c *connReader) readRaw(n int) {
	c.want, c.rerr = n, nil
	err := c.raw.Read(c.readFn)
	if err == nil {
		err = c.rerr
	}
	c.rerr = nil
	if w := c.sendFirst; w != nil {
		// The batch must be out before anything waits for its replies. A
		// failed write is not this read's error: as after any failed
		// write to the server, reading on relays what it said before it
		// went (its ErrorResponse, then EOF end the session).
		c.sendFirst = nil
		_ = w.Flush()
		if err == nil {
			return // nothing was read: the caller's loop reads again
		}
	}
	if err != nil {
		c.failed(err)
	}
}

// failed keeps a raw read's error for the next read (c.err), unless it is a
// passed deadline that onDeadline clears: the caller's loop then reads again.
func (c *connReader) failed(err error) {
	if c.onDeadline != nil && errors.Is(err, os.ErrDeadlineExceeded) && c.onDeadline(c.Buffered()) {
		return
	}
	c.err = err
	if c.Buffered() == 0 {
		c.release()
	}
}

// serve calls handle after each read that brought bytes (or found the
// socket's end), all inside one raw read of the socket, until handle
// returns false or the read fails (the error is kept as readRaw keeps it).
//
// Staying inside the raw read is what saves a system call per batch: the
// runtime's poller is armed once, when serve begins, and from then on it
// notes every arrival. So once handle has relayed a batch and returns, the
// read parks at once, and wakes at once if the peer wrote meanwhile;
// readRaw instead has to try the socket after re-arming the poller (a
// read(2) that returns EAGAIN on every batch of a request-response peer).
// Each wake-up reads before handle runs, the first included (bytes that
// came before serve began woke nobody), and reads again after it until a
// read takes all the socket holds. One wake-up can stand for several
// arrivals, and a read stops short of an end of stream: on a TCP socket
// TCP_INQ says when a read left nothing, bytes or FIN, so the read that
// would return EAGAIN is not needed; elsewhere it is made.
//
// handle runs inside the callback: it must not read this socket through
// the reader's blocking methods beyond what is buffered (the raw read holds
// the socket's read lock), and the socket cannot be closed until it
// returns (see session.close). It sets want to the bytes it needs buffered
// (at most bufSize) before it asks for more.
func (c *connReader) serve(handle func() bool) {
	if c.serveFn == nil {
		c.serveFn = c.serveCallback
		_ = c.raw.Control(func(fd uintptr) { c.inq = enableInq(fd) })
	}
	c.handle, c.rerr = handle, nil
	c.serving.Store(true)
	err := c.raw.Read(c.serveFn)
	c.serving.Store(false)
	c.handle = nil
	if err == nil {
		err = c.rerr
	}
	c.rerr = nil
	if err != nil {
		c.failed(err)
	}
}

// readCallback is the raw read's callback: one read(2) into the buffer
// (borrowed now, returned before parking), false when there is nothing to
// read yet.
func (c *connReader) readCallback(fd uintptr) bool {
	if w := c.sendFirst; w != nil {
		if !w.sendAll(fd) {
			return true // readRaw sends the rest, then reads
		}
		c.sendFirst = nil
		if testHookBatchSent != nil {
			testHookBatchSent()
		}
		return false // sent; the poller wakes this read at the first reply
	}
	if c.buf == nil {
		c.buf = bufPool.Get().(*[]byte)
		c.start, c.end = 0, 0
	}
	if c.start == c.end {
		c.start, c.end = 0, 0 // empty: read into the whole buffer
	}
	c.compact(c.want)
	for {
		var m int
		var errno syscall.Errno
		if c.inq {
			m, c.left, errno = inqRead(fd, (*c.buf)[c.end:])
		} else {
			m, errno = rawRead(fd, (*c.buf)[c.end:])
			c.left = true
		}
		switch errno {
		case 0:
			if m == 0 {
				c.rerr = io.EOF
			}
			c.end += m
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if testHookEmptyRead != nil {
				testHookEmptyRead(c)
			}
			if c.Buffered() == 0 {
				c.release() // park without a buffer
			}
			return false
		default:
			c.rerr = os.NewSyscallError("read", errno)
			return true
		}
	}
}

// testHookEmptyRead, when set (tests only), runs after each read that found
// the socket empty (EAGAIN).
var testHookEmptyRead func(*connReader)

// serveCallback is serve's raw read callback: read, handle, and read on
// until a read took all the socket holds.
func (c *connReader) serveCallback(fd uintptr) bool {
	for {
		if !c.readCallback(fd) {
			return false // nothing yet: park, armed since serve began
		}
		if c.rerr != nil || !c.handle() {
			return true
		}
		if !c.left {
			return false // took all there was: what comes next wakes the poller
		}
	}
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
