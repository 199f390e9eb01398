package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// bodyReader is a msgReader over data that then reports EOF.
func bodyReader(data []byte) *msgReader {
	return &msgReader{r: newConnReader(&sentConn{in: bytes.NewReader(data)}), maxLen: 64 << 20}
}

func header(t byte, bodyLen int) []byte {
	h := []byte{t, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(h[1:], uint32(bodyLen+4))
	return h
}

// A header that announces a large body must not make the proxy allocate
// it before the bytes arrive: one authenticated client could otherwise pin
// MaxMessageBytes (64 MiB) per connection with 5 bytes.
func TestReadBodyGrowsWithTheData(t *testing.T) {
	m := bodyReader(append(header('Q', 60<<20), "SELECT 1"...))
	_, n, err := m.header()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.readBody(n); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("readBody of a body that never comes: %v, want unexpected EOF", err)
	}
	if c := cap(m.body); c > 2*bodyChunk {
		t.Errorf("readBody allocated %d bytes for 8 bytes received", c)
	}
}

// Bodies of every size around the growth steps come back exactly, and the
// buffer is reused for a following smaller body.
func TestReadBodyExact(t *testing.T) {
	for _, size := range []int{0, 1, bodyChunk - 1, bodyChunk, bodyChunk + 1, 3*bodyChunk + 7, 1 << 20} {
		want := make([]byte, size)
		for i := range want {
			want[i] = byte(i*7 + size)
		}
		data := append(header('P', size), want...)
		data = append(append(data, header('Q', 2)...), 'x', 0)
		m := bodyReader(data)
		_, n, err := m.header()
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.readBody(n)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("size %d: body differs (err %v)", size, err)
		}
		_, n, err = m.header()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := m.readBody(n); err != nil || string(got) != "x\x00" {
			t.Fatalf("size %d: next body %q, %v", size, got, err)
		}
	}
}
