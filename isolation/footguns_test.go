package isolation_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/demo"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

// finding returns the first finding of check whose object contains object.
func finding(rep isolation.Report, check, object string) (isolation.Finding, bool) {
	for _, f := range rep.RLS.Findings {
		if f.Check == check && strings.Contains(f.Object, object) {
			return f, true
		}
	}
	return isolation.Finding{}, false
}

// mustLeak asserts a leak finding naming object, with a fix, that makes its table missing.
func mustLeak(t *testing.T, rep isolation.Report, check, object, fix string) isolation.Finding {
	t.Helper()
	f, ok := finding(rep, check, object)
	if !ok {
		t.Fatalf("no %s finding for %q; findings %+v", check, object, rep.RLS.Findings)
	}
	if f.Severity != isolation.SeverityLeak || !strings.Contains(f.Fix, fix) {
		t.Fatalf("finding %+v: want a leak whose fix mentions %q", f, fix)
	}
	if rep.RLS.Status != isolation.Missing || rep.Status != isolation.Missing {
		t.Fatalf("rls %s region %s: a leak must make the layer missing", rep.RLS.Status, rep.Status)
	}
	if f.Table != "" {
		if tr := table(t, rep, f.Table); tr.Status != isolation.Missing || !strings.Contains(strings.Join(tr.Problems, ";"), f.Object) {
			t.Fatalf("table %s %+v: want missing with a problem naming %s", f.Table, tr, f.Object)
		}
	} else if !strings.Contains(strings.Join(rep.RLS.Problems, ";"), f.Object) {
		t.Fatalf("layer problems %v do not name %s", rep.RLS.Problems, f.Object)
	}
	return f
}

// mustWarn asserts a warning finding naming object whose fix mentions fix.
func mustWarn(t *testing.T, rep isolation.Report, check, object, fix string) {
	t.Helper()
	f, ok := finding(rep, check, object)
	if !ok || f.Severity != isolation.SeverityWarning || !strings.Contains(f.Fix, fix) {
		t.Fatalf("want a %s warning for %q with fix %q; findings %+v", check, object, fix, rep.RLS.Findings)
	}
}

// mustNot asserts no finding of check names object.
func mustNot(t *testing.T, rep isolation.Report, check, object string) {
	t.Helper()
	if f, ok := finding(rep, check, object); ok {
		t.Fatalf("unexpected finding %+v", f)
	}
}

// role creates a cluster-wide role for this fixture, dropped (with what it
// owns or is granted in the fixture's database) when the test ends.
func (f *fixture) role(suffix string) string {
	f.t.Helper()
	name := f.db + "_" + suffix
	f.exec("postgres", "CREATE ROLE "+name+" NOLOGIN")
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = f.c.Exec(ctx, f.db, "DROP OWNED BY "+name+" CASCADE")
		if err := f.c.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+name); err != nil {
			f.t.Errorf("drop role %s: %v", name, err)
		}
	})
	return name
}

// scoped is the fail-closed policy expression the fixture's tables get.
const scoped = "account_id = NULLIF(current_setting('app.current_account_id', true), '')::bigint"

