package e2e

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// A realistic application session from a real ORM (GORM over pgx's
// database/sql driver), pgx's own type introspection and psql's describe
// commands, all through the live proxy with the real policy: what they send
// for a properly scoped app must never be denied, and the unscoped variants
// must be.

// The models map the existing demo tables (AutoMigrate would be DDL, which
// tenants may not run). The primary keys are the tables' own: (account_id, id).
type ormOrder struct {
	ID        int64 `gorm:"primaryKey;autoIncrement"`
	AccountID int64 `gorm:"primaryKey;autoIncrement:false"`
	Total     float64
	Note      *string
	LineItems []ormLineItem `gorm:"foreignKey:AccountID,OrderID;references:AccountID,ID"`
}

func (ormOrder) TableName() string { return "orders" }

type ormLineItem struct {
	ID        int64 `gorm:"primaryKey;autoIncrement"`
	AccountID int64 `gorm:"primaryKey;autoIncrement:false"`
	OrderID   int64
	SKU       string `gorm:"column:sku"`
	Qty       int
	Order     *ormOrder `gorm:"foreignKey:AccountID,OrderID;references:AccountID,ID"`
}

func (ormLineItem) TableName() string { return "line_items" }

type ormCustomer struct {
	ID        int64 `gorm:"primaryKey;autoIncrement"`
	AccountID int64 `gorm:"primaryKey;autoIncrement:false"`
	Name      string
	Email     *string
}

func (ormCustomer) TableName() string { return "customers" }

type ormCountry struct {
	Code string `gorm:"primaryKey"`
	Name string
}

func (ormCountry) TableName() string { return "countries" }

// ormTenant scopes a query to tenant 42, as an application's tenant scope does.
func ormTenant(db *gorm.DB) *gorm.DB { return db.Where("account_id = ?", 42) }

// openGorm opens GORM through the proxy as tenant 42.
func openGorm(t *testing.T, env *proxytest.Env) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(env.DSN(t, "42", "eu-west")), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("gorm open: %v", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sqlDB.Close() })
	return db.WithContext(ctxT(t))
}

func ptr[T any](v T) *T { return &v }

