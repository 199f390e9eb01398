package proxy

import (
	"testing"
	"unsafe"
)

// An idle client holds one session: at 1,025 bytes it would take the
// allocator's next size class (1,152), 128 bytes more per idle client
// against issue 13's bound of 8 KiB (TestFloodIdleClients).
func TestSessionFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 1024 {
		t.Fatalf("session is %d bytes, want <= 1024: group its small fields (bools, int32s) together", n)
	}
}
