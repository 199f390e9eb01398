package policy

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/pgtenant/pgtenant/parser"
)

// cache is a bounded LRU of analyses keyed by (catalog, statement shape).
// Entries hold tenant-independent analyses only: the values that must equal
// the caller's account are re-checked on every execution.
type cache struct {
	mu           sync.Mutex
	max          int
	ll           *list.List
	m            map[cacheKey]*list.Element
	hits, misses atomic.Uint64
}

type cacheKey struct {
	cat   *Catalog
	shape string
}

type cacheEntry struct {
	key cacheKey
	an  *analysis
}

func newCache(max int) *cache {
	return &cache{max: max, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

// get returns the analysis cached for the shape if its fixed literals still
// hold the same text in sql.
func (c *cache) get(cat *Catalog, shape, sql string, sc *parser.Scanned) *analysis {
	if c.max <= 0 {
		c.misses.Add(1)
		return nil
	}
	c.mu.Lock()
	el, ok := c.m[cacheKey{cat, shape}]
	var an *analysis
	if ok {
		c.ll.MoveToFront(el)
		an = el.Value.(*cacheEntry).an
	}
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return nil
	}
	for _, f := range an.fixed {
		if f.index >= len(sc.Lits) {
			c.misses.Add(1)
			return nil
		}
		l := sc.Lits[f.index]
		if sql[l.Start:l.End] != f.text {
			c.misses.Add(1)
			return nil
		}
	}
	c.hits.Add(1)
	return an
}

func (c *cache) put(cat *Catalog, shape string, an *analysis) {
	if c.max <= 0 {
		return
	}
	k := cacheKey{cat, shape}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		el.Value.(*cacheEntry).an = an
		c.ll.MoveToFront(el)
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{key: k, an: an})
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.m, old.Value.(*cacheEntry).key)
	}
}
