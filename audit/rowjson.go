package audit

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// RowJSON is a row as JSON: the argument of pgtenant_audit.append (hashes as
// bytea text "\\x..."), and one line of an export (hashes as plain hex).
type RowJSON struct {
	ChainID       string   `json:"chain_id"`
	Seq           int64    `json:"seq"`
	EventID       string   `json:"event_id"`
	TS            string   `json:"ts"`
	Kind          string   `json:"kind"`
	AccountID     *string  `json:"account_id"`
	Subject       *string  `json:"subject"`
	ClientUser    *string  `json:"client_user"`
	ClientAddr    *string  `json:"client_addr"`
	Region        string   `json:"region"`
	SessionID     *string  `json:"session_id"`
	ProxyInstance *string  `json:"proxy_instance"`
	Statement     *string  `json:"statement"`
	Tables        []string `json:"tables"`
	Verdict       *string  `json:"verdict"`
	Reason        *string  `json:"reason"`
	SQLState      *string  `json:"sqlstate"`
	Rows          *int64   `json:"rows"`
	DurationUS    *int64   `json:"duration_us"`
	HashVersion   int16    `json:"hash_version"`
	ContentHash   string   `json:"content_hash"`
	PrevHash      string   `json:"prev_hash"`
	EntryHash     string   `json:"entry_hash"`
	Purged        bool     `json:"purged"`
	// StatementSalt and StatementCommitment (hex) of hash version 2 rows.
	StatementSalt       string `json:"statement_salt,omitempty"`
	StatementCommitment string `json:"statement_commitment,omitempty"`
	// Role, Actor, Purpose, Ticket and Rewritten (hash version 3).
	Role      *string `json:"role,omitempty"`
	Actor     *string `json:"actor,omitempty"`
	Purpose   *string `json:"purpose,omitempty"`
	Ticket    *string `json:"ticket,omitempty"`
	Rewritten *bool   `json:"rewritten,omitempty"`
}

// tsLayout keeps exactly microsecond precision.
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// ToJSON converts r; byteaText selects PostgreSQL's "\\x" hex form for hashes.
func (r *Row) ToJSON(byteaText bool) RowJSON {
	h := func(b []byte) string {
		if byteaText {
			return `\x` + hex.EncodeToString(b)
		}
		return hex.EncodeToString(b)
	}
	return RowJSON{
		ChainID: r.ChainID, Seq: r.Seq, EventID: r.EventID.String(), TS: r.TS.UTC().Format(tsLayout),
		Kind: r.Kind, AccountID: r.AccountID, Subject: r.Subject, ClientUser: r.ClientUser,
		ClientAddr: r.ClientAddr, Region: r.Region, SessionID: r.SessionID, ProxyInstance: r.ProxyInstance,
		Statement: r.Statement, Tables: r.Tables, Verdict: r.Verdict, Reason: r.Reason, SQLState: r.SQLState,
		Rows: r.Rows, DurationUS: r.DurationUS, HashVersion: r.HashVersion,
		ContentHash: h(r.ContentHash), PrevHash: h(r.PrevHash), EntryHash: h(r.EntryHash), Purged: r.Purged,
		StatementSalt: optHex(r.StatementSalt, byteaText), StatementCommitment: optHex(r.StatementCommitment, byteaText),
		Role: r.Role, Actor: r.Actor, Purpose: r.Purpose, Ticket: r.Ticket, Rewritten: r.Rewritten,
	}
}

// Row converts an exported line back into a row.
func (j RowJSON) Row() (*Row, error) {
	id, err := uuid.Parse(j.EventID)
	if err != nil {
		return nil, fmt.Errorf("event_id: %w", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, j.TS)
	if err != nil {
		return nil, fmt.Errorf("ts: %w", err)
	}
	r := &Row{
		ChainID: j.ChainID, Seq: j.Seq, EventID: id, TS: ts.UTC(), Kind: j.Kind, AccountID: j.AccountID,
		Subject: j.Subject, ClientUser: j.ClientUser, ClientAddr: j.ClientAddr, Region: j.Region,
		SessionID: j.SessionID, ProxyInstance: j.ProxyInstance, Statement: j.Statement, Tables: j.Tables,
		Verdict: j.Verdict, Reason: j.Reason, SQLState: j.SQLState, Rows: j.Rows, DurationUS: j.DurationUS,
		HashVersion: j.HashVersion, Purged: j.Purged,
		Role: j.Role, Actor: j.Actor, Purpose: j.Purpose, Ticket: j.Ticket, Rewritten: j.Rewritten,
	}
	for _, f := range []struct {
		name string
		in   string
		out  *[]byte
	}{{"content_hash", j.ContentHash, &r.ContentHash}, {"prev_hash", j.PrevHash, &r.PrevHash}, {"entry_hash", j.EntryHash, &r.EntryHash},
		{"statement_salt", j.StatementSalt, &r.StatementSalt}, {"statement_commitment", j.StatementCommitment, &r.StatementCommitment}} {
		if f.in == "" && (f.name == "statement_salt" || f.name == "statement_commitment") {
			continue
		}
		b, err := hex.DecodeString(strings.TrimPrefix(f.in, `\x`))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.out = b
	}
	return r, nil
}

// optHex renders optional bytes as hex ("" = NULL).
func optHex(b []byte, byteaText bool) string {
	if b == nil {
		return ""
	}
	if byteaText {
		return `\x` + hex.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}
