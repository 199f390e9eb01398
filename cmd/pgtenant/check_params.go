package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/tenancy"
)

// bindAfterSemicolon matches a statement line ending in `; -- bind: ...`,
// the natural way to annotate a statement in a script.
var bindAfterSemicolon = regexp.MustCompile(`(?m);[ \t]*(--[ \t]*bind:[^\n]*)$`)

// attachBindComments moves a `-- bind:` comment that follows a statement's
// semicolon on the same line into the statement, so that the splitter keeps
// it with the statement it annotates.
func attachBindComments(script string) string {
	return bindAfterSemicolon.ReplaceAllString(script, " $1\n;")
}

// bindComment matches the `-- bind: v1 | v2` comment of a statement.
var bindComment = regexp.MustCompile(`--[ \t]*bind:([^\n]*)`)

// splitBind returns stmt without its `-- bind:` comment and trailing
// semicolon, and the comment's values text; ok is false without a comment.
func splitBind(stmt string) (sql, values string, ok bool) {
	locs := bindComment.FindAllStringSubmatchIndex(stmt, -1)
	if len(locs) == 0 {
		return stmt, "", false
	}
	m := locs[len(locs)-1]
	sql = stmt[:m[0]] + stmt[m[1]:]
	sql = strings.TrimSuffix(strings.TrimSpace(sql), ";")
	return strings.TrimSpace(sql), strings.TrimSpace(stmt[m[2]:m[3]]), true
}

// stripBind returns stmt without its `-- bind:` comment, for display.
func stripBind(stmt string) string {
	sql, values, ok := splitBind(stmt)
	if !ok {
		return stmt
	}
	return sql + " -- bind: " + values
}

// checkStatement decides one statement of a `check -f` / `--sql` script.
// A statement with a `-- bind:` comment is checked as Parse + Bind with those
// values. A statement with $n parameters and no values is checked as the
// extended protocol would run it: when it is allowed for some values, cond
// names the parameters that must be bound to the caller's account (e.g.
// "allowed if $1 is bound to your account").
func checkStatement(sess *policy.Session, account, stmt string) (tenancy.Decision, string) {
	if sql, values, ok := splitBind(stmt); ok {
		return policy.RunCorpusSQL(sess, sql+" -- bind: "+values), ""
	}
	d := sess.CheckQuery(stmt)
	if d.Allow {
		return d, ""
	}
	sc, err := parser.Scan(stmt)
	if err != nil || sc.MaxParam == 0 {
		return d, ""
	}
	return checkParameterised(sess, account, strings.TrimSuffix(strings.TrimSpace(stmt), ";"), sc.MaxParam)
}

// maxParamSearch bounds the parameters whose scalar/array form is searched.
const maxParamSearch = 8

// checkParameterised parses sql (with n parameters) as an unnamed statement
// and finds values that make the Bind allowed: each parameter bound to the
// account, or to an array holding only the account. Parameters whose
// value matters are then those for which another account is refused.
func checkParameterised(sess *policy.Session, account, sql string, n int) (tenancy.Decision, string) {
	d := sess.CheckParse("", sql, nil)
	if !d.Allow {
		return d, ""
	}
	other := "0"
	if account == other {
		other = "1"
	}
	scalar, array := account, "{"+account+"}"
	values := make([][]byte, n)
	var found []string
	var last tenancy.Decision
	searched := min(n, maxParamSearch)
	for mask := 0; mask < 1<<searched; mask++ {
		forms := make([]string, n)
		for i := range forms {
			forms[i] = scalar
			if i < searched && mask&(1<<i) != 0 {
				forms[i] = array
			}
			values[i] = []byte(forms[i])
		}
		last = sess.CheckBind("", nil, values)
		if last.Allow {
			found = forms
			break
		}
	}
	if found == nil {
		last.Statement = d.Statement
		if len(last.Tables) == 0 {
			last.Tables = d.Tables
		}
		last.Message += fmt.Sprintf(" (for any value of the %d parameter(s), including your account)", n)
		return last, ""
	}
	var pins []string
	for i := range found {
		for j := range values {
			values[j] = []byte(found[j])
		}
		values[i] = []byte(other)
		if !sess.CheckBind("", nil, values).Allow {
			p := fmt.Sprintf("$%d", i+1)
			if found[i] == array {
				p += " (as an array)"
			}
			pins = append(pins, p)
		}
	}
	if len(pins) == 0 {
		return d, ""
	}
	verb := "is"
	if len(pins) > 1 {
		verb = "are"
	}
	return d, fmt.Sprintf("allowed if %s %s bound to your account", strings.Join(pins, " and "), verb)
}
