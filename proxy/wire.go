package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
)

// errProtocol marks a malformed or unexpected protocol message.
var errProtocol = errors.New("protocol violation")

// msgReader reads typed protocol messages (type byte + int32 length) from a
// buffered stream. Bodies can be forwarded as bytes without decoding.
type msgReader struct {
	r      *connReader
	maxLen int    // largest body accepted
	body   []byte // reused body buffer for messages that are decoded
	// atBoundary: header is waiting for the next message's first bytes.
	atBoundary bool
}

// header reads the next message's type and body length.
func (m *msgReader) header() (byte, int, error) {
	m.atBoundary = m.r.Buffered() == 0
	h, err := m.r.Peek(5)
	m.atBoundary = false
	if err != nil {
		return 0, 0, err
	}
	t := h[0]
	n := int(int32(binary.BigEndian.Uint32(h[1:5]))) - 4
	if _, err := m.r.Discard(5); err != nil {
		return 0, 0, err
	}
	if n < 0 || n > m.maxLen {
		return t, n, fmt.Errorf("%w: message %q with length %d (limit %d)", errProtocol, t, n+4, m.maxLen+4)
	}
	return t, n, nil
}

// readBody reads an n-byte body into the reused buffer. The result is valid
// until the next readBody call.
func (m *msgReader) readBody(n int) ([]byte, error) {
	if cap(m.body) >= n {
		b := m.body[:n]
		if _, err := io.ReadFull(m.r, b); err != nil {
			return nil, unexpectedEOF(err)
		}
		return b, nil
	}
	// Grow the buffer as the bytes arrive, at most doubling it, so that a
	// header announcing a huge body costs memory only once the body is
	// actually sent (a 5-byte header must not pin MaxMessageBytes).
	b := m.body[:0]
	for len(b) < n {
		k := min(n-len(b), max(len(b), bodyChunk))
		b = slices.Grow(b, k)
		got, err := io.ReadFull(m.r, b[len(b):len(b)+k])
		b = b[:len(b)+got]
		if err != nil {
			m.body = b[:0]
			return nil, unexpectedEOF(err)
		}
	}
	m.body = b
	return b, nil
}

// bodyChunk is the first allocation for a body larger than the reused buffer.
const bodyChunk = 64 << 10

// release drops an oversized body buffer so one huge message does not pin memory.
func (m *msgReader) release() {
	if cap(m.body) > 1<<20 {
		m.body = nil
	}
}

// forward copies an n-byte body to w without allocating, streaming bodies
// larger than the read buffer.
func (m *msgReader) forward(w *connWriter, n int) error {
	for n > 0 {
		if m.r.Buffered() == 0 {
			if _, err := m.r.Peek(1); err != nil {
				return unexpectedEOF(err)
			}
		}
		k := min(n, m.r.Buffered())
		b, _ := m.r.Peek(k)
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, _ = m.r.Discard(k)
		n -= k
	}
	return nil
}

// drained reports whether no further input is buffered, i.e. the peer's
// current batch is consumed and the output should be flushed.
func (m *msgReader) drained() bool { return m.r.Buffered() == 0 }

// nextBuffered reports whether the next message is wholly buffered, so
// handling it will not wait on the peer. When it is not, what was written
// for earlier messages must be flushed first: a peer that sent a complete
// message and part of the next one would otherwise wait for replies the
// relay holds back.
func (m *msgReader) nextBuffered() bool {
	size, ok := m.nextSize()
	return ok && size >= 5 && m.r.Buffered() >= size
}

// wantNext sets how many bytes the next message needs buffered (its
// header, or the whole message) for a reader that reads on for it
// (connReader.serve); false when it cannot be buffered whole (a body larger
// than the buffer, or a length no message has): it must be read the
// streaming way (header, readBody, forward).
func (m *msgReader) wantNext() bool {
	size, ok := m.nextSize()
	switch {
	case !ok:
		m.r.want = 5
		return true
	case size < 5 || size > bufSize:
		return false
	}
	m.r.want = size
	return true
}

// nextSize returns the size of the next message, type byte included, from
// its buffered header; false while the header is not buffered yet.
func (m *msgReader) nextSize() (int, bool) {
	if m.r.Buffered() < 5 {
		return 0, false
	}
	h, err := m.r.Peek(5)
	if err != nil {
		return 0, false
	}
	return int(int32(binary.BigEndian.Uint32(h[1:5]))) + 1, true
}

// writeHeader writes a message header for a body of n bytes.
func writeHeader(w *connWriter, t byte, n int) error { return w.header(t, n) }

// writeMsg writes a complete message with the given body.
func writeMsg(w *connWriter, t byte, body []byte) error {
	if err := writeHeader(w, t, len(body)); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// encode appends a pgproto3 message's wire form to w.
func encode(w io.Writer, msg pgproto3.Message) error {
	b, err := msg.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode %T: %w", msg, err)
	}
	_, err = w.Write(b)
	return err
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cstring returns the NUL-terminated string at the start of b and the rest.
func cstring(b []byte) (string, []byte, bool) {
	s, rest, ok := cstringBytes(b)
	return string(s), rest, ok
}

// cstringBytes is cstring without the copy: the bytes alias b.
func cstringBytes(b []byte) ([]byte, []byte, bool) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return nil, nil, false
}
