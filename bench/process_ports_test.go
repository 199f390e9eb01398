package bench

import (
	"errors"
	"testing"
)

// A server that lost one of its ports to another process between freePort
// and its bind is started again on new ones (at most three times in all);
// any other start-up failure is returned at once.
func TestStartOnFreePortsRetriesOnlyATakenPort(t *testing.T) {
	taken := errors.New("pgtenant-spool: exited during start-up; log: admin_listen 127.0.0.1:1: Address already in use")
	calls := 0
	v, err := startOnFreePorts(func() (int, error) {
		if calls++; calls < 3 {
			return 0, taken
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 {
		t.Fatalf("after two taken ports: %d, %v, %d starts; want 7, nil, 3", v, err, calls)
	}
	calls = 0
	_, err = startOnFreePorts(func() (int, error) { calls++; return 0, taken })
	if !errors.Is(err, taken) || calls != 3 {
		t.Fatalf("ports always taken: %v after %d starts, want the error after 3", err, calls)
	}
	calls = 0
	other := errors.New("pgtenant-spool: exited during start-up; log: bad config")
	if _, err = startOnFreePorts(func() (int, error) { calls++; return 0, other }); !errors.Is(err, other) || calls != 1 {
		t.Fatalf("another failure: %v after %d starts, want it after 1", err, calls)
	}
}