func TestPolicyFailOpen(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, `ALTER TABLE public.orders ALTER COLUMN account_id DROP NOT NULL;`)
	cases := []struct {
		name, setup, undo, object string
	}{
		{"coalesce default", `CREATE POLICY p ON public.orders USING (account_id = COALESCE(NULLIF(current_setting('app.current_account_id', true), ''), '0')::bigint)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"unset matches", `CREATE POLICY p ON public.orders USING (account_id::text = current_setting('app.current_account_id', true) OR current_setting('app.current_account_id', true) IS NULL)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"empty matches", `CREATE POLICY p ON public.orders USING (current_setting('app.current_account_id', true) = '' OR account_id::text = current_setting('app.current_account_id', true))`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"nullable tenant column", `CREATE POLICY p ON public.orders USING (account_id IS NOT DISTINCT FROM NULLIF(current_setting('app.current_account_id', true), '')::bigint)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"any on a null array", `CREATE POLICY p ON public.orders USING (account_id = ANY (string_to_array(current_setting('app.current_account_id', true), ',')::bigint[]) OR account_id IS NULL)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"using true OR'ed with the scoped policy", `CREATE POLICY p ON public.orders FOR SELECT USING (true)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"public policy not scoped", `CREATE POLICY p ON public.orders TO PUBLIC USING (account_id > 0)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"with check open", `DROP POLICY tenant ON public.items; CREATE POLICY tenant ON public.items USING (` + scoped + `) WITH CHECK (true)`,
			`DROP POLICY tenant ON public.items; CREATE POLICY tenant ON public.items USING (` + scoped + `) WITH CHECK (` + scoped + `)`, "policy tenant on public.items"},
		{"prefix match", `CREATE POLICY p ON public.orders USING (account_id::text LIKE NULLIF(current_setting('app.current_account_id', true), '') || '%')`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"range next to a literal", `CREATE POLICY p ON public.orders USING (account_id > 100000)`,
			"DROP POLICY p ON public.orders", "policy p, tenant on public.orders"},
		{"insert policy open", `CREATE POLICY p ON public.items FOR INSERT WITH CHECK (account_id IS NOT NULL)`,
			"DROP POLICY p ON public.items", "policy p, tenant on public.items"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.exec(f.db, tc.setup)
			defer f.exec(f.db, tc.undo)
			rep := f.inspect()
			got := mustLeak(t, rep, isolation.CheckPolicyFailOpen, tc.object, "NULLIF(current_setting('app.current_account_id', true), '')")
			if !strings.Contains(got.Detail, "admitted") {
				t.Fatalf("detail %q does not say which row was admitted", got.Detail)
			}
		})
	}

	// The correct versions: fail-closed policies, an open policy reined in by
	// a restrictive one, an open policy for another role.
	rep := f.inspect()
	if rep.Status != isolation.Active {
		t.Fatalf("fixture after undo: %s %+v %+v", rep.Status, rep.RLS, rep.RLS.Findings)
	}
	mustNot(t, rep, isolation.CheckPolicyFailOpen, "")
	other := f.role("other")
	f.exec(f.db, `DROP POLICY tenant ON public.orders; CREATE POLICY tenant ON public.orders USING (`+scoped+`);
CREATE POLICY open ON public.orders FOR SELECT USING (true);
CREATE POLICY pin ON public.orders AS RESTRICTIVE USING (`+scoped+`);
CREATE POLICY other_role ON public.orders TO `+other+` USING (true);`)
	rep = f.inspect()
	mustNot(t, rep, isolation.CheckPolicyFailOpen, "")
	mustNot(t, rep, isolation.CheckPolicyNotEvaluated, "")
	if o := table(t, rep, "public.orders"); o.Status != isolation.Active {
		t.Fatalf("orders with fail-closed policies: %+v", o)
	}
}

func TestPolicyThatCannotBeEvaluated(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	// The own tenant's row raises: the check cannot show anything and says so.
	f.exec(f.db, `DROP POLICY tenant ON public.orders;
CREATE POLICY tenant ON public.orders USING (account_id = current_setting('app.current_account_id')::bigint AND 1/(account_id - account_id) = 1)`)
	rep := f.inspect()
	mustWarn(t, rep, isolation.CheckPolicyNotEvaluated, "policy tenant on public.orders", "NULLIF")
	mustNot(t, rep, isolation.CheckPolicyFailOpen, "public.orders")
}

