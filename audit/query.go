package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// Query selects one tenant's events for the tenant API: a page of the
// account's chain in one region, in seq order, after a cursor.
type Query struct {
	Account string    // the chain (required)
	Since   time.Time // zero = no lower bound on ts
	Until   time.Time // zero = no upper bound on ts (exclusive)
	Kind    string    // "" = every kind
	Verdict string    // "" = every verdict
	Subject string    // "" = every subject
	After   int64     // return events with seq > After (the cursor)
	Limit   int       // page size, 1..MaxQueryLimit
}

// MaxQueryLimit bounds one page of Read.
const MaxQueryLimit = 10000

// Page is one page of events; Next is the cursor of the following page, 0 when this is the last.
type Page struct {
	Events []RowJSON
	Next   int64
}

// Read returns a page of q.Account's events stored in region name. It reads
// as the admin role (the service role cannot read the audit) and never
// returns another chain's rows: the chain is a bound parameter of every query.
func Read(ctx context.Context, name string, r config.Region, q Query) (Page, error) {
	if q.Account == "" {
		return Page{}, errors.New("read: an account is required")
	}
	if q.Limit <= 0 || q.Limit > MaxQueryLimit {
		return Page{}, fmt.Errorf("read: limit %d is not within 1..%d", q.Limit, MaxQueryLimit)
	}
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return Page{}, err
	}
	defer conn.Close(context.Background())

	sql := `SELECT ` + rowColumns + ` FROM pgtenant_audit.events e WHERE chain_id = $1 AND seq > $2`
	args := []any{q.Account, q.After}
	add := func(cond string, v any) {
		args = append(args, v)
		sql += " AND " + cond + " $" + strconv.Itoa(len(args))
	}
	if !q.Since.IsZero() {
		add("ts >=", q.Since)
	}
	if !q.Until.IsZero() {
		add("ts <", q.Until)
	}
	if q.Kind != "" {
		add("kind =", q.Kind)
	}
	if q.Verdict != "" {
		add("verdict =", q.Verdict)
	}
	if q.Subject != "" {
		add("subject =", q.Subject)
	}
	args = append(args, q.Limit+1)
	sql += " ORDER BY seq LIMIT $" + strconv.Itoa(len(args))
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("read chain %q in %s: %w", q.Account, name, err)
	}
	defer rows.Close()
	var p Page
	for rows.Next() {
		row, err := scanRow(rows)
		if err != nil {
			return Page{}, fmt.Errorf("read chain %q in %s: %w", q.Account, name, err)
		}
		if len(p.Events) == q.Limit {
			p.Next = p.Events[len(p.Events)-1].Seq
			break
		}
		p.Events = append(p.Events, row.ToJSON(false))
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("read chain %q in %s: %w", q.Account, name, err)
	}
	return p, nil
}
