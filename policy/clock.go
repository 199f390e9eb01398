package policy

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// clockMap is a bounded map from cacheKey to V, evicted in CLOCK order (an
// approximation of least recently used): the policy's analyses and rewrite
// mode's templates.
//
// A hit takes the lock shared and marks its entry used with an atomic
// store; only put takes it exclusively. Every session looks up every
// statement here, and an exclusive lock per hit (to move the entry to the
// front of an LRU list) was contended with 64 sessions on two cores: a
// session preempted while holding it stalled all the others.
type clockMap[V any] struct {
	mu  sync.RWMutex
	max int
	ll  *list.List // of *clockEntry[V]; eviction looks at the back
	m   map[cacheKey]*list.Element
}

type clockEntry[V any] struct {
	key  cacheKey
	val  V
	used atomic.Bool // looked up since eviction last passed it (CLOCK's reference bit)
}

func newClockMap[V any](max int) *clockMap[V] {
	return &clockMap[V]{max: max, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

// get returns the value cached for k (none when max is 0 or less: no
// caching).
func (c *clockMap[V]) get(k cacheKey) (V, bool) {
	if c.max <= 0 {
		var zero V
		return zero, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	el, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*clockEntry[V])
	if !e.used.Load() {
		e.used.Store(true) // no store (and no cache line written by every hit) once set
	}
	return e.val, true
}

// put caches v for k, evicting past max entries.
func (c *clockMap[V]) put(k cacheKey, v V) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		el.Value.(*clockEntry[V]).val = v
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&clockEntry[V]{key: k, val: v})
	for c.ll.Len() > c.max {
		// CLOCK: an entry looked up since the hand last passed gets a
		// second chance at the front; the first one not looked up goes.
		// Each pass clears the bit it spares, so this ends within a lap.
		old := c.ll.Back()
		if e := old.Value.(*clockEntry[V]); e.used.Load() {
			e.used.Store(false)
			c.ll.MoveToFront(old)
			continue
		}
		c.ll.Remove(old)
		delete(c.m, old.Value.(*clockEntry[V]).key)
	}
}

// len returns the number of entries.
func (c *clockMap[V]) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ll.Len()
}