func TestTenantSettingDefault(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	svc := f.c.ServiceUser
	t.Cleanup(func() {
		_ = f.c.Exec(context.Background(), "postgres", "ALTER ROLE "+svc+" IN DATABASE "+f.db+" RESET ALL")
	})
	// Every session of the service role starts as tenant 42.
	f.exec("postgres", "ALTER ROLE "+svc+" IN DATABASE "+f.db+" SET app.current_account_id = '42'")
	mustLeak(t, f.inspect(), isolation.CheckSettingDefault, "setting app.current_account_id", "RESET app.current_account_id")
	// An empty default fails closed like an unset setting.
	f.exec("postgres", "ALTER ROLE "+svc+" IN DATABASE "+f.db+" SET app.current_account_id = ''")
	rep := f.inspect()
	mustNot(t, rep, isolation.CheckSettingDefault, "")
	if rep.Status != isolation.Active {
		t.Fatalf("with an empty default: %s %+v", rep.Status, rep.RLS)
	}
	// ... and a policy that admits the empty setting is still caught.
	f.exec(f.db, `CREATE POLICY p ON public.orders USING (current_setting('app.current_account_id', true) = '')`)
	mustLeak(t, f.inspect(), isolation.CheckPolicyFailOpen, "policy p, tenant on public.orders", "NULLIF")
}

func TestTableOwnedByServiceRole(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	mustNot(t, f.inspect(), isolation.CheckTableOwner, "")
	// Forced, but the owner can switch it off: still a leak of the RLS layer.
	f.exec(f.db, "ALTER TABLE public.items OWNER TO "+f.c.ServiceUser)
	got := mustLeak(t, f.inspect(), isolation.CheckTableOwner, "table public.items", "ALTER TABLE public.items OWNER TO")
	if !strings.Contains(got.Detail, "can disable it") {
		t.Fatalf("detail %q", got.Detail)
	}
	// Owned through membership in the owning role.
	group := f.role("owners")
	f.exec(f.db, "ALTER TABLE public.items OWNER TO "+group+"; GRANT "+group+" TO "+f.c.ServiceUser)
	mustLeak(t, f.inspect(), isolation.CheckTableOwner, "table public.items", "OWNER TO")
	f.exec(f.db, "REVOKE "+group+" FROM "+f.c.ServiceUser)
	if rep := f.inspect(); rep.Status != isolation.Active {
		t.Fatalf("owned by a role the service role is not in: %s %+v", rep.Status, rep.RLS.Findings)
	}
}

func TestDefinerViews(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	svc := f.c.ServiceUser
	owner := f.role("viewowner")
	// Owned by the superuser, readable by the service role: a leak.
	f.exec(f.db, `CREATE VIEW public.orders_v AS SELECT id, account_id, total FROM public.orders;
CREATE VIEW public.orders_vv AS SELECT id FROM public.orders_v;
GRANT SELECT ON public.orders_vv TO `+svc)
	rep := f.inspect()
	mustLeak(t, rep, isolation.CheckViewDefiner, "view public.orders_vv", "ALTER VIEW public.orders_vv SET (security_invoker = true)")
	mustLeak(t, rep, isolation.CheckViewDefiner, "view public.orders_v", "security_invoker")

	// security_invoker on both: the caller's RLS applies.
	f.exec(f.db, `ALTER VIEW public.orders_v SET (security_invoker = true); ALTER VIEW public.orders_vv SET (security_invoker = on)`)
	rep = f.inspect()
	mustNot(t, rep, isolation.CheckViewDefiner, "")
	if rep.Status != isolation.Active {
		t.Fatalf("with security_invoker views: %s %+v", rep.Status, rep.RLS)
	}

	// Not readable by the service role: nothing to report.
	f.exec(f.db, `ALTER VIEW public.orders_v RESET (security_invoker); ALTER VIEW public.orders_vv RESET (security_invoker);
REVOKE SELECT ON public.orders_vv FROM `+svc)
	mustNot(t, f.inspect(), isolation.CheckViewDefiner, "")

	// Owned by a role subject to forced RLS: a warning, the layer stays active.
	f.exec(f.db, `GRANT SELECT ON public.orders TO `+owner+`;
ALTER VIEW public.orders_v OWNER TO `+owner+`; GRANT SELECT ON public.orders_v TO `+svc)
	rep = f.inspect()
	mustWarn(t, rep, isolation.CheckViewDefiner, "view public.orders_v", "security_invoker")
	if rep.Status != isolation.Active {
		t.Fatalf("view owned by an RLS-bound role: %s %+v", rep.Status, rep.RLS)
	}
	// ... but a leak once the table stops forcing RLS on its owner, and the view's owner owns it.
	f.exec(f.db, `ALTER TABLE public.orders OWNER TO `+owner+`; ALTER TABLE public.orders NO FORCE ROW LEVEL SECURITY`)
	mustLeak(t, f.inspect(), isolation.CheckViewDefiner, "view public.orders_v", "security_invoker")
}