// mustOK fails t with what when err is not nil.
func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func TestPolicyGormScopedSessionHasNoFalseDenials(t *testing.T) {
	env, _ := policyEnv(t)
	db := openGorm(t, env)

	// Reads.
	var orders []ormOrder
	mustOK(t, "Find", db.Scopes(ormTenant).Order("id").Find(&orders).Error)
	if len(orders) < 4 {
		t.Errorf("Find: %d orders, want tenant 42's (at least 4)", len(orders))
	}
	for _, o := range orders {
		if o.AccountID != 42 {
			t.Errorf("Find returned an order of account %d", o.AccountID)
		}
	}
	var first ormOrder
	mustOK(t, "First by id", db.Scopes(ormTenant).First(&first, 1001).Error)
	if first.ID != 1001 || first.Note == nil || *first.Note != "first big order" {
		t.Errorf("First(1001) = %+v", first)
	}
	var byStruct ormOrder
	mustOK(t, "First by struct condition", db.Where(&ormOrder{AccountID: 42, ID: 5}).First(&byStruct).Error)
	var withItems []ormOrder
	mustOK(t, "Preload with the tenant condition", db.Scopes(ormTenant).Preload("LineItems", "account_id = ?", 42).Order("id").Find(&withItems).Error)
	items := 0
	for _, o := range withItems {
		items += len(o.LineItems)
	}
	if items < 3 {
		t.Errorf("Preload: %d line items, want tenant 42's (at least 3)", items)
	}
	var n int64
	mustOK(t, "Count", db.Model(&ormOrder{}).Scopes(ormTenant).Count(&n).Error)
	if n < 4 {
		t.Errorf("Count = %d", n)
	}
	var ids []int64
	mustOK(t, "Pluck", db.Model(&ormOrder{}).Scopes(ormTenant).Order("id").Pluck("id", &ids).Error)
	if len(ids) != int(n) {
		t.Errorf("Pluck: %d ids, Count said %d", len(ids), n)
	}
	var joined []struct {
		SKU  string
		Note *string
	}
	mustOK(t, "Joins (SQL)", db.Model(&ormLineItem{}).Select("line_items.sku, orders.note").
		Joins("JOIN orders ON orders.id = line_items.order_id AND orders.account_id = line_items.account_id").
		Where("line_items.account_id = ?", 42).Scan(&joined).Error)
	if len(joined) < 3 {
		t.Errorf("Joins: %d rows", len(joined))
	}
	var withOrder []ormLineItem
	mustOK(t, "Joins (association)", db.Joins("Order").Where("line_items.account_id = ?", 42).Find(&withOrder).Error)
	for _, li := range withOrder {
		if li.Order == nil || li.Order.AccountID != 42 {
			t.Errorf("Joins(Order): line item %d has order %+v", li.ID, li.Order)
		}
	}
	var customers []ormCustomer
	mustOK(t, "customers", db.Scopes(ormTenant).Where("email LIKE ?", "%@example.com").Find(&customers).Error)
	var countries []ormCountry
	mustOK(t, "global table, unscoped", db.Order("code").Find(&countries).Error)
	if len(countries) < 4 {
		t.Errorf("countries: %d", len(countries))
	}
	var total float64
	mustOK(t, "Raw", db.Raw("SELECT coalesce(sum(total), 0) FROM orders WHERE account_id = ?", 42).Scan(&total).Error)

	// Writes: Create (with an association), Save, Updates, Update, Delete.
	o := ormOrder{AccountID: 42, Total: 12.5, Note: ptr("h8-orm")}
	mustOK(t, "Create", db.Create(&o).Error)
	li := ormLineItem{AccountID: 42, OrderID: o.ID, SKU: "SKU-H8", Qty: 2}
	mustOK(t, "Create line item", db.Create(&li).Error)
	if o.ID == 0 || li.ID == 0 {
		t.Fatalf("Create did not return the ids: %+v %+v", o, li)
	}
	batch := []ormCustomer{{AccountID: 42, Name: "h8 one"}, {AccountID: 42, Name: "h8 two", Email: ptr("two@example.com")}}
	mustOK(t, "Create in batch", db.Create(&batch).Error)
	mustOK(t, "Delete the batch", db.Scopes(ormTenant).Where("name LIKE ?", "h8 %").Delete(&ormCustomer{}).Error)
	o.Total = 13
	mustOK(t, "Save", db.Scopes(ormTenant).Save(&o).Error)
	mustOK(t, "Save by primary key", db.Save(&o).Error)
	mustOK(t, "Updates (map)", db.Model(&ormOrder{}).Scopes(ormTenant).Where("id = ?", o.ID).
		Updates(map[string]any{"total": 14, "note": "h8-orm-updated"}).Error)
	mustOK(t, "Updates (struct via Model)", db.Model(&o).Updates(ormOrder{Total: 15}).Error)
	mustOK(t, "Update column", db.Model(&o).Scopes(ormTenant).Update("note", "h8-orm-2").Error)
	var reread ormOrder
	mustOK(t, "reread", db.Scopes(ormTenant).First(&reread, o.ID).Error)
	if reread.Total != 15 || reread.Note == nil || *reread.Note != "h8-orm-2" {
		t.Errorf("after the updates: %+v", reread)
	}
	mustOK(t, "Delete line items", db.Scopes(ormTenant).Where("order_id = ?", o.ID).Delete(&ormLineItem{}).Error)
	res := db.Scopes(ormTenant).Delete(&o)
	mustOK(t, "Delete", res.Error)
	if res.RowsAffected != 1 {
		t.Errorf("Delete affected %d rows", res.RowsAffected)
	}

	// Transactions: one committed, one rolled back by the callback's error.
	var kept ormOrder
	mustOK(t, "Transaction", db.Transaction(func(tx *gorm.DB) error {
		kept = ormOrder{AccountID: 42, Total: 1, Note: ptr("h8-orm-tx")}
		if err := tx.Create(&kept).Error; err != nil {
			return err
		}
		if err := tx.Create(&ormLineItem{AccountID: 42, OrderID: kept.ID, SKU: "SKU-TX"}).Error; err != nil {
			return err
		}
		return tx.Model(&kept).Scopes(ormTenant).Update("total", 2).Error
	}))
	errRollback := errors.New("rollback please")
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&ormOrder{AccountID: 42, Total: 1, Note: ptr("h8-orm-rolled-back")}).Error; err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Errorf("rolled-back Transaction: %v", err)
	}
	var left int64
	mustOK(t, "Count after the transactions", db.Model(&ormOrder{}).Scopes(ormTenant).
		Where("note IN ?", []string{"h8-orm-tx", "h8-orm-rolled-back"}).Count(&left).Error)
	if left != 1 {
		t.Errorf("after one committed and one rolled-back transaction: %d orders, want 1", left)
	}
	// Clean up, cascading to the line item.
	mustOK(t, "cleanup", db.Scopes(ormTenant).Where("note = ?", "h8-orm-tx").Delete(&ormOrder{}).Error)
}

