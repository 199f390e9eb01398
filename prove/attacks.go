package prove

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// outcome is what one attack statement did: rows returned or affected, or an error.
type outcome struct {
	rows int64
	err  error
	note string // extra detail for the report
}

// attack is one attempt by tenant B to reach tenant A's rows in a table.
type attack struct {
	check string
	// write attacks run inside BEGIN ... ROLLBACK.
	write bool
	run   func(ctx context.Context, c *pgx.Conn) outcome
}

// count runs a query and counts the rows it returns (simple protocol without args).
func count(ctx context.Context, c *pgx.Conn, sql string, args ...any) outcome {
	_, rows, err := queryRows(ctx, c, sql, args...)
	return outcome{rows: int64(len(rows)), err: err}
}

// exec runs a statement and returns the rows it affected.
func exec(ctx context.Context, c *pgx.Conn, sql string) outcome {
	tag, err := c.Exec(ctx, sql)
	return outcome{rows: tag.RowsAffected(), err: err}
}

// tableAttacks lists the attacks on t. B owns no rows, so any row returned
// or affected is a leak.
func (p *prover) tableAttacks(r *region, t *table) []attack {
	col := ident(t.column)
	a, b := typed(p.a, t.columnType), typed(p.b, t.columnType)
	T := t.name
	other := col // a column to SET to itself in UPDATEs; the tenant column only as a last resort
	for _, c := range t.columns {
		if c.name != t.column && !c.generated {
			other = ident(c.name)
			break
		}
	}
	list := []attack{
		{check: "select_unscoped", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T)
		}},
		{check: "select_where_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = "+a)
		}},
		{check: "select_param_a_text", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = $1", pgx.QueryExecModeExec, p.a)
		}},
		{check: "prepared_rebound_to_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			const name = "tenancy_prove_stmt"
			if _, err := c.Prepare(ctx, name, "SELECT "+col+" FROM "+T+" WHERE "+col+" = $1"); err != nil {
				return outcome{err: err}
			}
			defer func() { _ = c.Deallocate(ctx, name) }()
			note := ""
			if o := count(ctx, c, name, p.b); o.err != nil {
				note = "(bound to B it failed too: " + describeErr(o.err) + ")"
			}
			o := count(ctx, c, name, p.a)
			o.note = note
			return o
		}},
		{check: "sql_prepare_execute_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			if _, err := c.Exec(ctx, "PREPARE tenancy_prove_p AS SELECT "+col+" FROM "+T+" WHERE "+col+" = $1"); err != nil {
				return outcome{err: err}
			}
			defer func() { _, _ = c.Exec(ctx, "DEALLOCATE tenancy_prove_p") }()
			return count(ctx, c, "EXECUTE tenancy_prove_p("+a+")")
		}},
		{check: "select_in_b_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" IN ("+b+", "+a+")")
		}},
		{check: "select_b_or_true", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = "+b+" OR true")
		}},
		{check: "subquery_exists_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT 1 AS leak WHERE EXISTS (SELECT 1 FROM "+T+" WHERE "+col+" = "+a+")")
		}},
		{check: "subquery_from_unscoped", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT s."+col+" FROM (SELECT "+col+" FROM "+T+") AS s")
		}},
		{check: "cte_unscoped", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "WITH x AS (SELECT "+col+" FROM "+T+") SELECT "+col+" FROM x")
		}},
		{check: "self_join", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT t2."+col+" FROM "+T+" AS t2 LEFT JOIN "+T+" AS t1 ON t1."+col+" = "+b)
		}},
		{check: "lateral_a", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT l."+col+" FROM (VALUES (1)) AS s(k) CROSS JOIN LATERAL (SELECT "+col+" FROM "+T+" WHERE "+col+" = "+a+") AS l")
		}},
		{check: "union_unscoped_arm", run: func(ctx context.Context, c *pgx.Conn) outcome {
			return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = "+b+" UNION ALL SELECT "+col+" FROM "+T)
		}},
		{check: "update_a", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, "UPDATE "+T+" SET "+other+" = "+other+" WHERE "+col+" = "+a)
		}},
		{check: "update_unscoped", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, "UPDATE "+T+" SET "+other+" = "+other)
		}},
		{check: "delete_a", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, "DELETE FROM "+T+" WHERE "+col+" = "+a)
		}},
		{check: "delete_unscoped", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, "DELETE FROM "+T)
		}},
		{check: "multi_statement_delete_a", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			return exec(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = "+b+"; DELETE FROM "+T+" WHERE "+col+" = "+a)
		}},
		{check: "insert_for_a", write: true, run: func(ctx context.Context, c *pgx.Conn) outcome {
			sql, err := p.insertFor(ctx, r, t, p.a, 1)
			if err != nil {
				return outcome{err: fmt.Errorf("build the row: %w", err), note: "not attempted"}
			}
			return exec(ctx, c, sql)
		}},
		{check: "copy_to_stdout", run: func(ctx context.Context, c *pgx.Conn) outcome {
			tag, err := c.PgConn().CopyTo(ctx, io.Discard, "COPY "+T+" TO STDOUT")
			return outcome{rows: tag.RowsAffected(), err: err}
		}},
	}
	if k, ok := kindOf(t.columnType); ok && k != idUUID && !isTextType(baseName(t.columnType)) {
		if n, err := strconv.ParseInt(p.a, 10, 64); err == nil {
			list = append(list, attack{check: "select_param_a_binary", run: func(ctx context.Context, c *pgx.Conn) outcome {
				return count(ctx, c, "SELECT "+col+" FROM "+T+" WHERE "+col+" = $1", pgx.QueryExecModeExec, n)
			}})
		}
	}
	return list
}

