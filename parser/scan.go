package parser

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LitKind classifies a literal token found by Scan.
type LitKind uint8

// Literal kinds. Only LitInt and LitString are abstracted out of a Shape; the
// others stay verbatim in the shape and can never serve as a tenant pin.
const (
	// LitInt is an unsigned decimal integer such as 42 or 042.
	LitInt LitKind = iota + 1
	// LitString is a plain standard-conforming string in single quotes (doubled quotes escape),
	// not adjacent to another string (no continuation).
	LitString
	// LitRaw is any other literal: floats, prefixed strings (E, U&, B, X, N), dollar
	// quotes, non-decimal or underscored numbers, continued strings.
	LitRaw
)

// Lit is one literal token: its kind and byte range [Start, End) in the text.
type Lit struct {
	Kind       LitKind
	Start, End int
}

// Screen limits applied by Scan (the crashers in POLICY.md 1.6 exceed them).
const (
	// MaxOperatorRun caps consecutive operator characters (PostgreSQL operators
	// are at most 63 bytes; the lexer re-scans long runs quadratically).
	MaxOperatorRun = 63
	// MaxDepth caps parenthesis and bracket nesting.
	MaxDepth = 256
	// MaxExprDepth caps the potential expression nesting: the number of tokens
	// that may chain into one expression along the current nesting path.
	MaxExprDepth = 5000
	// MaxChains caps JOIN and set-operation keywords (each nests the tree one level).
	MaxChains = 1000
)

// ErrTooComplex is wrapped by every screen rejection.
var ErrTooComplex = errors.New("statement too complex")

// Scanned is the result of Scan: the statement's shape (its text with abstracted
// literals replaced by a marker), its literal tokens and its highest $n.
type Scanned struct {
	// Shape is the base of the cache key (the policy adds the literals it
	// did not prove to be tenant values): identical for texts that differ only in
	// abstracted literals of the same kind.
	Shape string
	// Lits lists every literal token in order of appearance.
	Lits []Lit
	// MaxParam is the highest $n parameter number referenced.
	MaxParam int
}