// GORM addresses rows of a composite key ((account_id, id) here) with
// row-wise comparisons: ("account_id","order_id") IN (($1,$2),($3,$4)).
func TestPolicyGormCompositeKeys(t *testing.T) {
	env, _ := policyEnv(t)
	db := openGorm(t, env)
	var orders []ormOrder
	mustOK(t, "Preload by the composite foreign key", db.Scopes(ormTenant).Preload("LineItems").Order("id").Find(&orders).Error)
	items := 0
	for _, o := range orders {
		for _, li := range o.LineItems {
			items++
			if li.AccountID != 42 || li.OrderID != o.ID {
				t.Errorf("order %d preloaded line item %+v", o.ID, li)
			}
		}
	}
	if items < 3 {
		t.Errorf("Preload: %d line items, want tenant 42's (at least 3)", items)
	}
	var assoc []ormLineItem
	mustOK(t, "Association Find", db.Model(&ormOrder{ID: 1001, AccountID: 42}).Association("LineItems").Find(&assoc))
	if len(assoc) != 1 || assoc[0].SKU != "SKU-1" {
		t.Errorf("Association(LineItems) of order 1001 = %+v", assoc)
	}
	var byKeys []ormOrder
	mustOK(t, "Where row IN", db.Where("(account_id, id) IN ?", [][]any{{42, 1}, {42, 5}}).Order("id").Find(&byKeys).Error)
	if len(byKeys) != 2 {
		t.Errorf("Where (account_id, id) IN: %d orders", len(byKeys))
	}
	wantGormDenied(t, "Where row IN naming tenant 7", db.Where("(account_id, id) IN ?", [][]any{{42, 1}, {7, 2001}}).Find(&byKeys).Error)

	// Delete of loaded records: DELETE ... WHERE ("id","account_id") IN ((...)).
	made := []ormOrder{{AccountID: 42, Total: 1, Note: ptr("h8-orm-pk")}, {AccountID: 42, Total: 2, Note: ptr("h8-orm-pk")}}
	mustOK(t, "Create two", db.Create(&made).Error)
	res := db.Delete(&made)
	mustOK(t, "Delete of records by primary key", res.Error)
	if res.RowsAffected != 2 {
		t.Errorf("Delete of two records affected %d rows", res.RowsAffected)
	}
	wantGormDenied(t, "Delete of another tenant's record", db.Delete(&ormOrder{ID: 2001, AccountID: 7}).Error)
}

func TestPolicyGormCreateWithAssociations(t *testing.T) {
	env, _ := policyEnv(t)
	db := openGorm(t, env)
	o := ormOrder{AccountID: 42, Total: 1, Note: ptr("h8-orm-assoc"),
		LineItems: []ormLineItem{{AccountID: 42, SKU: "SKU-H8", Qty: 2}}}
	defer db.Scopes(ormTenant).Where("note = ?", "h8-orm-assoc").Delete(&ormOrder{})
	mustOK(t, "Create with line items", db.Create(&o).Error)
	if o.ID == 0 || len(o.LineItems) != 1 || o.LineItems[0].ID == 0 || o.LineItems[0].OrderID != o.ID {
		t.Errorf("Create did not return the ids: %+v", o)
	}
}

