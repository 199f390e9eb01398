package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// Rewrite mode with pgx's default extended protocol (named, cached
// statements: Parse once, Bind many), against a cluster with RLS off so the
// rewrite alone scopes the rows: the rewritten statement keeps its parameter
// numbers, every Bind is checked against it, and another tenant's rows stay
// out of reach.
func TestRewriteExtendedProtocol(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := oracleCluster(t, ctx, "rewrite-copy", false)
	env := proxytest.Start(t, rewriteOptions(c, nil))
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	for i := 0; i < 3; i++ { // the cached statement is bound again each time
		var note *string
		if err := conn.QueryRow(ctx, `SELECT note FROM orders WHERE id = $1`, int64(5)).Scan(&note); err != nil || note == nil || *note != "a@example.com" {
			t.Fatalf("own order through a rewritten statement: %v %v", note, err)
		}
		rows, err := conn.Query(ctx, `SELECT id FROM orders WHERE id = $1`, int64(2001)) // tenant 7's order
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if rows.Close(); rows.Err() != nil || n != 0 {
			t.Fatalf("tenant 7's order through a rewritten statement: %d rows, %v", n, rows.Err())
		}
	}
	// the rewrite adds the pin for line_items; o stays pinned by $1, checked at Bind
	q := `SELECT li.sku FROM orders o JOIN line_items li ON li.order_id = o.id WHERE o.account_id = $1 AND o.id = $2`
	var sku string
	if err := conn.QueryRow(ctx, q, int64(42), int64(1001)).Scan(&sku); err != nil || sku != "SKU-1" {
		t.Fatalf("own line item: %q %v", sku, err)
	}
	err := conn.QueryRow(ctx, q, int64(7), int64(2001)).Scan(&sku)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "pgtenant: ") {
		t.Fatalf("Bind of tenant 7's account on a rewritten statement: %v", err)
	}
	// writes: UPDATE without a pin touches only the caller's rows
	tag, err := conn.Exec(ctx, `UPDATE orders SET note = $1 WHERE total >= $2`, "bulk", 0)
	if err != nil || tag.RowsAffected() != 4 {
		t.Fatalf("unpinned UPDATE: %v %v (want 4 rows of tenant 42)", tag, err)
	}
	super := connect(t, c.SuperuserDSN(c.Database))
	var others int
	if err := super.QueryRow(ctx, `SELECT count(*) FROM orders WHERE account_id = 7 AND note = 'bulk'`).Scan(&others); err != nil || others != 0 {
		t.Fatalf("tenant 7's orders changed: %d %v", others, err)
	}
}
