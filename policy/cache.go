package policy

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pgtenant/pgtenant/parser"
)

// cache is a bounded map of analyses (a clockMap). Its key is the
// statement's shape plus the text of every literal except those the
// analysis proved to be tenant value slots: only a slot's text is re-read at
// each execution, so two texts that differ in any other literal (a file
// name, a setting name, a function name spelled as a string, a regclass
// cast...) never share an analysis.
//
// The slot positions are known only after an analysis, so the cache also
// remembers, per shape, the slot positions of the last analysis of that
// shape (a template); a lookup builds the key from the template, and the key
// names the template, so a hit is always an analysis of a text that agrees
// with the looked-up one on every literal outside the slots it was analysed
// with.
type cache struct {
	entries      *clockMap[*analysis] // its max bounds the templates too
	tmu          sync.RWMutex
	templates    map[cacheKey][]int // under tmu
	hits, misses atomic.Uint64
}

type cacheKey struct {
	cat *Catalog
	key string
}

func newCache(max int) *cache {
	return &cache{entries: newClockMap[*analysis](max), templates: map[cacheKey][]int{}}
}

// cacheKeyOf builds the key of sql for the slot positions slots (sorted).
func cacheKeyOf(shape string, slots []int, sql string, sc *parser.Scanned) string {
	var b strings.Builder
	b.Grow(len(shape) + 16*len(sc.Lits))
	b.WriteString(strconv.Itoa(len(shape)))
	b.WriteByte(':')
	b.WriteString(shape)
	for _, s := range slots {
		b.WriteByte('s')
		b.WriteString(strconv.Itoa(s))
	}
	b.WriteByte('|')
	k := 0
	for i, l := range sc.Lits {
		if l.Kind != parser.LitInt && l.Kind != parser.LitString {
			continue // verbatim in the shape
		}
		if k < len(slots) && slots[k] == i {
			k++
			continue
		}
		t := sql[l.Start:l.End]
		b.WriteString(strconv.Itoa(len(t)))
		b.WriteByte(':')
		b.WriteString(t)
	}
	return b.String()
}

// get returns the analysis cached for sql, or nil.
func (c *cache) get(cat *Catalog, sql string, sc *parser.Scanned) *analysis {
	if c.entries.max <= 0 {
		c.misses.Add(1)
		return nil
	}
	c.tmu.RLock()
	slots, ok := c.templates[cacheKey{cat, sc.Shape}]
	c.tmu.RUnlock()
	if !ok {
		c.misses.Add(1)
		return nil
	}
	an, ok := c.entries.get(cacheKey{cat, cacheKeyOf(sc.Shape, slots, sql, sc)})
	if !ok {
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	return an
}

// put caches an, the analysis of sql.
func (c *cache) put(cat *Catalog, sql string, sc *parser.Scanned, an *analysis) {
	if c.entries.max <= 0 {
		return
	}
	c.tmu.Lock()
	if len(c.templates) >= c.entries.max {
		c.templates = map[cacheKey][]int{} // rare: shapes beyond the entry budget
	}
	c.templates[cacheKey{cat, sc.Shape}] = an.slots
	c.tmu.Unlock()
	c.entries.put(cacheKey{cat, cacheKeyOf(sc.Shape, an.slots, sql, sc)}, an)
}

// slotLits returns the sorted literal positions the analyses read as tenant
// values at execution (formula slots and EXECUTE arguments).
func slotLits(stmts []*StmtAnalysis) []int {
	set := map[int]bool{}
	var visit func(st *StmtAnalysis)
	var walk func(f *formula)
	walk = func(f *formula) {
		if f == nil {
			return
		}
		if f.op == 's' && (f.slot.Kind == SlotLit || f.slot.Kind == SlotLitArray) {
			set[f.slot.Index] = true
		}
		for _, k := range f.kids {
			walk(k)
		}
	}
	visit = func(st *StmtAnalysis) {
		if st == nil {
			return
		}
		for _, r := range st.Reqs {
			walk(r.F)
		}
		for _, a := range st.ExecArgs {
			if a.Lit >= 0 {
				set[a.Lit] = true
			}
		}
		visit(st.Prepared)
		visit(st.Inner)
	}
	for _, st := range stmts {
		visit(st)
	}
	out := make([]int, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}
