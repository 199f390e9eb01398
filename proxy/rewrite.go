package proxy

// Rewrite mode (policy.unscoped: rewrite) in the proxy: the policy's
// rewritten text replaces the client's in Query and Parse messages (see
// onQuery, onParse), and the rows of an allowed COPY ... FROM STDIN are
// checked as they pass (copyin.go).

// rewriteParse builds a Parse body with the same statement name and
// parameter type list (rest, as the client sent it) around a rewritten query
// text (policy.unscoped: rewrite never renumbers parameters).
func rewriteParse(name, query string, rest []byte) []byte {
	b := make([]byte, 0, len(name)+len(query)+2+len(rest))
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, query...)
	b = append(b, 0)
	return append(b, rest...)
}
