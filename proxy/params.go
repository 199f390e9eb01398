package proxy

import (
	"strings"

	"github.com/jackc/pgerrcode"
)

// startupRequest is what a client asked for in its StartupMessage, after
// pgtenant took out what it consumes itself.
type startupRequest struct {
	User     string
	Database string
	Token    string            // from the jwt parameter or options -c jwt=...
	Params   map[string]string // run-time parameters to pass to the backend
	Unknown  []string          // protocol options (_pq_.*) to report as unrecognized
}

// paramRules decides which startup parameters reach the backend.
type paramRules struct {
	tenantSetting string
	searchPath    string
	allowed       map[string]bool // lower-cased setting names passed through
}

// defaultStartupSettings are passed through from a client's startup packet:
// SPEC's list plus the harmless session settings drivers and ORMs send.
var defaultStartupSettings = []string{
	"application_name", "client_encoding", "datestyle", "timezone", "extra_float_digits",
	"intervalstyle", "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
	"client_min_messages",
}

// refusedSettings may never be set by a client: they would change who the
// session is, what it may see, or how the server lexes statements.
var refusedSettings = map[string]bool{
	"role": true, "session_authorization": true, "standard_conforming_strings": true,
	"session_replication_role": true, "row_security": true,
	"replication": true, "app.current_subject": true,
}

// safeEncodings are the client encodings (in PostgreSQL's cleaned form:
// lower-case letters and digits only, aliases included) whose multibyte
// characters never contain 0x5C (backslash). The client-only encodings SJIS,
// SHIFT_JIS_2004, BIG5, GBK, GB18030, UHC and JOHAB, under any alias, are not
// listed: with them the server could see string boundaries where pg_query
// does not (POLICY.md 1.6). An allowlist, so an alias PostgreSQL adds later is
// refused rather than let through.
var safeEncodings = map[string]bool{
	"utf8": true, "unicode": true, "sqlascii": true,
	"latin1": true, "latin2": true, "latin3": true, "latin4": true, "latin5": true,
	"latin6": true, "latin7": true, "latin8": true, "latin9": true, "latin10": true,
	"iso88591": true, "iso88592": true, "iso88593": true, "iso88594": true, "iso88595": true,
	"iso88596": true, "iso88597": true, "iso88598": true, "iso88599": true, "iso885910": true,
	"iso885913": true, "iso885914": true, "iso885915": true, "iso885916": true,
	"win866": true, "win874": true, "win1250": true, "win1251": true, "win1252": true, "win1253": true,
	"win1254": true, "win1255": true, "win1256": true, "win1257": true, "win1258": true, "win": true,
	"windows866": true, "windows874": true, "windows1250": true, "windows1251": true, "windows1252": true,
	"windows1253": true, "windows1254": true, "windows1255": true, "windows1256": true,
	"windows1257": true, "windows1258": true, "alt": true, "koi8": true, "koi8r": true, "koi8u": true,
	"eucjp": true, "euccn": true, "euckr": true, "euctw": true, "eucjis2004": true, "muleinternal": true,
	"tcvn": true, "tcvn5712": true, "vscii": true, "abc": true,
}

// cleanEncodingName is PostgreSQL's clean_encoding_name: every character
// that is not a letter or digit dropped, the rest lower-cased.
func cleanEncodingName(name string) string {
	var b strings.Builder
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			b.WriteRune(c + 'a' - 'A')
		}
	}
	return b.String()
}

func newParamRules(tenantSetting, searchPath string, extra []string) paramRules {
	r := paramRules{tenantSetting: strings.ToLower(tenantSetting), searchPath: searchPath, allowed: map[string]bool{}}
	for _, s := range defaultStartupSettings {
		r.allowed[s] = true
	}
	for _, s := range extra {
		r.allowed[strings.ToLower(s)] = true
	}
	return r
}

// parseStartup splits a StartupMessage's parameters into the token, the
// identity fields and the settings to pass on. A setting that would change the
// tenant context is refused; any other setting not on the allowlist is dropped.
func (r paramRules) parseStartup(params map[string]string) (*startupRequest, error) {
	req := &startupRequest{Params: map[string]string{}}
	seen := make(map[string]bool, len(params))
	for k, v := range params {
		lk := strings.ToLower(k)
		if seen[lk] {
			// PostgreSQL's setting names are case-insensitive: with both
			// "jwt" and "JWT", which one wins must not depend on map order.
			return nil, newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "startup parameter %q is given twice", truncate(k, 40))
		}
		seen[lk] = true
		switch {
		case lk == "user":
			req.User = v
		case lk == "database":
			req.Database = v
		case lk == "jwt":
			req.Token = v
		case lk == "options":
			if err := r.parseOptions(v, req); err != nil {
				return nil, err
			}
		case strings.HasPrefix(k, "_pq_."):
			req.Unknown = append(req.Unknown, k)
		default:
			if err := r.setting(k, v, req); err != nil {
				return nil, err
			}
		}
	}
	if req.Database == "" {
		req.Database = req.User
	}
	return req, nil
}

// setting applies one name=value setting from the startup packet or options.
func (r paramRules) setting(name, value string, req *startupRequest) error {
	lk := strings.ToLower(name)
	switch {
	case lk == "jwt":
		if req.Token == "" {
			req.Token = value
		}
		return nil
	case lk == r.tenantSetting, refusedSettings[lk]:
		return newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "startup parameter %q may not be set by a client", name)
	case lk == "search_path":
		if strings.TrimSpace(value) != r.searchPath {
			return newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "search_path is pinned to %q", r.searchPath)
		}
		return nil // the backend session sets it anyway
	case lk == "client_encoding":
		if !safeEncodings[cleanEncodingName(value)] {
			return newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "client_encoding %q is not supported; use UTF8", value)
		}
	case !r.allowed[lk]:
		return nil // not on the allowlist: dropped
	}
	req.Params[name] = value
	return nil
}

// parseOptions reads a libpq options string: only -c name=value (or
// --name=value) switches are accepted; -c jwt=... carries the token.
func (r paramRules) parseOptions(opts string, req *startupRequest) error {
	words := splitOptions(opts)
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c") && len(w) > 2:
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "startup option %q is not allowed; only -c name=value settings are", truncate(w, 40))
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return newClientError(pgerrcode.InvalidAuthorizationSpecification, "refused_parameter", "startup option %q lacks =value", truncate(name, 40))
		}
		name = strings.ReplaceAll(name, "-", "_")
		if err := r.setting(name, value, req); err != nil {
			return err
		}
	}
	return nil
}

// splitOptions splits on unescaped white space, with backslash escaping the
// next character, as PostgreSQL's pg_split_opts does.
func splitOptions(s string) []string {
	var words []string
	var cur strings.Builder
	inWord, escape := false, false
	for _, c := range s {
		switch {
		case escape:
			cur.WriteRune(c)
			escape = false
		case c == '\\':
			escape, inWord = true, true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
