// Command pgx is the client matrix's pgx v5 program: a pgxpool with its
// default statement cache (prepared statements), batches, transactions with
// nested savepoints, the binary protocol (int8 arrays with = ANY), CopyFrom,
// type introspection (LoadType) and pool checkout/release.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgtenant/pgtenant/test/clients/go/internal/report"
)

func main() {
	e := report.FromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := &report.Report{Client: "pgx", Version: report.ModVersion("github.com/jackc/pgx/v5")}
	var pool *pgxpool.Pool
	rep.Do("connect", "app", func() (any, error) {
		cfg, err := pgxpool.ParseConfig(e.URL + "&application_name=clients-pgx&pool_max_conns=2")
		if err != nil {
			return nil, err
		}
		pool, err = pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, err
		}
		if err := pool.Ping(ctx); err != nil {
			return nil, err
		}
		rep.Mark = func(sql string) error { _, err := pool.Exec(ctx, sql); return err }
		return nil, nil
	})
	if pool == nil {
		rep.Dump()
		return
	}
	defer pool.Close()
	q := func(sql string, args ...any) func() (any, error) {
		return func() (any, error) {
			rows, err := pool.Query(ctx, sql, args...)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, pgx.RowToMap)
		}
	}
	T, O := e.Tenant, e.Other
	rep.Do("read.scoped", "app", q("SELECT id, account_id, total::text, note FROM orders WHERE account_id = $1 ORDER BY id", T))
	var oid int64 = 1
	rep.Do("crud.insert", "app", func() (any, error) {
		err := pool.QueryRow(ctx, "INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3) RETURNING id", T, 12.5, "pgx").Scan(&oid)
		return []any{oid}, err
	})
	rep.Do("crud.update", "app", q("UPDATE orders SET note = $1 WHERE account_id = $2 AND id = $3 RETURNING id, account_id, note", "pgx updated", T, oid))
	rep.Do("prepared.cache", "app", func() (any, error) {
		var out []any
		for _, id := range []int64{1, 5, oid} {
			var got, acc int64
			if err := pool.QueryRow(ctx, "SELECT id, account_id FROM orders WHERE account_id = $1 AND id = $2", T, id).Scan(&got, &acc); err != nil {
				return nil, err
			}
			out = append(out, map[string]int64{"id": got, "account_id": acc})
		}
		return out, nil
	})
	rep.Do("array.any_int8", "app", q("SELECT id, account_id FROM orders WHERE account_id = $1 AND id = ANY($2) ORDER BY id", T, []int64{1, 5, 9}))
	rep.Do("tenant.any_int8", "app", q("SELECT id, account_id FROM orders WHERE account_id = ANY($1) ORDER BY id", []int64{T}))
	rep.Ops[len(rep.Ops)-1].SQL = "SELECT id, account_id FROM orders WHERE account_id = ANY($1) ORDER BY id -- $1 = '{42}' (binary int8[])"
	rep.Do("batch", "app", func() (any, error) {
		b := &pgx.Batch{}
		b.Queue("SELECT count(*) FROM orders WHERE account_id = $1", T)
		b.Queue("SELECT count(*) FROM line_items WHERE account_id = $1", T)
		br := pool.SendBatch(ctx, b)
		defer br.Close()
		var a, c int64
		if err := br.QueryRow().Scan(&a); err != nil {
			return nil, err
		}
		if err := br.QueryRow().Scan(&c); err != nil {
			return nil, err
		}
		return []int64{a, c}, nil
	})
	rep.Do("tx.savepoint", "app", func() (any, error) {
		var cid, lid int64
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := tx.QueryRow(ctx, "INSERT INTO customers (account_id, name) VALUES ($1, $2) RETURNING id", T, "pgx customer").Scan(&cid); err != nil {
				return err
			}
			_ = pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error { // SAVEPOINT
				_, err := sp.Exec(ctx, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'BAD', -1)", T, oid)
				return err
			})
			return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
				return sp.QueryRow(ctx, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'SKU-PGX', 2) RETURNING id", T, oid).Scan(&lid)
			})
		})
		return []int64{cid, lid}, err
	})
	rep.Do("introspect.load_type", "app", func() (any, error) {
		c, err := pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		defer c.Release()
		t, err := c.Conn().LoadType(ctx, "_numeric")
		if err != nil {
			return nil, err
		}
		return []string{t.Name}, nil
	})
	rep.Do("pool.checkout_release", "app", func() (any, error) {
		var out []int64
		for i := 0; i < 3; i++ {
			c, err := pool.Acquire(ctx)
			if err != nil {
				return nil, err
			}
			var n int64
			err = c.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = $1", T).Scan(&n)
			c.Release()
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	})
	rep.Do("assoc.join", "app", q("SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = $1 ORDER BY o.id, l.id", T))
	rep.Do("copy_from", "unpinned", func() (any, error) {
		if e.Mode == "oracle" {
			// PostgreSQL refuses COPY FROM into a table with RLS (0A000):
			// the RLS equivalent of the COPY is the INSERT of its rows.
			tag, err := pool.Exec(ctx, "INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, $3, $4)", T, oid, "SKU-CP", int32(1))
			return []int64{tag.RowsAffected()}, err
		}
		n, err := pool.CopyFrom(ctx, pgx.Identifier{"line_items"}, []string{"account_id", "order_id", "sku", "qty"},
			pgx.CopyFromRows([][]any{{T, oid, "SKU-CP", int32(1)}}))
		return []int64{n}, err
	})
	rep.Do("crud.delete", "app", q("DELETE FROM line_items WHERE account_id = $1 AND order_id = $2 RETURNING id, account_id", T, oid))
	rep.Do("unpinned.update_by_id", "unpinned", q("UPDATE orders SET note = 'by id' WHERE id = $1 RETURNING id, account_id, note", oid))
	rep.Do("unscoped.select", "unscoped", q("SELECT id, account_id FROM orders ORDER BY id"))
	rep.Do("cross.select", "cross", q("SELECT id, account_id FROM orders WHERE account_id = $1", O))
	rep.Do("cross.update", "cross", q("UPDATE orders SET note = 'x' WHERE account_id = $1 RETURNING id", O))
	rep.Do("cross.insert", "cross", q("INSERT INTO orders (id, account_id, total) VALUES (990021, $1, 1) RETURNING id", O))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		panic("pgx program timed out")
	}
	rep.Dump()
}
