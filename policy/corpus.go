package policy

import (
	"regexp"
	"strings"

	"github.com/pgtenant/pgtenant/tenancy"
)

// prepareName matches a leading SQL PREPARE (not PREPARE TRANSACTION).
var prepareName = regexp.MustCompile(`(?i)^\s*prepare\s+([a-z_][a-z0-9_$]*)`)

// RunCorpusRow checks one corpus row on a session shared by the whole corpus,
// so that a later EXECUTE sees an earlier PREPARE; a PREPARE row first drops
// a statement of the same name left by an earlier row, as if each row's
// PREPARE ran in its own connection.
func RunCorpusRow(s *Session, sql string) tenancy.Decision {
	if m := prepareName.FindStringSubmatch(sql); m != nil && !strings.EqualFold(m[1], "transaction") {
		name := strings.ToLower(m[1])
		delete(s.prepared, name)
	}
	d := RunCorpusSQL(s, sql)
	s.confirmAll() // as if the server ran the row
	return d
}

// RunCorpusSQL checks one corpus statement on s: a statement ending in
// `-- bind: v1 | v2` is sent as Parse + Bind with those text values (NULL for
// a null), anything else as a simple Query.
func RunCorpusSQL(s *Session, sql string) tenancy.Decision {
	i := strings.LastIndex(sql, "-- bind:")
	if i < 0 {
		return s.CheckQuery(sql)
	}
	text := strings.TrimSpace(sql[:i])
	var values [][]byte
	for _, v := range strings.Split(sql[i+len("-- bind:"):], "|") {
		v = strings.TrimSpace(v)
		if v == "NULL" {
			values = append(values, nil)
		} else {
			values = append(values, []byte(v))
		}
	}
	d := s.CheckParse("", text, nil)
	if !d.Allow {
		return d
	}
	b := s.CheckBind("", nil, values)
	b.Statement = d.Statement
	if len(b.Tables) == 0 {
		b.Tables = d.Tables
	}
	return b
}
