package parser

import (
	"errors"
	"strconv"
	"strings"
)

// Template is the rewrite of one statement shape: the deparsed text with a
// hole where each abstracted literal (LitInt, LitString) of the source goes.
// It holds no literal of any text it was built from, so one Template serves
// every text (and every tenant) of the shape.
type Template struct {
	// parts[i] precedes hole i; the last part follows the last hole.
	parts []string
	// lits[i] is the index (among the source's Lits) of the literal for hole i.
	lits []int
}

// Fill returns the rewritten text for sql, whose scan sc has the template's shape.
func (t *Template) Fill(sql string, sc *Scanned) (string, bool) {
	var b strings.Builder
	for i, p := range t.parts {
		b.WriteString(p)
		if i < len(t.lits) {
			li := t.lits[i]
			if li >= len(sc.Lits) {
				return "", false
			}
			l := sc.Lits[li]
			b.WriteString(sql[l.Start:l.End])
		}
	}
	return b.String(), true
}

// errMarker is returned when the deparsed text lost or reordered the holes
// in a way Fill cannot follow.
var errMarker = errors.New("rewrite: literal markers not found in the deparsed text")

// RewriteTemplate rewrites the shape of sql (see Rewrite): every abstracted
// literal is replaced by a parameter numbered above the text's own before
// parsing, and those parameters become the template's holes. It fails (often
// with a syntax error) where a literal cannot stand as a parameter, e.g. in
// `interval '1 day'`; callers then rewrite the text itself.
func (p *Parser) RewriteTemplate(sql string, sc *Scanned, setting string, resolve PinResolver) (*Template, error) {
	var b strings.Builder
	copied, k := 0, sc.MaxParam
	holes := map[int]int{} // marker number -> literal index
	for i, l := range sc.Lits {
		if l.Kind != LitInt && l.Kind != LitString {
			continue
		}
		k++
		holes[k] = i
		b.WriteString(sql[copied:l.Start])
		// spaces keep the marker a token of its own (`WHERE''` must not
		// become the identifier `WHERE$1`)
		b.WriteString(" $")
		b.WriteString(strconv.Itoa(k))
		b.WriteString(" ")
		copied = l.End
	}
	b.WriteString(sql[copied:])
	out, err := p.Rewrite(b.String(), setting, resolve)
	if err != nil {
		return nil, err
	}
	t := &Template{}
	last := 0
	for _, tok := range paramTokens(out) {
		li, ok := holes[tok.n]
		if !ok {
			if tok.n > sc.MaxParam {
				return nil, errMarker
			}
			continue
		}
		t.parts = append(t.parts, out[last:tok.start])
		t.lits = append(t.lits, li)
		last = tok.end
	}
	t.parts = append(t.parts, out[last:])
	return t, nil
}

type paramTok struct{ start, end, n int }

// paramTokens finds the $n parameter tokens of a deparsed text, skipping
// quoted strings, quoted identifiers and dollar quotes.
func paramTokens(s string) []paramTok {
	var out []paramTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\'':
			e := i > 0 && (s[i-1] == 'E' || s[i-1] == 'e') && (i < 2 || !isIdentCont(s[i-2]))
			i = scanQuoted(s, i, '\'', e)
		case c == '"':
			i = scanQuoted(s, i, '"', false)
		case c == '$' && i+1 < len(s) && isDigit(s[i+1]):
			j := i + 1
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			n, err := strconv.Atoi(s[i+1 : j])
			if err == nil {
				out = append(out, paramTok{start: i, end: j, n: n})
			}
			i = j
		case c == '$':
			if end, ok := scanDollar(s, i); ok {
				i = end
			} else {
				i++
			}
		case isIdentStart(c):
			for i < len(s) && isIdentCont(s[i]) {
				i++
			}
		default:
			i++
		}
	}
	return out
}

// LiteralTemplate is a template without holes: it fills to text itself.
func LiteralTemplate(text string) *Template { return &Template{parts: []string{text}} }