// attacks runs every attack as tenant B through pgtenant.
func (p *prover) attacks(ctx context.Context, r *region) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for _, t := range r.usable() {
		for _, at := range p.tableAttacks(r, t) {
			if conn == nil || conn.IsClosed() {
				var err error
				if conn, err = p.connect(ctx, r, p.b, nil); err != nil {
					conn = nil
					p.result(r, t, LayerProxy, at.check, Fail, "cannot connect through pgtenant as tenant B: "+describeErr(err))
					continue
				}
			}
			p.judge(r, t, at.check, p.runAttack(ctx, conn, at))
		}
	}
	p.escapes(ctx, r, conn)
}

// runAttack runs one attack, inside a rolled-back transaction for writes,
// and leaves the connection outside any transaction.
func (p *prover) runAttack(ctx context.Context, c *pgx.Conn, at attack) outcome {
	cctx, cancel := p.step(ctx)
	defer cancel()
	if at.write {
		if _, err := c.Exec(cctx, "BEGIN"); err != nil {
			return outcome{err: fmt.Errorf("BEGIN: %w", err), note: "not attempted"}
		}
	}
	o := at.run(cctx, c)
	if at.write || c.PgConn().TxStatus() != 'I' {
		if _, err := c.Exec(cctx, "ROLLBACK"); err != nil && o.err == nil {
			o.err = fmt.Errorf("ROLLBACK: %w", err)
		}
	}
	return o
}

// judge turns an attack's outcome into a result: an error from the server
// or no row touched passes; any row returned or affected fails.
func (p *prover) judge(r *region, t *table, check string, o outcome) {
	switch {
	case o.err != nil && o.note == "not attempted":
		p.result(r, t, LayerProxy, check, Warn, "not attempted: "+describeErr(o.err))
	case o.err != nil && sqlState(o.err) == "":
		p.result(r, t, LayerProxy, check, Warn, "no answer from the server: "+describeErr(o.err))
	case o.err != nil:
		p.result(r, t, LayerProxy, check, Pass, join("denied: "+describeErr(o.err), o.note))
	case o.rows == 0:
		p.result(r, t, LayerProxy, check, Pass, join("allowed, but no row touched (row-level security held)", o.note))
	default:
		p.result(r, t, LayerProxy, check, Fail, join(fmt.Sprintf("tenant B read or wrote %d row(s) it does not own", o.rows), o.note))
	}
}

// join appends a note to a detail.
func join(detail, note string) string {
	if note == "" {
		return detail
	}
	return detail + " " + note
}