// wantGormDenied fails t unless err is the proxy's policy denial.
func wantGormDenied(t *testing.T, what string, err error) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" || !strings.HasPrefix(pe.Message, "pgtenant:") {
		t.Errorf("%s: got %v, want a pgtenant 42501 denial", what, err)
	}
}

func TestPolicyGormUnscopedIsDenied(t *testing.T) {
	env, _ := policyEnv(t)
	db := openGorm(t, env)
	var orders []ormOrder
	wantGormDenied(t, "Find without the tenant condition", db.Find(&orders).Error)
	wantGormDenied(t, "First by id only", db.First(&ormOrder{}, 1001).Error)
	var n int64
	wantGormDenied(t, "Count without the tenant condition", db.Model(&ormOrder{}).Count(&n).Error)
	wantGormDenied(t, "Delete without the tenant condition", db.Where("id = ?", 999999).Delete(&ormOrder{}).Error)
	wantGormDenied(t, "Create with AccountID 7", db.Create(&ormOrder{AccountID: 7, Total: 1, Note: ptr("h8-orm-7")}).Error)
	wantGormDenied(t, "Update setting account_id", db.Model(&ormOrder{}).Scopes(ormTenant).Where("id = ?", 1).Update("account_id", 7).Error)
	wantGormDenied(t, "Updates of a model with only the id", db.Model(&ormOrder{ID: 1}).Updates(map[string]any{"total": 0}).Error)
	wantGormDenied(t, "Save of another tenant's order", db.Save(&ormOrder{ID: 2001, AccountID: 7, Total: 0}).Error)
	wantGormDenied(t, "Joins without pinning the joined table", db.Model(&ormLineItem{}).Select("line_items.sku").
		Joins("JOIN orders ON orders.id = line_items.order_id").Where("line_items.account_id = ?", 42).Scan(&[]string{}).Error)
	// The session still works after the denials.
	mustOK(t, "scoped Find after the denials", db.Scopes(ormTenant).Find(&orders).Error)
}

func TestPolicyPgxTypeIntrospection(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	// LoadType reads pg_type and pg_attribute (a table's row type is a
	// composite type); LoadTypes sends pgx's recursive catalog query.
	orderType, err := conn.LoadType(ctx, "orders")
	if err != nil {
		t.Fatalf("LoadType(orders): %v", err)
	}
	conn.TypeMap().RegisterType(orderType)
	types, err := conn.LoadTypes(ctx, []string{"_orders", "line_items", "countries"})
	if err != nil {
		t.Fatalf("LoadTypes: %v", err)
	}
	conn.TypeMap().RegisterTypes(types)
	// The loaded composite type decodes whole rows.
	type orderRow struct {
		ID, AccountID int64
		Total         float64
		Note          *string
	}
	var row orderRow
	if err := conn.QueryRow(ctx, "SELECT o FROM orders o WHERE o.account_id = $1 AND o.id = $2", 42, 1001).Scan(&row); err != nil {
		t.Fatalf("scan a row as the loaded composite type: %v", err)
	}
	if row.ID != 1001 || row.AccountID != 42 || row.Note == nil || *row.Note != "first big order" {
		t.Errorf("composite row = %+v", row)
	}
	var rows []orderRow
	if err := conn.QueryRow(ctx, "SELECT array_agg(o ORDER BY o.id) FROM orders o WHERE o.account_id = $1", 42).Scan(&rows); err != nil {
		t.Fatalf("scan an array of the loaded composite type: %v", err)
	}
	if len(rows) < 4 {
		t.Errorf("array of orders: %d elements", len(rows))
	}
	for _, r := range rows {
		if r.AccountID != 42 {
			t.Errorf("array of orders holds %+v", r)
		}
	}
}

