package audit

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Event ids are RFC 9562 version 7 ids carrying the time they were made,
// each greater than the one made before it, and unique across sessions
// making them at once.
func TestEventIDs(t *testing.T) {
	before := time.Now().Add(-time.Millisecond)
	ahead := time.UnixMilli(lastV7.Load() >> 12) // ids made before (other tests) may have run ahead
	const sessions, each = 8, 5000
	ids := make([][]uuid.UUID, sessions)
	var wg sync.WaitGroup
	for g := range ids {
		wg.Go(func() {
			for range each {
				id, err := newEventID()
				if err != nil {
					t.Error(err)
					return
				}
				ids[g] = append(ids[g], id)
			}
		})
	}
	wg.Wait()
	// Past 4096 ids in one millisecond the sub-millisecond bits carry into
	// the milliseconds: ids may run ahead of the clock by that much.
	after := time.Now()
	if ahead.After(after) {
		after = ahead
	}
	after = after.Add(time.Duration(sessions*each/4096+1) * time.Millisecond)
	seen := make(map[uuid.UUID]bool, sessions*each)
	for g, got := range ids {
		for i, id := range got {
			if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
				t.Fatalf("%s: version %d, variant %s; want 7, RFC 4122", id, id.Version(), id.Variant())
			}
			sec, nsec := id.Time().UnixTime()
			if at := time.Unix(sec, nsec); at.Before(before) || at.After(after) {
				t.Fatalf("%s carries %s, not a time between %s and %s", id, at, before, after)
			}
			if i > 0 && bytes.Compare(got[i-1][:], id[:]) >= 0 {
				t.Fatalf("session %d: %s came after %s", g, id, got[i-1])
			}
			if seen[id] {
				t.Fatalf("%s made twice", id)
			}
			seen[id] = true
		}
	}
}

// Ids made one after another sort in that order even when the clock does
// not move between them (the sub-millisecond bits count on).
func TestEventIDsIncreaseWithinAMillisecond(t *testing.T) {
	prev, err := newEventID()
	if err != nil {
		t.Fatal(err)
	}
	for range 10000 {
		id, err := newEventID()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("%s came after %s", id, prev)
		}
		prev = id
	}
}
