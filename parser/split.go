package parser

import "strings"

// SplitScript splits a SQL script into statements the way psql sends them:
// at semicolons outside quotes, dollar quotes, comments and parentheses.
// Lines starting with a backslash (psql meta-commands) are skipped. Empty
// statements are dropped; statement text is trimmed.
func SplitScript(script string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		s := strings.TrimSpace(cur.String())
		if s != "" && !onlyComments(s) {
			out = append(out, s)
		}
		cur.Reset()
	}
	n := len(script)
	depth := 0
	lineStart := true
	for i := 0; i < n; {
		c := script[i]
		if lineStart && c == '\\' && strings.TrimSpace(cur.String()) == "" {
			for i < n && script[i] != '\n' {
				i++
			}
			continue
		}
		lineStart = c == '\n'
		start := i
		switch {
		case isCommentStart(script, i):
			i = commentEnd(script, i)
		case c == '\'':
			backslash := i > 0 && (script[i-1] == 'e' || script[i-1] == 'E') && (i < 2 || !isIdentCont(script[i-2]))
			i = scanQuoted(script, i, '\'', backslash)
		case c == '"':
			i = scanQuoted(script, i, '"', false)
		case c == '$' && (i == 0 || !isIdentCont(script[i-1])):
			if end, ok := scanDollar(script, i); ok {
				i = end
			} else {
				i++
			}
		case isIdentStart(c):
			for i < n && isIdentCont(script[i]) {
				i++
			}
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth > 0 {
				depth--
			}
			i++
		case c == ';' && depth == 0:
			cur.WriteByte(';')
			i++
			flush()
			continue
		default:
			i++
		}
		cur.WriteString(script[start:i])
	}
	flush()
	return out
}

func onlyComments(s string) bool {
	return strings.Trim(stripComments(s), " \t\r\n;") == ""
}

func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case s[i] == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case s[i] == '/' && i+1 < len(s) && s[i+1] == '*':
			j := strings.Index(s[i+2:], "*/")
			if j < 0 {
				return b.String()
			}
			i += j + 4
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String()
}
