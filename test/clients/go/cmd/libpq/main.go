// Command libpq is the client matrix's lib/pq program: database/sql with
// its connection pool, Prepare/Stmt reuse, transactions with savepoints,
// pq.Array parameters and information_schema introspection.
package main

import (
	"database/sql"

	"github.com/lib/pq"

	"github.com/pgtenant/pgtenant/test/clients/go/internal/report"
)

// rowsOf reads every row as a column-name map.
func rowsOf(rs *sql.Rows, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for rs.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := map[string]any{}
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	return out, rs.Err()
}

func main() {
	e := report.FromEnv()
	rep := &report.Report{Client: "libpq", Version: report.ModVersion("github.com/lib/pq")}
	var db *sql.DB
	rep.Do("connect", "app", func() (any, error) {
		var err error
		if db, err = sql.Open("postgres", e.URL+"&application_name=clients-libpq"); err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(2)
		if err := db.Ping(); err != nil {
			return nil, err
		}
		rep.Mark = func(q string) error { _, err := db.Exec(q); return err }
		return nil, nil
	})
	if rep.Mark == nil {
		rep.Dump()
		return
	}
	defer db.Close()
	q := func(query string, args ...any) func() (any, error) {
		return func() (any, error) { return rowsOf(db.Query(query, args...)) }
	}
	T, O := e.Tenant, e.Other
	rep.Do("read.scoped", "app", q("SELECT id, account_id, total, note FROM orders WHERE account_id = $1 ORDER BY id", T))
	var oid int64 = 1
	rep.Do("crud.insert", "app", func() (any, error) {
		err := db.QueryRow("INSERT INTO orders (account_id, total, note) VALUES ($1, $2, $3) RETURNING id", T, 12.5, "libpq").Scan(&oid)
		return []int64{oid}, err
	})
	rep.Do("crud.update", "app", q("UPDATE orders SET note = $1 WHERE account_id = $2 AND id = $3 RETURNING id, account_id, note", "libpq updated", T, oid))
	rep.Do("prepared.stmt", "app", func() (any, error) {
		st, err := db.Prepare("SELECT id, account_id FROM orders WHERE account_id = $1 AND id = $2")
		if err != nil {
			return nil, err
		}
		defer st.Close()
		var out []any
		for _, id := range []int64{1, oid} {
			r, err := rowsOf(st.Query(T, id))
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
		return out, nil
	})
	rep.Do("array.any", "app", q("SELECT id, account_id FROM orders WHERE account_id = $1 AND id = ANY($2) ORDER BY id", T, pq.Array([]int64{1, 5, 9})))
	rep.Do("tx.savepoint", "app", func() (any, error) {
		tx, err := db.Begin()
		if err != nil {
			return nil, err
		}
		defer tx.Rollback()
		var cid, lid int64
		if err := tx.QueryRow("INSERT INTO customers (account_id, name) VALUES ($1, $2) RETURNING id", T, "libpq customer").Scan(&cid); err != nil {
			return nil, err
		}
		if _, err := tx.Exec("SAVEPOINT sp1"); err != nil {
			return nil, err
		}
		if _, err := tx.Exec("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'BAD', -1)", T, oid); err != nil {
			if _, err := tx.Exec("ROLLBACK TO SAVEPOINT sp1"); err != nil {
				return nil, err
			}
		}
		if err := tx.QueryRow("INSERT INTO line_items (account_id, order_id, sku, qty) VALUES ($1, $2, 'SKU-PQ', 2) RETURNING id", T, oid).Scan(&lid); err != nil {
			return nil, err
		}
		if _, err := tx.Exec("RELEASE SAVEPOINT sp1"); err != nil {
			return nil, err
		}
		return []int64{cid, lid}, tx.Commit()
	})
	rep.Do("introspect.columns", "app", q("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position", "orders"))
	rep.Do("assoc.join", "app", q("SELECT o.id, o.account_id, l.sku FROM orders o JOIN line_items l ON l.account_id = o.account_id AND l.order_id = o.id WHERE o.account_id = $1 ORDER BY o.id, l.id", T))
	rep.Do("crud.delete", "app", q("DELETE FROM line_items WHERE account_id = $1 AND order_id = $2 RETURNING id, account_id", T, oid))
	rep.Do("unpinned.update_by_id", "unpinned", q("UPDATE orders SET note = 'by id' WHERE id = $1 RETURNING id, account_id, note", oid))
	rep.Do("unscoped.select", "unscoped", q("SELECT id, account_id FROM orders ORDER BY id"))
	rep.Do("cross.select", "cross", q("SELECT id, account_id FROM orders WHERE account_id = $1", O))
	rep.Do("cross.update", "cross", q("UPDATE orders SET note = 'x' WHERE account_id = $1 RETURNING id", O))
	rep.Do("cross.insert", "cross", q("INSERT INTO orders (id, account_id, total) VALUES (990022, $1, 1) RETURNING id", O))
	rep.Dump()
}