// Scan lexes sql the way PostgreSQL does with standard_conforming_strings on
// (quotes, dollar quotes, E-strings, nested comments, numbers) and returns
// its shape and literals. It also screens the text: an error (wrapping
// ErrTooComplex) means the statement must never reach the C parser.
func Scan(sql string) (*Scanned, error) {
	s := &Scanned{Lits: make([]Lit, 0, 8)}
	var shape strings.Builder
	shape.Grow(len(sql))
	copied := 0 // sql[copied:] not yet written to shape
	// per-nesting-level token counters
	var levels [MaxDepth + 2]int
	depth := 0
	pathSum := 0 // sum of levels[0..depth-1]
	chains := 0
	lastWasString := false
	rawNext := false // the next string follows UESCAPE: it changes how another literal decodes
	n := len(sql)
	tok := func() error {
		levels[depth]++
		if pathSum+levels[depth]+depth > MaxExprDepth {
			return fmt.Errorf("%w: expression nesting over %d", ErrTooComplex, MaxExprDepth)
		}
		return nil
	}
	addLit := func(kind LitKind, start, end int) {
		if rawNext {
			kind, rawNext = LitRaw, false
		}
		if kind == LitString && lastWasString {
			kind = LitRaw
			if k := len(s.Lits) - 1; k >= 0 && s.Lits[k].Kind == LitString {
				s.Lits[k].Kind = LitRaw
			}
		}
		s.Lits = append(s.Lits, Lit{Kind: kind, Start: start, End: end})
	}
	i := 0
	for i < n {
		c := sql[i]
		isString := false
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
			continue
		case isCommentStart(sql, i):
			i = commentEnd(sql, i)
			continue
		case c == '\'':
			end := scanQuoted(sql, i, '\'', false)
			kind := LitString
			if end == n && (end-i < 2 || sql[end-1] != '\'' || !closedQuote(sql[i:end])) {
				kind = LitRaw // unterminated: never share a shape with a terminated string
			}
			addLit(kind, i, end)
			i = end
			isString = true
			if err := tok(); err != nil {
				return nil, err
			}
		case c == '"':
			i = scanQuoted(sql, i, '"', false)
			if err := tok(); err != nil {
				return nil, err
			}
		case c == '$':
			j := i + 1
			for j < n && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			if j > i+1 {
				if p, err := strconv.Atoi(sql[i+1 : j]); err == nil && p > s.MaxParam {
					s.MaxParam = p
				}
				i = j
			} else if end, ok := scanDollar(sql, i); ok {
				addLit(LitRaw, i, end)
				i = end
				isString = true
			} else {
				i++
			}
			if err := tok(); err != nil {
				return nil, err
			}
		case isDigit(c) || (c == '.' && i+1 < n && isDigit(sql[i+1])):
			start := i
			kind := LitInt
			for i < n && isDigit(sql[i]) {
				i++
			}
			if i < n && (sql[i] == '.' || sql[i] == 'e' || sql[i] == 'E' || sql[i] == '_' || isIdentStart(sql[i])) {
				kind = LitRaw
				for i < n && (isIdentCont(sql[i]) || sql[i] == '.' ||
					((sql[i] == '+' || sql[i] == '-') && (sql[i-1] == 'e' || sql[i-1] == 'E'))) {
					i++
				}
			}
			addLit(kind, start, i)
			if err := tok(); err != nil {
				return nil, err
			}
		case isIdentStart(c):
			start := i
			for i < n && isIdentCont(sql[i]) {
				i++
			}
			word := sql[start:i]
			if i < n && sql[i] == '\'' && len(word) == 1 && strings.ContainsRune("eEbBxXnN", rune(word[0])) {
				end := scanQuoted(sql, i, '\'', word[0] == 'e' || word[0] == 'E')
				addLit(LitRaw, start, end)
				i = end
				isString = true
			} else if i+1 < n && sql[i] == '&' && (word == "u" || word == "U") && (sql[i+1] == '\'' || sql[i+1] == '"') {
				q := sql[i+1]
				end := scanQuoted(sql, i+1, q, false)
				if q == '\'' {
					addLit(LitRaw, start, end)
					isString = true
				}
				i = end
			} else {
				switch keyword(word) {
				case kwUescape:
					rawNext = true
				case kwAndOr:
					levels[depth] = 0
					lastWasString = false
					continue
				case kwChain:
					chains++
					if chains > MaxChains {
						return nil, fmt.Errorf("%w: more than %d joins or set operations", ErrTooComplex, MaxChains)
					}
				}
			}
			if err := tok(); err != nil {
				return nil, err
			}
		case isOpChar(c):
			start := i
			for i < n && isOpChar(sql[i]) {
				if sql[i] == '-' && i+1 < n && sql[i+1] == '-' || sql[i] == '/' && i+1 < n && sql[i+1] == '*' {
					break
				}
				i++
			}
			if i == start { // a comment starts here; loop again
				i++
			}
			if i-start > MaxOperatorRun {
				return nil, fmt.Errorf("%w: operator run of %d characters", ErrTooComplex, i-start)
			}
			for k := start; k < i; k++ {
				if err := tok(); err != nil {
					return nil, err
				}
			}
		case c == '(' || c == '[':
			if err := tok(); err != nil {
				return nil, err
			}
			if depth >= MaxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d", ErrTooComplex, MaxDepth)
			}
			pathSum += levels[depth]
			depth++
			levels[depth] = 0
			i++
		case c == ')' || c == ']':
			if depth > 0 {
				depth--
				pathSum -= levels[depth]
			}
			i++
		case c == ',' || c == ';':
			levels[depth] = 0
			i++
		default:
			i++
			if err := tok(); err != nil {
				return nil, err
			}
		}
		lastWasString = isString
	}
	// build the shape from the literal list
	for _, l := range s.Lits {
		if l.Kind != LitInt && l.Kind != LitString {
			continue
		}
		shape.WriteString(sql[copied:l.Start])
		shape.WriteByte(0)
		shape.WriteByte(byte('0' + l.Kind))
		copied = l.End
	}
	shape.WriteString(sql[copied:])
	s.Shape = shape.String()
	return s, nil
}

// LitValue returns the value of an abstracted literal: the digits of a LitInt
// or the unescaped content of a LitString. ok is false for LitRaw.
func LitValue(sql string, l Lit) (string, bool) {
	switch l.Kind {
	case LitInt:
		return sql[l.Start:l.End], true
	case LitString:
		body := sql[l.Start+1 : l.End]
		if !strings.HasSuffix(body, "'") {
			return "", false
		}
		body = body[:len(body)-1]
		if strings.Contains(body, "''") {
			body = strings.ReplaceAll(body, "''", "'")
		}
		return body, true
	}
	return "", false
}

