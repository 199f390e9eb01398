package audit

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// newEventID returns a fresh UUIDv7 event id (RFC 9562): the Unix time in
// milliseconds, then 12 bits of the time within the millisecond (method 3,
// as github.com/google/uuid does), then 62 random bits. Ids never repeat
// and increase in the order they are made, as that package's are, so the
// events index grows at its right edge.
//
// It takes no lock every session shares. uuid.NewV7FromReader takes two
// per id (the package's clock, and the reader that buffers crypto/rand),
// and every statement makes two ids: with 64 sessions on two cores a
// session preempted while holding one stalled the others (both showed in
// the proxy's mutex profile). The clock is an atomic counter here, and
// the random bits come from a per-P buffer of crypto/rand (one getrandom
// per 256 ids where the kernel has no vDSO for it).
func newEventID() (uuid.UUID, error) {
	var id uuid.UUID
	r := idRandom.Get().(*bufio.Reader)
	_, err := io.ReadFull(r, id[8:])
	idRandom.Put(r)
	if err != nil {
		return uuid.Nil, fmt.Errorf("audit: event id: %w", err)
	}
	t := v7Clock()
	ms := t >> 12
	id[0], id[1], id[2], id[3], id[4], id[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	id[6] = 0x70 | byte(t>>8)&0x0f // version 7, then the sub-millisecond bits
	id[7] = byte(t)
	id[8] = id[8]&0x3f | 0x80 // the RFC 9562 variant
	return id, nil
}

// idRandom holds buffered readers of crypto/rand, one per P at most in use.
var idRandom = sync.Pool{New: func() any { return bufio.NewReaderSize(rand.Reader, 2048) }}

// lastV7 is the last id's time: milliseconds << 12 | sub-millisecond bits.
var lastV7 atomic.Int64

// v7Clock returns the time of the next id, later than every one before it:
// the clock's, or one past the last when the clock has not moved past it.
func v7Clock() int64 {
	nano := time.Now().UnixNano()
	ms := nano / int64(time.Millisecond)
	now := ms<<12 | (nano-ms*int64(time.Millisecond))>>8 // 0..3906 within the ms
	for {
		last := lastV7.Load()
		next := max(now, last+1)
		if lastV7.CompareAndSwap(last, next) {
			return next
		}
	}
}
