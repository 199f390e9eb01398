package isolation

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// ownedTables reports tenant tables the service role owns (or can act as the
// owner of, by membership): the owner bypasses RLS unless it is forced, and
// even when it is forced can switch it off (ALTER TABLE ... DISABLE ROW LEVEL
// SECURITY) or rewrite the policies, so RLS alone does not hold there. A
// superuser service role is a member of every role: that is the role layer's
// finding, not one per table.
func ownedTables(ctx context.Context, tx pgx.Tx, tables []tenantTable, _ config.Policy) ([]Finding, error) {
	rows, err := tx.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), pg_catalog.pg_get_userbyid(c.relowner)::text, c.relforcerowsecurity
	  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE c.oid = ANY($1::oid[]) AND pg_catalog.pg_has_role(current_user, c.relowner, 'MEMBER')
	   AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user)
	 ORDER BY 1`, oids(tables))
	if err != nil {
		return nil, fmt.Errorf("read table owners: %w", err)
	}
	type owned struct {
		table, owner string
		forced       bool
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (owned, error) {
		var o owned
		return o, row.Scan(&o.table, &o.owner, &o.forced)
	})
	if err != nil {
		return nil, fmt.Errorf("read table owners: %w", err)
	}
	var out []Finding
	for _, o := range list {
		why := "row level security is forced, but the owner can disable it or change the policies"
		if !o.forced {
			why = "row level security is not forced, so the owner bypasses it"
		}
		out = append(out, Finding{Check: CheckTableOwner, Severity: SeverityLeak, Object: "table " + o.table, Table: o.table,
			Detail: fmt.Sprintf("owned by %s, which the service role is or is a member of: %s", o.owner, why),
			Fix:    fmt.Sprintf("ALTER TABLE %s OWNER TO a role the service role is not a member of (e.g. the migration role), and FORCE ROW LEVEL SECURITY", o.table)})
	}
	return out, nil
}

// definerFunctions reports SECURITY DEFINER functions the service role can
// EXECUTE whose owner bypasses row-level security (superuser, BYPASSRLS) or
// owns a tenant table: the function body runs with the owner's rights, so it
// can read every tenant's rows (or disable RLS on the owner's tables).
// pgtenant's own audit functions (schema pgtenant_audit) are judged by the
// audit layer and left out.
func definerFunctions(ctx context.Context, tx pgx.Tx, tables []tenantTable, _ config.Policy) ([]Finding, error) {
	rows, err := tx.Query(ctx, `SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)), pg_catalog.pg_get_userbyid(p.proowner)::text, r.rolsuper, r.rolbypassrls,
	       coalesce((SELECT array_agg(format('%I.%I', tn.nspname, t.relname) ORDER BY 1)
	                   FROM pg_catalog.pg_class t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
	                  WHERE t.oid = ANY($1::oid[]) AND pg_catalog.pg_has_role(p.proowner, t.relowner, 'USAGE')), '{}'),
	       coalesce((SELECT array_agg(format('%I.%I', tn.nspname, t.relname) ORDER BY 1)
	                   FROM pg_catalog.pg_class t JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
	                  WHERE t.oid = ANY($1::oid[]) AND pg_catalog.pg_has_role(p.proowner, t.relowner, 'USAGE') AND NOT t.relforcerowsecurity), '{}')
	  FROM pg_catalog.pg_proc p
	  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
	  JOIN pg_catalog.pg_roles r ON r.oid = p.proowner
	 WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema', $2)
	   AND pg_catalog.has_function_privilege(current_user, p.oid, 'EXECUTE')
	 ORDER BY 1`, oids(tables), AuditSchema)
	if err != nil {
		return nil, fmt.Errorf("list security definer functions: %w", err)
	}
	type fn struct {
		name, owner           string
		super, bypass         bool
		ownsTables, notForced []string
	}
	fns, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (fn, error) {
		var f fn
		return f, row.Scan(&f.name, &f.owner, &f.super, &f.bypass, &f.ownsTables, &f.notForced)
	})
	if err != nil {
		return nil, fmt.Errorf("list security definer functions: %w", err)
	}
	var out []Finding
	for _, f := range fns {
		fix := fmt.Sprintf("ALTER FUNCTION %s SECURITY INVOKER, or ALTER FUNCTION %s OWNER TO a role that is subject to row-level security and owns no tenant table, or REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC and the service role", f.name, f.name, f.name)
		var why, table string
		severity := SeverityLeak
		switch {
		case f.super:
			why = "a superuser: row-level security does not apply to its body"
		case f.bypass:
			why = "a BYPASSRLS role: row-level security does not apply to its body"
		case len(f.notForced) > 0:
			why = fmt.Sprintf("the owner of tenant table(s) %v without FORCE ROW LEVEL SECURITY: its body reads them unfiltered", f.notForced)
			table = f.notForced[0]
		case len(f.ownsTables) > 0:
			why = fmt.Sprintf("the owner of tenant table(s) %v: RLS is forced, but the owner can disable it or change the policies from the function", f.ownsTables)
			severity, table = SeverityWarning, f.ownsTables[0]
		default:
			continue // runs as an unprivileged role: no more than the service role itself
		}
		out = append(out, Finding{Check: CheckSecurityDefiner, Severity: severity, Object: "function " + f.name, Table: table,
			Detail: fmt.Sprintf("SECURITY DEFINER function executable by the service role, owned by %s, %s", f.owner, why), Fix: fix})
	}
	return out, nil
}

// existenceOracles reports unique indexes (and exclusion constraints) of tenant tables whose key does not
// include the tenant column, and foreign keys between tenant tables whose key
// does not match the tenant columns: uniqueness and foreign-key checks ignore
// row-level security, so the error (or its absence) tells a tenant whether
// another tenant holds a value.
func existenceOracles(ctx context.Context, tx pgx.Tx, tables []tenantTable, _ config.Policy) ([]Finding, error) {
	tenantCol := map[uint32]int16{}
	names := map[uint32]string{}
	cols := map[uint32]string{}
	for _, t := range tables {
		var attnum int16
		if err := tx.QueryRow(ctx, "SELECT attnum FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2", t.oid, t.column).Scan(&attnum); err != nil {
			return nil, fmt.Errorf("read tenant column of %s: %w", t.name, err)
		}
		tenantCol[t.oid], names[t.oid], cols[t.oid] = attnum, t.name, t.column
	}
	rows, err := tx.Query(ctx, `SELECT i.indrelid, i.indkey::int2[], format('%I.%I', n.nspname, c.relname),
	       coalesce(con.conname::text, ''), coalesce(con.contype::text, ''), pg_catalog.pg_get_indexdef(i.indexrelid)
	  FROM pg_catalog.pg_index i
	  JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	  LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
	 WHERE (i.indisunique OR i.indisexclusion) AND i.indrelid = ANY($1::oid[])
	 ORDER BY 3`, oids(tables))
	if err != nil {
		return nil, fmt.Errorf("list unique indexes: %w", err)
	}
	var out []Finding
	for rows.Next() {
		var rel uint32
		var key []int16
		var index, conname, contype, def string
		if err := rows.Scan(&rel, &key, &index, &conname, &contype, &def); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list unique indexes: %w", err)
		}
		if slices.Contains(key, tenantCol[rel]) {
			continue
		}
		object := "unique index " + index
		switch contype {
		case "p":
			object = "primary key " + conname + " of " + names[rel]
		case "u":
			object = "unique constraint " + conname + " of " + names[rel]
		case "x":
			object = "exclusion constraint " + conname + " of " + names[rel]
		}
		out = append(out, Finding{Check: CheckExistenceOracle, Severity: SeverityWarning, Object: object, Table: names[rel],
			Detail: fmt.Sprintf("key does not include the tenant column %s (%s): a unique or exclusion violation on insert or update tells a tenant that another tenant holds that key", cols[rel], def),
			Fix:    fmt.Sprintf("include %s in the key (e.g. PRIMARY KEY / UNIQUE (%s, ...)) so uniqueness is per tenant", cols[rel], cols[rel])})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list unique indexes: %w", err)
	}
	// Foreign keys into tenant tables: from tenant tables, and from any other
	// table the service role can write (its rows probe the tenant table too).
	rows, err = tx.Query(ctx, `SELECT con.conname::text, con.conrelid, con.confrelid, con.conkey, con.confkey,
	       format('%I.%I', n.nspname, c.relname)
	  FROM pg_catalog.pg_constraint con
	  JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
	  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	 WHERE con.contype = 'f' AND con.confrelid = ANY($1::oid[])
	   AND (con.conrelid = ANY($1::oid[]) OR pg_catalog.has_table_privilege(current_user, con.conrelid, 'INSERT, UPDATE'))
	 ORDER BY 1`, oids(tables))
	if err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	for rows.Next() {
		var name, relName string
		var rel, ref uint32
		var key, refKey []int16
		if err := rows.Scan(&name, &rel, &ref, &key, &refKey, &relName); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list foreign keys: %w", err)
		}
		matched := false
		for i := range key {
			if key[i] == tenantCol[rel] && i < len(refKey) && refKey[i] == tenantCol[ref] {
				matched = true
			}
		}
		if matched {
			continue
		}
		if _, tenant := tenantCol[rel]; !tenant {
			out = append(out, Finding{Check: CheckExistenceOracle, Severity: SeverityWarning, Object: "foreign key " + name + " of " + relName, Table: names[ref],
				Detail: fmt.Sprintf("%s has no tenant column, the service role can write it, and it references tenant table %s: the foreign-key check ignores row-level security, so a violation (or its absence) tells a tenant whether another tenant's row exists", relName, names[ref]),
				Fix:    fmt.Sprintf("give %s the tenant column and make the key (%s, ...) REFERENCES %s (%s, ...), or REVOKE INSERT, UPDATE ON %s FROM the service role", relName, cols[ref], names[ref], cols[ref], relName)})
			continue
		}
		out = append(out, Finding{Check: CheckExistenceOracle, Severity: SeverityWarning, Object: "foreign key " + name + " of " + names[rel], Table: names[rel],
			Detail: fmt.Sprintf("references tenant table %s without pairing %s with %s: the foreign-key check ignores row-level security, so a violation (or its absence) tells a tenant whether another tenant's row exists, and a row can reference another tenant's row", names[ref], cols[rel], cols[ref]),
			Fix:    fmt.Sprintf("make the key (%s, ...) REFERENCES %s (%s, ...), backed by a unique key that includes %s", cols[rel], names[ref], cols[ref], cols[ref])})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list foreign keys: %w", err)
	}
	return out, nil
}

// sharedSequences reports sequences feeding tenant tables (serial, identity,
// or a nextval default) that the service role can use, read or set: one
// counter for all tenants reveals how many rows the others write.
func sharedSequences(ctx context.Context, tx pgx.Tx, tables []tenantTable, _ config.Policy) ([]Finding, error) {
	rows, err := tx.Query(ctx, `WITH uses AS (
	    SELECT d.objid AS seq, d.refobjid AS tbl FROM pg_catalog.pg_depend d
	     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
	       AND d.deptype IN ('a', 'i') AND d.refobjid = ANY($1::oid[])
	    UNION
	    SELECT d.refobjid, ad.adrelid FROM pg_catalog.pg_depend d
	      JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
	     WHERE d.classid = 'pg_catalog.pg_attrdef'::regclass AND d.refclassid = 'pg_catalog.pg_class'::regclass
	       AND ad.adrelid = ANY($1::oid[]))
	SELECT format('%I.%I', sn.nspname, s.relname), format('%I.%I', tn.nspname, t.relname),
	       array_remove(ARRAY[
	         CASE WHEN pg_catalog.has_sequence_privilege(current_user, s.oid, 'USAGE') THEN 'USAGE' END,
	         CASE WHEN pg_catalog.has_sequence_privilege(current_user, s.oid, 'SELECT') THEN 'SELECT' END,
	         CASE WHEN pg_catalog.has_sequence_privilege(current_user, s.oid, 'UPDATE') THEN 'UPDATE' END], NULL)
	  FROM uses u
	  JOIN pg_catalog.pg_class s ON s.oid = u.seq AND s.relkind = 'S'
	  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
	  JOIN pg_catalog.pg_class t ON t.oid = u.tbl
	  JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
	 ORDER BY 1, 2`, oids(tables))
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	type use struct {
		seq, table string
		privs      []string
	}
	uses, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (use, error) {
		var u use
		return u, row.Scan(&u.seq, &u.table, &u.privs)
	})
	if err != nil {
		return nil, fmt.Errorf("list sequences: %w", err)
	}
	var out []Finding
	for _, u := range uses {
		if len(u.privs) == 0 {
			continue
		}
		out = append(out, Finding{Check: CheckSharedSequence, Severity: SeverityWarning, Object: "sequence " + u.seq, Table: u.table,
			Detail: fmt.Sprintf("feeds tenant table %s and the service role has %v on it: the values a tenant draws (or reads with currval/last_value) reveal how many rows all tenants insert", u.table, u.privs),
			Fix:    fmt.Sprintf("use keys that carry no global order for tenant tables (e.g. uuid DEFAULT gen_random_uuid()), or at least REVOKE SELECT, UPDATE ON SEQUENCE %s FROM the service role (USAGE alone still reveals the volume)", u.seq)})
	}
	return out, nil
}

// largeObjects reports large objects the service role can read (they have no
// row-level security, so one tenant's object is every tenant's) and
// lo_compat_privileges, which turns large-object permission checks off.
func largeObjects(ctx context.Context, tx pgx.Tx, _ []tenantTable, _ config.Policy) ([]Finding, error) {
	var compat string
	var readable int64
	err := tx.QueryRow(ctx, `SELECT pg_catalog.current_setting('lo_compat_privileges'),
	       (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata m
	         WHERE pg_catalog.current_setting('lo_compat_privileges')::boolean
	            OR pg_catalog.pg_has_role(current_user, m.lomowner, 'USAGE')
	            OR EXISTS (SELECT 1 FROM pg_catalog.aclexplode(m.lomacl) a
	                        WHERE a.privilege_type = 'SELECT' AND (a.grantee = 0 OR pg_catalog.pg_has_role(current_user, a.grantee, 'USAGE'))))`).Scan(&compat, &readable)
	if err != nil {
		return nil, fmt.Errorf("read large objects: %w", err)
	}
	var out []Finding
	if compat == "on" {
		out = append(out, Finding{Check: CheckLargeObjects, Severity: SeverityWarning, Object: "setting lo_compat_privileges",
			Detail: "lo_compat_privileges is on: every role can read and write every large object, with no row-level security",
			Fix:    "ALTER SYSTEM / ALTER DATABASE ... SET lo_compat_privileges = off"})
	}
	if readable > 0 {
		out = append(out, Finding{Check: CheckLargeObjects, Severity: SeverityWarning, Object: "large objects",
			Detail: fmt.Sprintf("%d large object(s) are readable by the service role: large objects have no row-level security, so any tenant session can read them with lo_get(oid)", readable),
			Fix:    "keep tenant data in tenant tables (bytea), or REVOKE SELECT ON LARGE OBJECT ... FROM the service role and PUBLIC, and do not let it own large objects"})
	}
	return out, nil
}