func TestPolicyPsqlDescribeCommands(t *testing.T) {
	env, _ := policyEnv(t)
	tok := proxytest.Token(t, "42", "eu-west", 0)
	cases := []struct {
		cmd   string
		wants []string
	}{
		{`\dt`, []string{"orders", "customers", "line_items", "countries"}},
		{`\l`, []string{"postgres", "template1"}},
		{`\dn`, []string{"public"}},
		{`\d`, []string{"orders", "orders_id_seq"}},
		{`\df`, []string{"report_all_orders"}},
		{`\d orders`, []string{`Table "public.orders"`, "account_id", "orders_pkey", "tenant_isolation"}},
		{`\d+ countries`, []string{`Table "public.countries"`, "code"}},
		{`\dX`, []string{"List of extended statistics"}},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			out, stderr, err := runPsql(t, env, tok, "-v", "VERBOSITY=verbose", "-c", tc.cmd)
			if err != nil || strings.Contains(stderr, "ERROR") {
				t.Fatalf("psql -c %s: %v\n%s", tc.cmd, err, stderr)
			}
			for _, want := range tc.wants {
				if !strings.Contains(out, want) {
					t.Errorf("psql -c %s output lacks %q:\n%s", tc.cmd, want, out)
				}
			}
		})
	}
}

// TestPolicyDriverHousekeepingIsAllowed sends what drivers and ORMs send
// around an application's own statements (connection setup, health checks,
// transaction control, introspection), with both protocols: none of it may
// be denied.
func TestPolicyDriverHousekeepingIsAllowed(t *testing.T) {
	env, _ := policyEnv(t)
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	ctx := ctxT(t)
	statements := []struct{ client, sql string }{
		{"pgx Ping", "-- ping"},
		{"pgx DeallocateAll", "deallocate all"},
		{"pgx BeginTx options", "begin isolation level serializable read only deferrable"},
		{"transaction control", "commit"},
		{"transaction control", "START TRANSACTION READ WRITE"},
		{"nested transactions (GORM, JDBC)", "SAVEPOINT sp1"},
		{"nested transactions (GORM, JDBC)", "ROLLBACK TO SAVEPOINT sp1"},
		{"nested transactions (GORM, JDBC)", "RELEASE SAVEPOINT sp1"},
		{"transaction control", "ROLLBACK"},
		{"JDBC", "SET extra_float_digits = 3"},
		{"JDBC", "SET application_name = 'PostgreSQL JDBC Driver'"},
		{"JDBC, SQLAlchemy", "select current_schema()"},
		{"JDBC, SQLAlchemy", "show transaction isolation level"},
		{"SQLAlchemy", "select pg_catalog.version()"},
		{"SQLAlchemy", "show standard_conforming_strings"},
		{"SQLAlchemy", "SELECT t.oid, typarray FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = 'hstore'"},
		{"Rails", "SET client_min_messages TO 'warning'"},
		{"Rails", "SET intervalstyle = iso_8601"},
		{"Rails", "SET SESSION timezone TO 'UTC'"},
		{"Django", "SELECT set_config('TimeZone', 'UTC', false)"},
		{"statement timeouts", "SET statement_timeout = 5000"},
		{"statement timeouts", "RESET statement_timeout"},
		{"introspection", "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = 'orders'::regclass AND a.attnum > 0"},
		{"introspection", "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'orders'"},
		{"introspection", "SELECT constraint_name FROM information_schema.table_constraints WHERE table_name = 'orders'"},
		{"introspection", "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'orders'"},
		{"introspection", "SELECT pg_get_serial_sequence('orders', 'id')"},
		{"introspection", "SELECT setting FROM pg_settings WHERE name = 'server_version_num'"},
		{"Hibernate", "select nextval('orders_id_seq')"},
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, st := range statements {
			if _, err := conn.Exec(ctx, st.sql, mode); err != nil {
				t.Errorf("%v: %s: %q: %v", mode, st.client, st.sql, err)
			}
		}
	}
}
