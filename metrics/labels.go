package metrics

import (
	"regexp"
	"sync"
)

// otherLabel replaces any label value outside a bounded set.
const otherLabel = "other"

// codePattern is the shape of a reason code admitted at run time.
var codePattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// boundedLabel maps free-form values onto a bounded set: the allowlist, plus at
// most extra well-formed codes first seen at run time; the rest become "other".
type boundedLabel struct {
	mu      sync.RWMutex
	known   map[string]struct{}
	learnt  int
	extra   int
	pattern *regexp.Regexp
}

func newBoundedLabel(allow []string, extra int, pattern *regexp.Regexp) *boundedLabel {
	b := &boundedLabel{known: make(map[string]struct{}, len(allow)+1), extra: extra, pattern: pattern}
	for _, v := range allow {
		b.known[v] = struct{}{}
	}
	b.known[otherLabel] = struct{}{}
	return b
}

// value returns v when it belongs to the set (admitting it if there is room),
// else "other".
func (b *boundedLabel) value(v string) string {
	b.mu.RLock()
	_, ok := b.known[v]
	b.mu.RUnlock()
	if ok {
		return v
	}
	if b.extra == 0 || b.pattern == nil || !b.pattern.MatchString(v) {
		return otherLabel
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.known[v]; ok {
		return v
	}
	if b.learnt >= b.extra {
		return otherLabel
	}
	b.learnt++
	b.known[v] = struct{}{}
	return v
}

// DefaultDenyReasons are the policy reason codes always reported as themselves.
var DefaultDenyReasons = []string{
	"unscoped_table", "wrong_tenant", "unknown_table", "global_write",
	"tenant_column_change", "insert_columns", "ddl", "utility", "forbidden_schema",
	"forbidden_function", "forbidden_relation", "setting", "role", "copy", "listen_notify",
	"select_into", "explain_analyze", "lock", "transaction", "function_call",
	"parse_error", "too_long", "too_deep", "audit_unavailable",
}

// DefaultRejectReasons are the client rejection codes always reported as themselves.
var DefaultRejectReasons = []string{
	"no_token", "bad_token", "expired_token", "unknown_region", "backend_unavailable",
	"startup_parameter", "tls_required", "too_many_connections", "startup_timeout",
	"protocol", "shutting_down",
}

// extraCodes is how many well-formed codes outside the allowlists a label may learn.
const extraCodes = 32
