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

// DefaultDenyReasons are the policy reason codes always reported as
// themselves (tenancy.Decision.Reason, plus the proxy's own denials).
var DefaultDenyReasons = []string{
	"unscoped_table", "wrong_account", "unknown_table", "global_write", "tenant_column_write",
	"insert_tenant", "insert_source", "upsert_unscoped", "merge", "merge_source", "current_of",
	"ddl", "catalog_write", "forbidden_schema", "stats_view", "function", "operator", "type",
	"setting", "tenant_setting", "search_path", "discard_all", "copy_from", "copy_file",
	"listen_notify", "two_phase", "explain_analyze", "prepare", "bind", "statement",
	"multi_statement", "unsupported", "parse_error", "too_long", "too_large", "too_complex",
	"function_call", "audit_unavailable",
}

// DefaultRejectReasons are the client rejection codes always reported as
// themselves (the proxy's clientError reasons; auth failures are "auth_" +
// the verifier's reason).
var DefaultRejectReasons = []string{
	"auth_missing_token", "auth_malformed", "auth_bad_signature", "auth_alg_not_allowed",
	"auth_expired", "auth_not_yet_valid", "auth_wrong_issuer", "auth_wrong_audience",
	"auth_missing_claim", "auth_bad_claim", "auth_unknown_kid", "auth_too_large",
	"unknown_region", "region_unreachable", "backend_error", "refused_parameter",
	"unsupported_protocol", "protocol", "tls_required", "too_many_connections", "tenant_limit",
	"startup_timeout", "idle_timeout", "shutdown", "internal",
}

// extraCodes is how many well-formed codes outside the allowlists a label may learn.
const extraCodes = 32