func TestMaterializedView(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	f.exec(f.db, `CREATE MATERIALIZED VIEW public.orders_mv AS SELECT account_id, count(*) FROM public.orders GROUP BY 1`)
	mustNot(t, f.inspect(), isolation.CheckMaterializedView, "")
	f.exec(f.db, `GRANT SELECT ON public.orders_mv TO `+f.c.ServiceUser)
	mustLeak(t, f.inspect(), isolation.CheckMaterializedView, "materialized view public.orders_mv", "REVOKE SELECT ON public.orders_mv")
}

func TestSecurityDefinerFunctions(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	owner := f.role("fnowner")
	// Owned by the superuser, EXECUTE granted to PUBLIC by default: a leak.
	f.exec(f.db, `CREATE FUNCTION public.order_count(a bigint) RETURNS bigint LANGUAGE sql SECURITY DEFINER
  AS 'SELECT count(*) FROM public.orders WHERE account_id = a'`)
	rep := f.inspect()
	got := mustLeak(t, rep, isolation.CheckSecurityDefiner, "function public.order_count(", "SECURITY INVOKER")
	if !strings.Contains(got.Detail, "superuser") {
		t.Fatalf("detail %q does not say why", got.Detail)
	}
	// Not executable by the service role: fine.
	f.exec(f.db, `REVOKE EXECUTE ON FUNCTION public.order_count(bigint) FROM PUBLIC`)
	rep = f.inspect()
	mustNot(t, rep, isolation.CheckSecurityDefiner, "")
	if rep.Status != isolation.Active {
		t.Fatalf("after REVOKE: %s %+v", rep.Status, rep.RLS)
	}
	// SECURITY INVOKER: fine.
	f.exec(f.db, `GRANT EXECUTE ON FUNCTION public.order_count(bigint) TO PUBLIC; ALTER FUNCTION public.order_count(bigint) SECURITY INVOKER`)
	mustNot(t, f.inspect(), isolation.CheckSecurityDefiner, "")
	// Owned by an unprivileged role that owns no tenant table: fine.
	f.exec(f.db, `ALTER FUNCTION public.order_count(bigint) SECURITY DEFINER;
ALTER FUNCTION public.order_count(bigint) OWNER TO `+owner)
	mustNot(t, f.inspect(), isolation.CheckSecurityDefiner, "")
	// ... the same role owning a tenant table without FORCE: a leak on that table.
	f.exec(f.db, `ALTER TABLE public.items OWNER TO `+owner+`; ALTER TABLE public.items NO FORCE ROW LEVEL SECURITY`)
	got = mustLeak(t, f.inspect(), isolation.CheckSecurityDefiner, "function public.order_count(", "OWNER TO")
	if got.Table != "public.items" {
		t.Fatalf("finding %+v: want table public.items", got)
	}
	// ... with FORCE: a warning (the owner could still disable RLS from the body).
	f.exec(f.db, `ALTER TABLE public.items FORCE ROW LEVEL SECURITY`)
	mustWarn(t, f.inspect(), isolation.CheckSecurityDefiner, "function public.order_count(", "SECURITY INVOKER")
}

