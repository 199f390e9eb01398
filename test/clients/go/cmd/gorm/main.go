// Command gorm is the client matrix's GORM program (gorm.io/driver/postgres
// over pgx): models with has-many/belongs-to associations, Create/Save/
// Delete defaults, Preload and Joins, a tenant scope, nested transactions
// (SAVEPOINT), PrepareStmt mode and the Migrator's introspection.
package main

import (
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/pgtenant/pgtenant/test/clients/go/internal/report"
)

type Order struct {
	ID        int64 `gorm:"primaryKey"`
	AccountID int64
	Total     float64
	Note      *string
	Items     []LineItem `gorm:"foreignKey:OrderID"`
}

type LineItem struct {
	ID        int64 `gorm:"primaryKey"`
	AccountID int64
	OrderID   int64
	SKU       string `gorm:"column:sku"`
	Qty       int
	Order     *Order `gorm:"foreignKey:OrderID"`
}

type Customer struct {
	ID        int64 `gorm:"primaryKey"`
	AccountID int64
	Name      string
	Email     *string
}

func ptr[T any](v T) *T { return &v }

func main() {
	e := report.FromEnv()
	rep := &report.Report{Client: "gorm", Version: report.ModVersion("gorm.io/gorm")}
	var db *gorm.DB
	rep.Do("connect", "app", func() (any, error) {
		var err error
		db, err = gorm.Open(postgres.Open(e.URL+"&application_name=clients-gorm"), &gorm.Config{Logger: logger.Discard, PrepareStmt: true})
		if err != nil {
			return nil, err
		}
		sqlDB, err := db.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(2)
		rep.Mark = func(q string) error { return db.Exec(q).Error }
		return nil, sqlDB.Ping()
	})
	if rep.Mark == nil {
		rep.Dump()
		return
	}
	T, O := e.Tenant, e.Other
	tenant := func(d *gorm.DB) *gorm.DB { return d.Where("account_id = ?", T) }
	rep.Do("read.scoped", "app", func() (any, error) {
		var os []Order
		return os, db.Scopes(tenant).Order("id").Find(&os).Error
	})
	o := Order{AccountID: T, Total: 12.5, Note: ptr("gorm")}
	rep.Do("model.create", "app", func() (any, error) { return []Order{o}, db.Create(&o).Error })
	rep.Do("model.updates_scoped", "app", func() (any, error) {
		r := db.Model(&Order{}).Scopes(tenant).Where("id = ?", o.ID).Update("note", "gorm bulk")
		return r.RowsAffected, r.Error
	})
	rep.Do("tx.savepoint", "app", func() (any, error) {
		c := Customer{AccountID: T, Name: "gorm customer"}
		li := LineItem{AccountID: T, OrderID: o.ID, SKU: "SKU-GORM", Qty: 2}
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&c).Error; err != nil {
				return err
			}
			_ = tx.Transaction(func(sp *gorm.DB) error { // SAVEPOINT
				return sp.Create(&LineItem{AccountID: T, OrderID: o.ID, SKU: "BAD", Qty: -1}).Error
			})
			return tx.Transaction(func(sp *gorm.DB) error { return sp.Create(&li).Error })
		})
		return []any{c, li}, err
	})
	rep.Do("model.delete_scoped", "app", func() (any, error) {
		r := db.Scopes(tenant).Where("order_id = ?", o.ID).Delete(&LineItem{})
		return r.RowsAffected, r.Error
	})
	rep.Do("introspect.migrator", "unpinned", func() (any, error) {
		m := db.Migrator()
		cols, err := m.ColumnTypes(&Order{}) // SELECT * FROM "orders" LIMIT 1 plus information_schema
		if err != nil {
			return nil, err
		}
		var names []string
		for _, c := range cols {
			names = append(names, c.Name())
		}
		return []any{names, m.HasTable(&Order{}), m.HasColumn(&Order{}, "note")}, nil
	})
	rep.Do("assoc.preload_scoped", "unpinned", func() (any, error) {
		var os []Order
		return os, db.Scopes(tenant).Preload("Items", "account_id = ?", T).Order("id").Find(&os).Error
	})
	rep.Do("assoc.preload_default", "unpinned", func() (any, error) {
		var os []Order
		return os, db.Scopes(tenant).Preload("Items").Order("id").Find(&os).Error // items: WHERE order_id IN (..)
	})
	rep.Do("assoc.joins_belongs_to", "unpinned", func() (any, error) {
		var lis []LineItem
		return lis, db.Joins("Order").Where("line_items.account_id = ?", T).Order("line_items.id").Find(&lis).Error
	})
	rep.Do("model.save_default", "unpinned", func() (any, error) {
		o.Note = ptr("gorm saved")
		return []Order{o}, db.Save(&o).Error // UPDATE ... WHERE "id" = $n
	})
	rep.Do("model.first_by_pk", "unpinned", func() (any, error) {
		var x Order
		return []Order{x}, db.First(&x, 1).Error
	})
	rep.Do("model.delete_default", "unpinned", func() (any, error) {
		var c Customer
		if err := db.Scopes(tenant).Order("id desc").First(&c).Error; err != nil {
			return nil, err
		}
		return []int64{c.AccountID}, db.Delete(&c).Error // DELETE FROM customers WHERE id = $1
	})
	rep.Do("unscoped.find", "unscoped", func() (any, error) {
		var os []Order
		return os, db.Order("id").Find(&os).Error
	})
	rep.Do("cross.find", "cross", func() (any, error) {
		var os []Order
		return os, db.Where("account_id = ?", O).Find(&os).Error
	})
	rep.Do("cross.update", "cross", func() (any, error) {
		return nil, db.Model(&Order{}).Where("account_id = ?", O).Update("note", "x").Error
	})
	rep.Do("cross.create", "cross", func() (any, error) {
		return nil, db.Create(&Order{ID: 990023, AccountID: O, Total: 1}).Error
	})
	rep.Dump()
}
