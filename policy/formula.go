package policy

import (
	"fmt"
	"strings"
)

// SlotKind says where a per-execution value comes from.
type SlotKind uint8

// Slot kinds.
const (
	SlotLit        SlotKind = iota + 1 // literal #Index of the statement text
	SlotLitArray                       // literal #Index is an array text '{...}'
	SlotParam                          // parameter $Index
	SlotParamArray                     // parameter $Index holds an array
)

// Slot is one value that must equal the caller's account at execution.
type Slot struct {
	Kind  SlotKind
	Index int
	// Type is the tenant column's type (bigint, integer, smallint, text, uuid).
	Type string
}

// formula is a tenant-independent condition over slots: the analysis of a
// statement is "allow iff every requirement's formula holds".
type formula struct {
	op   byte // 't' true, 's' slot, '&' and, '|' or
	kids []*formula
	slot Slot
}

var fTrue = &formula{op: 't'}

func fSlot(s Slot) *formula { return &formula{op: 's', slot: s} }

// fAnd returns the conjunction; nil (no pin) if any kid is nil.
func fAnd(kids ...*formula) *formula {
	var out []*formula
	for _, k := range kids {
		if k == nil {
			return nil
		}
		if k.op == 't' {
			continue
		}
		out = append(out, k)
	}
	switch len(out) {
	case 0:
		return fTrue
	case 1:
		return out[0]
	}
	return &formula{op: '&', kids: out}
}

// fOr returns the disjunction of the non-nil kids; nil if there are none.
func fOr(kids ...*formula) *formula {
	var out []*formula
	for _, k := range kids {
		if k == nil {
			continue
		}
		if k.op == 't' {
			return fTrue
		}
		out = append(out, k)
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return &formula{op: '|', kids: out}
}

func (f *formula) size() int {
	if f == nil {
		return 0
	}
	n := 1
	for _, k := range f.kids {
		n += k.size()
	}
	return n
}

func (f *formula) hasParams() bool {
	if f == nil {
		return false
	}
	if f.op == 's' {
		return f.slot.Kind == SlotParam || f.slot.Kind == SlotParamArray
	}
	for _, k := range f.kids {
		if k.hasParams() {
			return true
		}
	}
	return false
}

// tri is a three-valued truth value (params unknown at Parse).
type tri uint8

const (
	no tri = iota
	yes
	unknown
)

// eval evaluates f over the slot values of env.
func (f *formula) eval(env *slotEnv) tri {
	switch f.op {
	case 't':
		return yes
	case 's':
		return evalSlot(env, f.slot)
	case '&':
		res := yes
		for _, k := range f.kids {
			switch k.eval(env) {
			case no:
				return no
			case unknown:
				res = unknown
			}
		}
		return res
	case '|':
		res := no
		for _, k := range f.kids {
			switch k.eval(env) {
			case yes:
				return yes
			case unknown:
				res = unknown
			}
		}
		return res
	}
	return no
}

// maxFormulaNodes bounds a statement's requirements (a 1 MiB bulk INSERT has
// at most a few hundred thousand literal slots).
const maxFormulaNodes = 500000

// String renders f (for tests and diagnostics).
func (f *formula) String() string {
	if f == nil {
		return "nil"
	}
	switch f.op {
	case 't':
		return "true"
	case 's':
		return fmt.Sprintf("slot(%d,%d,%s)", f.slot.Kind, f.slot.Index, f.slot.Type)
	}
	parts := make([]string, len(f.kids))
	for i, k := range f.kids {
		parts[i] = k.String()
	}
	return "(" + strings.Join(parts, " "+string(f.op)+" ") + ")"
}