func TestExistenceOracles(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	// The fixture's primary keys are (id) alone.
	rep := f.inspect()
	mustWarn(t, rep, isolation.CheckExistenceOracle, "primary key orders_pkey of public.orders", "include account_id")
	if rep.Status != isolation.Active {
		t.Fatalf("an existence oracle is a warning, status %s", rep.Status)
	}
	f.exec(f.db, `ALTER TABLE public.orders DROP CONSTRAINT orders_pkey; ALTER TABLE public.orders ADD PRIMARY KEY (account_id, id);
CREATE UNIQUE INDEX orders_total_idx ON public.orders (total);
CREATE TABLE public.lines (id bigint, account_id bigint NOT NULL, order_id bigint, PRIMARY KEY (account_id, id),
  CONSTRAINT lines_order_fk FOREIGN KEY (order_id, account_id) REFERENCES public.orders (id, account_id),
  CONSTRAINT lines_item_fk FOREIGN KEY (order_id) REFERENCES public.items (id));`)
	rep = f.inspect()
	mustNot(t, rep, isolation.CheckExistenceOracle, "orders_pkey")
	mustWarn(t, rep, isolation.CheckExistenceOracle, "unique index public.orders_total_idx", "include account_id")
	mustWarn(t, rep, isolation.CheckExistenceOracle, "foreign key lines_item_fk of public.lines", "REFERENCES public.items (account_id")
	mustNot(t, rep, isolation.CheckExistenceOracle, "lines_order_fk")
	mustNot(t, rep, isolation.CheckExistenceOracle, "lines_pkey")
	// An exclusion constraint without the tenant column is one too; with it, it is not.
	f.exec(f.db, `CREATE TABLE public.bookings (account_id bigint NOT NULL, room int, during tsrange,
  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&),
  CONSTRAINT bookings_pk PRIMARY KEY (account_id, room))`)
	mustWarn(t, f.inspect(), isolation.CheckExistenceOracle, "exclusion constraint bookings_no_overlap of public.bookings", "include account_id")
	f.exec(f.db, `ALTER TABLE public.bookings DROP CONSTRAINT bookings_no_overlap`)
	mustNot(t, f.inspect(), isolation.CheckExistenceOracle, "bookings")
	// A table without the tenant column that references a tenant table is
	// one when the service role can write it.
	f.exec(f.db, `CREATE TABLE public.order_refs (order_id bigint REFERENCES public.items (id))`)
	mustNot(t, f.inspect(), isolation.CheckExistenceOracle, "public.order_refs")
	f.exec(f.db, `GRANT INSERT ON public.order_refs TO `+f.c.ServiceUser)
	mustWarn(t, f.inspect(), isolation.CheckExistenceOracle, "foreign key order_refs_order_id_fkey of public.order_refs", "REVOKE INSERT, UPDATE ON public.order_refs")
	// A foreign key to a global table is no oracle on tenants.
	f.exec(f.db, `CREATE TABLE public.addresses (id bigint, account_id bigint NOT NULL, country text REFERENCES public.countries (code), PRIMARY KEY (account_id, id))`)
	mustNot(t, f.inspect(), isolation.CheckExistenceOracle, "addresses")
}

func TestSharedSequences(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	svc := f.c.ServiceUser
	f.exec(f.db, `CREATE TABLE public.tickets (id bigserial, account_id bigint NOT NULL, PRIMARY KEY (account_id, id));
CREATE TABLE public.events (id bigint GENERATED BY DEFAULT AS IDENTITY, account_id bigint NOT NULL, PRIMARY KEY (account_id, id));
CREATE SEQUENCE public.shared_seq;
CREATE TABLE public.notes (id bigint DEFAULT nextval('public.shared_seq'), account_id bigint NOT NULL, PRIMARY KEY (account_id, id));
CREATE TABLE public.docs (id uuid DEFAULT gen_random_uuid(), account_id bigint NOT NULL, PRIMARY KEY (account_id, id));`)
	// No privilege on any of them: nothing to report.
	mustNot(t, f.inspect(), isolation.CheckSharedSequence, "")
	f.exec(f.db, `GRANT USAGE ON SEQUENCE public.tickets_id_seq TO `+svc+`; GRANT SELECT ON SEQUENCE public.events_id_seq TO `+svc+`;
GRANT UPDATE ON SEQUENCE public.shared_seq TO `+svc)
	rep := f.inspect()
	mustWarn(t, rep, isolation.CheckSharedSequence, "sequence public.tickets_id_seq", "gen_random_uuid()")
	mustWarn(t, rep, isolation.CheckSharedSequence, "sequence public.events_id_seq", "REVOKE SELECT, UPDATE ON SEQUENCE public.events_id_seq")
	mustWarn(t, rep, isolation.CheckSharedSequence, "sequence public.shared_seq", "gen_random_uuid()")
	mustNot(t, rep, isolation.CheckSharedSequence, "docs")
}

