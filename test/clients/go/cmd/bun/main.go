// Command bun is the client matrix's bun program (pgdialect over bun's
// pgdriver): models with has-many/belongs-to relations, Insert/Update/
// Delete by primary key, Relation loads, RunInTx with a savepoint, and
// pool reuse.
package main

import (
	"context"
	"database/sql"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/driver/pgdriver"

	"github.com/pgtenant/pgtenant/test/clients/go/internal/report"
)

type Order struct {
	bun.BaseModel `bun:"table:orders"`
	ID            int64       `bun:"id,pk,autoincrement" json:"id"`
	AccountID     int64       `bun:"account_id" json:"account_id"`
	Total         float64     `bun:"total" json:"total"`
	Note          *string     `bun:"note" json:"note"`
	Items         []*LineItem `bun:"rel:has-many,join:id=order_id" json:"items"`
}

type LineItem struct {
	bun.BaseModel `bun:"table:line_items"`
	ID            int64  `bun:"id,pk,autoincrement" json:"id"`
	AccountID     int64  `bun:"account_id" json:"account_id"`
	OrderID       int64  `bun:"order_id" json:"order_id"`
	SKU           string `bun:"sku" json:"sku"`
	Qty           int    `bun:"qty" json:"qty"`
	Order         *Order `bun:"rel:belongs-to,join:order_id=id" json:"order"`
}

type Customer struct {
	bun.BaseModel `bun:"table:customers"`
	ID            int64  `bun:"id,pk,autoincrement" json:"id"`
	AccountID     int64  `bun:"account_id" json:"account_id"`
	Name          string `bun:"name" json:"name"`
}

func ptr[T any](v T) *T { return &v }

func main() {
	e := report.FromEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep := &report.Report{Client: "bun", Version: report.ModVersion("github.com/uptrace/bun")}
	sqldb := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(e.URL), pgdriver.WithApplicationName("clients-bun")))
	sqldb.SetMaxOpenConns(2)
	db := bun.NewDB(sqldb, pgdialect.New())
	defer db.Close()
	rep.Do("connect", "app", func() (any, error) {
		if err := db.PingContext(ctx); err != nil {
			return nil, err
		}
		rep.Mark = func(q string) error { _, err := db.ExecContext(ctx, q); return err }
		return nil, nil
	})
	T, O := e.Tenant, e.Other
	rep.Do("read.scoped", "app", func() (any, error) {
		var os []Order
		return os, db.NewSelect().Model(&os).Where("account_id = ?", T).Order("id").Scan(ctx)
	})
	o := &Order{AccountID: T, Total: 12.5, Note: ptr("bun")}
	rep.Do("model.insert", "app", func() (any, error) { _, err := db.NewInsert().Model(o).Returning("*").Exec(ctx); return o, err })
	rep.Do("update.scoped", "app", func() (any, error) {
		r, err := db.NewUpdate().Model((*Order)(nil)).Set("note = ?", "bun bulk").Where("account_id = ? AND id = ?", T, o.ID).Exec(ctx)
		if err != nil {
			return nil, err
		}
		return r.RowsAffected()
	})
	rep.Do("tx.savepoint", "app", func() (any, error) {
		c := &Customer{AccountID: T, Name: "bun customer"}
		li := &LineItem{AccountID: T, OrderID: o.ID, SKU: "SKU-BUN", Qty: 2}
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewInsert().Model(c).Exec(ctx); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT sp1"); err != nil {
				return err
			}
			if _, err := tx.NewInsert().Model(&LineItem{AccountID: T, OrderID: o.ID, SKU: "BAD", Qty: -1}).Exec(ctx); err != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT sp1"); err != nil {
					return err
				}
			}
			_, err := tx.NewInsert().Model(li).Exec(ctx)
			return err
		})
		return []any{c, li}, err
	})
	rep.Do("prepared.reuse", "app", func() (any, error) {
		var out []int64
		for _, id := range []int64{1, 5, o.ID} {
			var n int64
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM orders WHERE account_id = ? AND id = ?", T, id).Scan(&n); err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	})
	rep.Do("delete.scoped", "app", func() (any, error) {
		r, err := db.NewDelete().Model((*LineItem)(nil)).Where("account_id = ? AND order_id = ?", T, o.ID).Exec(ctx)
		if err != nil {
			return nil, err
		}
		return r.RowsAffected()
	})
	rep.Do("assoc.relation_has_many", "unpinned", func() (any, error) {
		var os []Order
		return os, db.NewSelect().Model(&os).Relation("Items").Where("?TableAlias.account_id = ?", T).Order("order.id").Scan(ctx) // items: WHERE order_id IN (..)
	})
	rep.Do("assoc.relation_belongs_to", "unpinned", func() (any, error) {
		var lis []LineItem
		return lis, db.NewSelect().Model(&lis).Relation("Order").Where("line_item.account_id = ?", T).Order("line_item.id").Scan(ctx)
	})
	rep.Do("model.update_by_pk", "unpinned", func() (any, error) {
		o.Note = ptr("bun saved")
		_, err := db.NewUpdate().Model(o).WherePK().Exec(ctx)
		return o, err
	})
	rep.Do("model.select_by_pk", "unpinned", func() (any, error) {
		x := &Order{ID: 1}
		return x, db.NewSelect().Model(x).WherePK().Scan(ctx)
	})
	rep.Do("model.delete_by_pk", "unpinned", func() (any, error) {
		c := &Customer{}
		if err := db.NewSelect().Model(c).Where("account_id = ?", T).Order("id DESC").Limit(1).Scan(ctx); err != nil {
			return nil, err
		}
		_, err := db.NewDelete().Model(c).WherePK().Exec(ctx)
		return []int64{c.AccountID}, err
	})
	rep.Do("unscoped.select", "unscoped", func() (any, error) {
		var os []Order
		return os, db.NewSelect().Model(&os).Order("id").Scan(ctx)
	})
	rep.Do("cross.select", "cross", func() (any, error) {
		var os []Order
		return os, db.NewSelect().Model(&os).Where("account_id = ?", O).Scan(ctx)
	})
	rep.Do("cross.update", "cross", func() (any, error) {
		_, err := db.NewUpdate().Model((*Order)(nil)).Set("note = 'x'").Where("account_id = ?", O).Exec(ctx)
		return nil, err
	})
	rep.Do("cross.insert", "cross", func() (any, error) {
		_, err := db.NewInsert().Model(&Order{ID: 990024, AccountID: O, Total: 1}).Exec(ctx)
		return nil, err
	})
	rep.Dump()
}
