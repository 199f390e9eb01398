package audit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgtenant/pgtenant/tenancy"
)

// NoTenantChain is the reserved chain_id of events with no verified tenant
// (rejected logins, bad tokens). No account may be named "-": the Recorder
// refuses tenant events for it rather than mixing them into this chain.
const NoTenantChain = "-"

// Statement recording modes (audit.statement).
const (
	StatementNormalized  = "normalized"
	StatementFull        = "full"
	StatementFingerprint = "fingerprint"
)

// ChainFor returns the chain an event with account belongs to.
func ChainFor(account string) string {
	if account == "" {
		return NoTenantChain
	}
	return account
}

// NewRow turns an event into the canonical row recorded in region: strings
// are made valid UTF-8 without NUL bytes, the time is truncated to whole
// microseconds (as timestamptz stores it), tables are sorted and
// de-duplicated, empty optional values become NULL, and a fresh UUIDv7
// event_id is assigned. Hashes are computed later, when seq is known.
func NewRow(ev tenancy.Event, region, instance, statementMode string) (*Row, error) {
	return newRow(ev, ChainFor(ev.AccountID), region, instance, statementMode)
}

// newRow is NewRow with an explicit chain: an event with no region goes to
// the no-tenant chain even when it names an (unverified) account.
func newRow(ev tenancy.Event, chain, region, instance, statementMode string) (*Row, error) {
	if ev.AccountID == NoTenantChain {
		return nil, fmt.Errorf("audit: account id %q is reserved for the no-tenant chain", NoTenantChain)
	}
	switch ev.Kind {
	case tenancy.KindConnect, tenancy.KindReject, tenancy.KindStatement, tenancy.KindResult, tenancy.KindDisconnect, tenancy.KindConfig, tenancy.KindAPI, tenancy.KindPurge:
	default:
		return nil, fmt.Errorf("audit: unknown event kind %q", ev.Kind)
	}
	id, err := newEventID()
	if err != nil {
		return nil, err
	}
	ts := ev.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	a := &rowAlloc{}
	r := &a.row
	*r = Row{
		ChainID:       chain,
		EventID:       id,
		TS:            ts.Truncate(time.Microsecond).UTC(),
		Kind:          ev.Kind,
		AccountID:     a.opt(0, ev.AccountID),
		Subject:       a.opt(1, ev.Subject),
		ClientUser:    a.opt(2, ev.ClientUser),
		ClientAddr:    a.addr(3, ev.ClientAddr),
		Region:        clean(region),
		SessionID:     a.opt(4, ev.SessionID),
		ProxyInstance: a.opt(5, instance),
		Statement:     a.opt(6, recordedStatement(ev, statementMode)),
		Tables:        canonTables(ev.Tables),
		Verdict:       a.opt(7, ev.Verdict),
		Reason:        a.opt(8, ev.Reason),
		SQLState:      a.opt(9, ev.SQLState),
		Role:          a.opt(10, ev.Role),
		Actor:         a.opt(11, ev.Actor),
		Purpose:       a.opt(12, ev.Purpose),
		Ticket:        a.opt(13, ev.Ticket),
	}
	if ev.Rewritten {
		a.rewritten = true
		r.Rewritten = &a.rewritten
	}
	if statementMode == StatementFull && r.Statement != nil {
		if err := r.commitStatement(); err != nil {
			return nil, err
		}
	}
	r.HashVersion = r.hashVersionFor()
	if ev.Kind == tenancy.KindResult {
		if ev.Rows >= 0 {
			a.ints[0] = ev.Rows
			r.Rows = &a.ints[0]
		}
		a.ints[1] = ev.DurationUS
		r.DurationUS = &a.ints[1]
	}
	return r, nil
}

// rowAlloc is a new row together with the values its pointer fields point
// to: building a row is one allocation instead of one per present value (a
// statement event has about ten), which the proxy pays per statement.
type rowAlloc struct {
	row       Row
	text      [14]string
	ints      [2]int64
	rewritten bool
}

// opt stores s, cleaned, in text slot i and points to it; nil when empty.
func (a *rowAlloc) opt(i int, s string) *string {
	if s == "" {
		return nil
	}
	a.text[i] = clean(s)
	return &a.text[i]
}

// addr stores canonAddr(s) in text slot i and points to it; nil when there
// is no address.
func (a *rowAlloc) addr(i int, s string) *string {
	t, ok := canonAddr(s)
	if !ok {
		return nil
	}
	a.text[i] = t
	return &a.text[i]
}

// recordedStatement applies audit.statement to the event's text.
func recordedStatement(ev tenancy.Event, mode string) string {
	switch mode {
	case StatementFull:
		if ev.FullStatement != "" {
			return ev.FullStatement
		}
		return ev.Statement
	case StatementFingerprint:
		if ev.Statement == "" {
			return ""
		}
		sum := sha256.Sum256([]byte(ev.Statement))
		return hex.EncodeToString(sum[:])
	default:
		return ev.Statement
	}
}

// clean makes s storable in a text column: valid UTF-8 and no NUL bytes.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s // the usual case, checked a word at a time
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

// canonAddr returns the address in PostgreSQL's inet text form, or false
// when it is empty or not an IP address (Unix sockets). An address already
// in that form (what the proxy passes) is returned as is, without the
// allocations of parsing it as host:port first and formatting it again.
func canonAddr(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && !a.Is4In6() {
		var buf [64]byte
		if string(a.AppendTo(buf[:0])) == s {
			return s, true
		}
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		s = ap.Addr().String()
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return "", false
	}
	return a.WithZone("").Unmap().String(), true
}

func canonTables(t []string) []string {
	if len(t) == 0 {
		return nil
	}
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = clean(s)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// commitStatement salts the row's statement text and switches it to hash
// version 2 (the text outside the hashed content).
func (r *Row) commitStatement() error {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("audit: statement salt: %w", err)
	}
	r.StatementSalt = salt
	r.StatementCommitment = statementCommitment(salt, *r.Statement)
	r.HashVersion = r.hashVersionFor()
	return nil
}