// LitAt returns the index of the literal whose token starts at loc (a
// pg_query node location), or -1.
func (s *Scanned) LitAt(loc int) int {
	lo, hi := 0, len(s.Lits)
	for lo < hi {
		m := (lo + hi) / 2
		if s.Lits[m].Start < loc {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(s.Lits) && s.Lits[lo].Start == loc {
		return lo
	}
	return -1
}

// Normalize returns sql with every literal (of any kind) replaced by $k, numbered
// after the highest parameter the text already uses (for the audit trail).
func (s *Scanned) Normalize(sql string) string {
	var b strings.Builder
	b.Grow(len(sql))
	copied, k := 0, s.MaxParam
	for _, l := range s.Lits {
		k++
		b.WriteString(sql[copied:l.Start])
		b.WriteString("$")
		b.WriteString(strconv.Itoa(k))
		copied = l.End
	}
	b.WriteString(sql[copied:])
	return b.String()
}

// scanQuoted returns the end (exclusive) of a quoted token starting at sql[i] == q.
// Doubled quotes escape; with backslash set, \x escapes too (E-strings).
func scanQuoted(sql string, i int, q byte, backslash bool) int {
	n := len(sql)
	i++
	for i < n {
		switch sql[i] {
		case '\\':
			if backslash {
				i += 2
				continue
			}
		case q:
			if i+1 < n && sql[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return n
}

// closedQuote reports whether a quoted token q (starting with its quote)
// is terminated, i.e. ends with an odd run of closing quotes.
func closedQuote(q string) bool {
	run := 0
	for i := len(q) - 1; i > 0 && q[i] == q[0]; i-- {
		run++
	}
	return run%2 == 1
}

// scanDollar recognises a dollar-quoted string at sql[i] == '$'.
func scanDollar(sql string, i int) (int, bool) {
	j := i + 1
	if j < len(sql) && isIdentStart(sql[j]) {
		for j < len(sql) && isIdentCont(sql[j]) && sql[j] != '$' {
			j++
		}
	}
	if j >= len(sql) || sql[j] != '$' {
		return 0, false
	}
	tag := sql[i : j+1]
	if k := strings.Index(sql[j+1:], tag); k >= 0 {
		return j + 1 + k + len(tag), true
	}
	return len(sql), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

var identStart, identCont = func() (start, cont [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		start[c] = b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b >= 0x80
		cont[c] = start[c] || isDigit(b) || b == '$'
	}
	return
}()

func isIdentStart(c byte) bool { return identStart[c] }

func isIdentCont(c byte) bool { return identCont[c] }

var opChars = func() (t [256]bool) {
	for _, c := range []byte("~!@#^&|`?+-*/%<>=") {
		t[c] = true
	}
	return t
}()

func isOpChar(c byte) bool { return opChars[c] }

// Keywords the screen cares about.
const (
	kwNone = iota
	kwAndOr
	kwChain
	kwUescape
)

// keyword classifies a word without allocating.
func keyword(w string) int {
	var kw string
	var k int
	switch len(w) {
	case 2:
		kw, k = "or", kwAndOr
	case 3:
		kw, k = "and", kwAndOr
	case 4:
		kw, k = "join", kwChain
	case 5:
		kw, k = "union", kwChain
	case 6:
		kw, k = "except", kwChain
	case 7:
		kw, k = "uescape", kwUescape
	case 9:
		kw, k = "intersect", kwChain
	default:
		return kwNone
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != kw[i] {
			return kwNone
		}
	}
	return k
}

// isCommentStart reports whether a comment (-- or /*) starts at s[i].
func isCommentStart(s string, i int) bool {
	return i+1 < len(s) && (s[i] == '-' && s[i+1] == '-' || s[i] == '/' && s[i+1] == '*')
}

// commentEnd returns the index just past the comment starting at s[i]: a
// line comment ends at a newline or carriage return (as PostgreSQL's lexer
// reads it), a block comment at its matching */ (they nest), or at the end.
func commentEnd(s string, i int) int {
	n := len(s)
	if s[i] == '-' {
		for i < n && s[i] != '\n' && s[i] != '\r' {
			i++
		}
		return i
	}
	nest := 0
	for i < n {
		switch {
		case s[i] == '/' && i+1 < n && s[i+1] == '*':
			nest++
			i += 2
		case s[i] == '*' && i+1 < n && s[i+1] == '/':
			nest--
			i += 2
			if nest == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}
