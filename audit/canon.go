package audit

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

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

// eventIDRand feeds the random bits of event ids (UUIDv7) from crypto/rand
// through a buffer: one getrandom(2) per 256 ids instead of one per event
// (5% of the proxy's CPU per audited statement in BenchmarkWriter).
var eventIDRand = &lockedReader{r: bufio.NewReaderSize(rand.Reader, 4096)}

// lockedReader serializes reads of r (a bufio.Reader is not safe for
// concurrent use, and sessions record concurrently).
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return io.ReadFull(l.r, p)
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
	id, err := uuid.NewV7FromReader(eventIDRand)
	if err != nil {
		return nil, fmt.Errorf("audit: event id: %w", err)
	}
	ts := ev.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	r := &Row{
		ChainID:       chain,
		EventID:       id,
		TS:            ts.Truncate(time.Microsecond).UTC(),
		Kind:          ev.Kind,
		AccountID:     opt(ev.AccountID),
		Subject:       opt(ev.Subject),
		ClientUser:    opt(ev.ClientUser),
		ClientAddr:    canonAddr(ev.ClientAddr),
		Region:        clean(region),
		SessionID:     opt(ev.SessionID),
		ProxyInstance: opt(instance),
		Statement:     opt(recordedStatement(ev, statementMode)),
		Tables:        canonTables(ev.Tables),
		Verdict:       opt(ev.Verdict),
		Reason:        opt(ev.Reason),
		SQLState:      opt(ev.SQLState),
		Role:          opt(ev.Role),
		Actor:         opt(ev.Actor),
		Purpose:       opt(ev.Purpose),
		Ticket:        opt(ev.Ticket),
	}
	if ev.Rewritten {
		t := true
		r.Rewritten = &t
	}
	if statementMode == StatementFull && r.Statement != nil {
		if err := r.commitStatement(); err != nil {
			return nil, err
		}
	}
	r.HashVersion = r.hashVersionFor()
	if ev.Kind == tenancy.KindResult {
		if ev.Rows >= 0 {
			r.Rows = &ev.Rows
		}
		d := ev.DurationUS
		r.DurationUS = &d
	}
	return r, nil
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
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	return s
}

func opt(s string) *string {
	if s == "" {
		return nil
	}
	c := clean(s)
	return &c
}

// canonAddr returns the address in PostgreSQL's inet text form, or nil when
// it is empty or not an IP address (Unix sockets).
func canonAddr(s string) *string {
	if s == "" {
		return nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		s = ap.Addr().String()
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return nil
	}
	a = a.WithZone("").Unmap()
	t := a.String()
	return &t
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