func TestLargeObjects(t *testing.T) {
	f := newFixture(t)
	f.installAudit("ALWAYS")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := pgtest.Conn(t, f.c.SuperuserDSN(f.db))
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT lo_from_bytea(0, 'tenant 42 invoice')").Scan(&oid); err != nil {
		t.Fatal(err)
	}
	// Owned by the superuser, no grant: not readable by the service role.
	mustNot(t, f.inspect(), isolation.CheckLargeObjects, "")
	if _, err := conn.Exec(ctx, "GRANT SELECT ON LARGE OBJECT "+itoa(oid)+" TO "+f.c.ServiceUser); err != nil {
		t.Fatal(err)
	}
	mustWarn(t, f.inspect(), isolation.CheckLargeObjects, "large objects", "REVOKE SELECT ON LARGE OBJECT")
	if _, err := conn.Exec(ctx, "REVOKE SELECT ON LARGE OBJECT "+itoa(oid)+" FROM "+f.c.ServiceUser); err != nil {
		t.Fatal(err)
	}
	mustNot(t, f.inspect(), isolation.CheckLargeObjects, "")
	f.exec("postgres", "ALTER DATABASE "+f.db+" SET lo_compat_privileges = on")
	rep := f.inspect()
	mustWarn(t, rep, isolation.CheckLargeObjects, "setting lo_compat_privileges", "lo_compat_privileges = off")
	mustWarn(t, rep, isolation.CheckLargeObjects, "large objects", "REVOKE")
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// TestDemoSchemaHasNoLeakFootgun: the demo schema (plus `audit init`) has
// no footgun that leaks; its documented warnings are the UNIQUE (id) of
// orders and the identity sequences the service role draws from.
func TestDemoSchemaHasNoLeakFootgun(t *testing.T) {
	c := pgtest.Shared(t, "isolation")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := demo.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, AdminUser: c.Superuser, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	if err := audit.InitRegion(ctx, "eu-west", r, nil); err != nil {
		t.Fatal(err)
	}
	rep := isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: config.Default().Policy, ParserActive: true})
	if rep.Status != isolation.Active {
		t.Fatalf("demo status %s: %+v", rep.Status, rep.RLS)
	}
	for _, f := range rep.RLS.Findings {
		t.Logf("demo finding: %+v", f)
		if f.Severity != isolation.SeverityWarning || (f.Check != isolation.CheckExistenceOracle && f.Check != isolation.CheckSharedSequence) {
			t.Errorf("unexpected demo finding %+v", f)
		}
	}
	mustWarn(t, rep, isolation.CheckExistenceOracle, "unique constraint orders_id_key of public.orders", "include account_id")
	mustNot(t, rep, isolation.CheckExistenceOracle, "line_items_account_id_order_id_fkey")
}

// BenchmarkFootgunsDemo measures the footgun checks on the demo schema (the
// extra cost they add to each /isolation-proof request), and a whole Inspect.
func BenchmarkFootgunsDemo(b *testing.B) {
	c := pgtest.Shared(b, "isolation")
	ctx := context.Background()
	if err := demo.Install(ctx, c); err != nil {
		b.Fatal(err)
	}
	r := config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
	p := config.Default().Policy
	b.Run("footguns", func(b *testing.B) {
		conn := pgtest.Conn(b, c.ServiceDSN())
		for b.Loop() {
			if _, err := isolation.Footguns(ctx, conn, p, 5*time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("inspect", func(b *testing.B) {
		for b.Loop() {
			if rep := isolation.Inspect(ctx, "eu-west", r, isolation.Options{Policy: p, ParserActive: true}); rep.Error != "" {
				b.Fatal(rep.Error)
			}
		}
	})
}
