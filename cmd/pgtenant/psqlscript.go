package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	pgerr "github.com/pganalyze/pg_query_go/v6/parser"
)

// blankMetaCommands returns script with every psql meta-command blanked out
// the way psql skips it: a backslash outside quotes, dollar quotes and
// comments starts a meta-command that runs to the end of its line (pg_dump
// writes `\restrict KEY` and `\unrestrict KEY` since PostgreSQL 15.14, 16.10
// and 17.6). The blanked bytes become spaces, so byte offsets and line
// numbers of the result match the input's.
func blankMetaCommands(script string) string {
	b := []byte(script)
	n := len(b)
	for i := 0; i < n; {
		c := b[i]
		switch {
		case c == '\\':
			for i < n && b[i] != '\n' {
				b[i] = ' '
				i++
			}
		case c == '-' && i+1 < n && b[i+1] == '-':
			for i < n && b[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < n && b[i+1] == '*':
			i = blockCommentEnd(b, i)
		case c == '\'':
			escapes := i > 0 && (b[i-1] == 'e' || b[i-1] == 'E') && (i < 2 || !identByte(b[i-2]))
			i = quoteEnd(b, i, '\'', escapes)
		case c == '"':
			i = quoteEnd(b, i, '"', false)
		case c == '$' && (i == 0 || !identByte(b[i-1])):
			i = dollarEnd(b, i)
		case identByte(c):
			for i < n && identByte(b[i]) {
				i++
			}
		default:
			i++
		}
	}
	return string(b)
}

func identByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// blockCommentEnd returns the index after the (nested) comment starting at i.
func blockCommentEnd(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch {
		case b[i] == '/' && i+1 < len(b) && b[i+1] == '*':
			depth++
			i += 2
		case b[i] == '*' && i+1 < len(b) && b[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// quoteEnd returns the index after the quoted token starting at i; a doubled
// quote stays inside, and so does a backslash-escaped one in an E-string (E'...').
func quoteEnd(b []byte, i int, q byte, escapes bool) int {
	for i++; i < len(b); i++ {
		switch {
		case escapes && b[i] == '\\':
			i++
		case b[i] == q:
			if i+1 < len(b) && b[i+1] == q {
				i++
				continue
			}
			return i + 1
		}
	}
	return i
}

// dollarEnd returns the index after the dollar-quoted string starting at i,
// or i+1 when the $ starts no dollar quote (e.g. a $1 parameter).
func dollarEnd(b []byte, i int) int {
	j := i + 1
	for j < len(b) && b[j] != '$' {
		if !identByte(b[j]) || (j == i+1 && b[j] >= '0' && b[j] <= '9') {
			return i + 1
		}
		j++
	}
	if j >= len(b) {
		return i + 1
	}
	tag := string(b[i : j+1])
	end := strings.Index(string(b[j+1:]), tag)
	if end < 0 {
		return len(b)
	}
	return j + 1 + end + len(tag)
}

// schemaError names file and line of a parse error the C parser reported at
// a character position of script; other errors are only prefixed with file.
func schemaError(file, script string, err error) error {
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Cursorpos <= 0 {
		return fmt.Errorf("%s: %w", file, err)
	}
	line, col := lineCol(script, pe.Cursorpos)
	return fmt.Errorf("%s:%d:%d: %s", file, line, col, pe.Message)
}

// lineCol converts a 1-based character position into a 1-based line and column.
func lineCol(s string, pos int) (line, col int) {
	line, col = 1, 1
	for i := 0; i < len(s) && pos > 1; {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
		i += size
		pos--
	}
	return line, col
}
