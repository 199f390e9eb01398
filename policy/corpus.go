package policy

import (
	"strings"
)

// RunCorpusSQL checks one corpus statement on s: a statement ending in
// `-- bind: v1 | v2` is sent as Parse + Bind with those text values (NULL for
// a null), anything else as a simple Query.
func RunCorpusSQL(s *Session, sql string) Decision {
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
