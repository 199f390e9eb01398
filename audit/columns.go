package audit

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// appendRowsSQL appends one chain's rows given as typed column arrays
// (schema version 2).
const appendRowsSQL = `SELECT pgtenant_audit.append_rows($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
	$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`

// columns holds rows of one chain column by column, in append_rows'
// parameter order; nil pointers are NULLs.
type columns struct {
	seq                                  []int64
	eventID                              []uuid.UUID
	ts                                   []time.Time
	kind, region                         []string
	accountID, subject, clientUser       []*string
	clientAddr, sessionID, proxyInstance []*string
	statement, tables, verdict, reason   []*string
	sqlstate                             []*string
	rows, durationUS                     []*int64
	hashVersion                          []int16
	contentHash, prevHash, entryHash     [][]byte
}

func (c *columns) add(r *Row) {
	c.seq = append(c.seq, r.Seq)
	c.eventID = append(c.eventID, r.EventID)
	c.ts = append(c.ts, r.TS)
	c.kind = append(c.kind, r.Kind)
	c.accountID = append(c.accountID, r.AccountID)
	c.subject = append(c.subject, r.Subject)
	c.clientUser = append(c.clientUser, r.ClientUser)
	c.clientAddr = append(c.clientAddr, r.ClientAddr)
	c.region = append(c.region, r.Region)
	c.sessionID = append(c.sessionID, r.SessionID)
	c.proxyInstance = append(c.proxyInstance, r.ProxyInstance)
	c.statement = append(c.statement, r.Statement)
	c.tables = append(c.tables, textArrayLiteral(r.Tables))
	c.verdict = append(c.verdict, r.Verdict)
	c.reason = append(c.reason, r.Reason)
	c.sqlstate = append(c.sqlstate, r.SQLState)
	c.rows = append(c.rows, r.Rows)
	c.durationUS = append(c.durationUS, r.DurationUS)
	c.hashVersion = append(c.hashVersion, r.HashVersion)
	c.contentHash = append(c.contentHash, r.ContentHash)
	c.prevHash = append(c.prevHash, r.PrevHash)
	c.entryHash = append(c.entryHash, r.EntryHash)
}

// args are append_rows' arguments for chain.
func (c *columns) args(chain string) []any {
	return []any{chain, c.seq, c.eventID, c.ts, c.kind, c.accountID, c.subject, c.clientUser,
		c.clientAddr, c.region, c.sessionID, c.proxyInstance, c.statement, c.tables, c.verdict,
		c.reason, c.sqlstate, c.rows, c.durationUS, c.hashVersion, c.contentHash, c.prevHash, c.entryHash}
}

// textArrayLiteral renders a text[] value as PostgreSQL's array input reads
// it: nil is NULL, an empty slice '{}', every element double-quoted with
// backslash and quote escaped (so commas, braces, spaces and the word NULL
// stay text).
func textArrayLiteral(elems []string) *string {
	if elems == nil {
		return nil
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(e))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	s := b.String()
	return &s
}
