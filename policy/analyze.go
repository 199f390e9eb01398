package policy

import (
	"strings"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Denial is a tenant-independent reason to refuse a statement.
type Denial struct {
	Reason, Message, Hint string
	SQLState              string
}

// Req is one requirement of an allowed-if analysis: Table is pinned when F holds.
type Req struct {
	Table string
	F     *formula
}

// ExecArg is one EXECUTE argument: a literal of the text (Lit >= 0), or a
// constant baked into the shape (Const), or neither (not a usable value).
type ExecArg struct {
	Lit      int
	Const    string
	HasConst bool
	// Param is the outer statement's $n when the argument is a parameter
	// (EXECUTE sent with Parse/Bind).
	Param int
}

// StmtAnalysis is the tenant-independent analysis of one statement.
type StmtAnalysis struct {
	Kind   parser.Kind
	Deny   *Denial
	Reqs   []Req
	Tables []string
	// Name/All: PREPARE, EXECUTE, DEALLOCATE targets.
	Name string
	All  bool
	// Prepared is PREPARE's inner analysis; Inner is EXPLAIN's or DECLARE's.
	Prepared *StmtAnalysis
	Inner    *StmtAnalysis
	// ExecArgs are EXECUTE's arguments.
	ExecArgs []ExecArg
	// ParamTypes are PREPARE's declared types.
	ParamTypes []string
	// Writes names what makes the statement a write (see readonly.go); "" for a read.
	Writes string
	// Set is a session-level SET the proxy tracks under transaction pooling.
	Set *tenancy.SessionSet
}

type relRef struct{ b, r int }

type analyzer struct {
	e      *Engine
	cat    *Catalog
	sc     *parser.Scanned
	st     *parser.Statement
	res    *StmtAnalysis
	tables map[relRef]*Table
	class  map[relRef]Class
	pinned map[relRef]*formula
	// insertPins memoizes insertPin per INSERT block.
	insertPins map[int]*formula
	// colMemo caches derived output columns per block.
	colMemo map[int][]string
}

func deny(reason, msg, hint string) *Denial {
	return &Denial{Reason: reason, Message: "pgtenant: " + msg, Hint: hint, SQLState: pgerrcode.InsufficientPrivilege}
}

// analyze returns the analysis of one statement summary.
func (e *Engine) analyze(cat *Catalog, sc *parser.Scanned, st *parser.Statement) *StmtAnalysis {
	a := &analyzer{e: e, cat: cat, sc: sc, st: st, res: &StmtAnalysis{Kind: st.Kind},
		tables: map[relRef]*Table{}, class: map[relRef]Class{}, pinned: map[relRef]*formula{}, insertPins: map[int]*formula{}}
	a.statement()
	a.res.Writes = writes(st)
	return a.res
}

func (a *analyzer) fail(d *Denial) {
	if a.res.Deny == nil {
		a.res.Deny = d
	}
}

var stmtNames = map[string]string{
	"CreateStmt": "CREATE TABLE", "CreateTableAsStmt": "CREATE TABLE AS", "ViewStmt": "CREATE VIEW",
	"AlterTableStmt": "ALTER TABLE", "DropStmt": "DROP", "DoStmt": "DO", "CallStmt": "CALL",
	"LockStmt": "LOCK", "TruncateStmt": "TRUNCATE", "VacuumStmt": "VACUUM/ANALYZE", "GrantStmt": "GRANT",
	"GrantRoleStmt": "GRANT role", "AlterSystemStmt": "ALTER SYSTEM", "LoadStmt": "LOAD", "CheckPointStmt": "CHECKPOINT",
	"RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW", "CreateExtensionStmt": "CREATE EXTENSION",
	"CreateForeignServerStmt": "CREATE SERVER", "IndexStmt": "CREATE INDEX", "CommentStmt": "COMMENT",
	"CreateFunctionStmt": "CREATE FUNCTION", "CreateSchemaStmt": "CREATE SCHEMA", "CreateRoleStmt": "CREATE ROLE",
	"ReindexStmt": "REINDEX", "ClusterStmt": "CLUSTER", "CopyStmt": "COPY", "SecLabelStmt": "SECURITY LABEL",
}

func (a *analyzer) statement() {
	st := a.st
	if a.e.txPooling {
		if d := pooledSessionState(st); d != nil {
			a.fail(d)
			return
		}
	}
	switch st.Kind {
	case parser.KindSelect:
		if st.Into {
			a.fail(deny("ddl", "SELECT ... INTO creates a table and is not allowed", "use a plain SELECT"))
		}
		a.query()
	case parser.KindInsert, parser.KindUpdate, parser.KindDelete, parser.KindMerge:
		a.query()
	case parser.KindCopy:
		a.copyStmt()
	case parser.KindExplain:
		if st.Analyze {
			a.fail(deny("explain_analyze", "EXPLAIN ANALYZE executes the statement and reports other tenants' row counts", "use EXPLAIN without ANALYZE"))
		}
		a.inner(st.Inner, "EXPLAIN")
	case parser.KindDeclareCursor:
		a.res.Name = st.Name
		a.inner(st.Inner, "DECLARE")
	case parser.KindFetch, parser.KindClosePortal, parser.KindShow, parser.KindUnlisten:
	case parser.KindPrepare:
		a.res.Name = st.Name
		a.res.ParamTypes = st.ParamTypes
		for _, t := range st.ParamTypes {
			if t == "?" {
				a.fail(deny("type", "PREPARE with a parameter type outside pg_catalog is not allowed", "declare built-in parameter types"))
			}
		}
		if st.Inner == nil || !isQueryKind(st.Inner.Kind) {
			a.fail(deny("prepare", "PREPARE of this statement kind is not allowed", "prepare SELECT, INSERT, UPDATE, DELETE or MERGE only"))
			return
		}
		in := a.e.analyze(a.cat, a.sc, st.Inner)
		if in.Deny != nil {
			a.fail(in.Deny)
		}
		a.res.Prepared = in
		a.res.Tables = in.Tables
	case parser.KindExecute:
		a.res.Name = st.Name
		for _, v := range st.ExecArgs {
			arg := ExecArg{Lit: -1}
			if v.Kind == parser.ValParam && len(v.Casts) == 0 {
				arg.Param = v.Param
			}
			if v.Kind == parser.ValConst && len(v.Casts) == 0 && (v.ConstKind == "int" || v.ConstKind == "string") {
				if i := a.sc.LitAt(v.Loc); i >= 0 {
					if a.sc.Lits[i].Kind == parser.LitRaw {
						arg.Const, arg.HasConst = v.Text, true
					} else {
						arg.Lit = i
					}
				}
			}
			a.res.ExecArgs = append(a.res.ExecArgs, arg)
		}
		a.query()
	case parser.KindDeallocate:
		a.res.Name, a.res.All = st.Name, st.All
	case parser.KindTransaction:
		switch st.Txn {
		case "prepare", "commit_prepared", "rollback_prepared":
			a.fail(deny("two_phase", "two-phase commit (PREPARE TRANSACTION / COMMIT PREPARED) is not allowed", "use ordinary COMMIT"))
		case "":
			a.fail(deny("statement", "unsupported transaction statement", ""))
		}
	case parser.KindSet:
		if d := a.e.checkSet(st.Set, a.cat); d != nil {
			a.fail(d)
		} else if a.e.txPooling {
			a.res.Set = sessionSetOf(st.Set)
		}
	case parser.KindDiscard:
		if st.All || st.Discard == "" {
			a.fail(deny("discard_all", "DISCARD ALL would reset the tenant setting", "use DISCARD PLANS, SEQUENCES or TEMP"))
		}
	case parser.KindListen, parser.KindNotify:
		a.fail(deny("listen_notify", "LISTEN/NOTIFY channels are shared by all tenants and are not allowed", ""))
	default:
		name := stmtNames[st.Node]
		if name == "" {
			name = strings.TrimSuffix(st.Node, "Stmt")
		}
		a.fail(deny("ddl", name+" is not allowed for tenant connections", "run schema changes and maintenance outside pgtenant"))
	}
}

func isQueryKind(k parser.Kind) bool {
	switch k {
	case parser.KindSelect, parser.KindInsert, parser.KindUpdate, parser.KindDelete, parser.KindMerge:
		return true
	}
	return false
}

func (a *analyzer) inner(in *parser.Statement, what string) {
	if in == nil {
		a.fail(deny("statement", what+" without a statement", ""))
		return
	}
	if !isQueryKind(in.Kind) && in.Kind != parser.KindExecute {
		a.fail(deny("statement", what+" of this statement kind is not allowed", ""))
		return
	}
	r := a.e.analyze(a.cat, a.sc, in)
	if r.Deny != nil {
		a.fail(r.Deny)
	}
	a.res.Inner = r
	a.res.Tables = r.Tables
	a.res.Reqs = append(a.res.Reqs, r.Reqs...)
}

func (a *analyzer) copyStmt() {
	c := a.st.Copy
	switch {
	case c.File || c.Program:
		a.fail(deny("copy_file", "COPY to or from a server file or program is not allowed", "use COPY ... TO STDOUT"))
		return
	case c.From:
		a.fail(deny("copy_from", "COPY ... FROM is not allowed", "use INSERT statements with account_id set"))
		return
	}
	if c.Rel != nil {
		t, cl, name := a.resolveTable(*c.Rel)
		a.addTable(name)
		switch cl {
		case ClassTenant:
			a.fail(deny("unscoped_table", "COPY "+name+" TO exports every tenant's rows of "+t.Name,
				"use COPY (SELECT ... FROM "+t.Name+" WHERE "+t.TenantColumn+" = <your account>) TO STDOUT"))
		case ClassGlobal, ClassCatalog:
		default:
			a.relDenial(cl, name)
		}
	}
	a.query()
}

func (a *analyzer) addTable(name string) {
	for _, t := range a.res.Tables {
		if t == name {
			return
		}
	}
	a.res.Tables = append(a.res.Tables, name)
}

func (a *analyzer) relDenial(cl Class, name string) {
	switch cl {
	case ClassForbidden:
		a.fail(deny("forbidden_schema", name+" is in a forbidden schema", "tenant connections cannot use this schema"))
	case ClassStats:
		a.fail(deny("stats_view", name+" exposes other sessions, other roles or server-wide data (statistics, settings, credentials)", "query your own tables instead"))
	case ClassUnknown:
		a.fail(deny("unknown_table", "relation "+name+" is neither a tenant nor a global table",
			"register it in policy.tenant_tables or policy.global_tables (views and partitions too)"))
	}
}

// query checks every block, function, operator and type of the statement.
func (a *analyzer) query() {
	st := a.st
	if len(st.Unknown) > 0 {
		a.fail(deny("unsupported", "unsupported construct ("+st.Unknown[0]+")", "rewrite the statement with plain SQL"))
	}
	if st.CurrentOf {
		a.fail(deny("current_of", "WHERE CURRENT OF is not allowed", "use WHERE account_id = ... AND id = ..."))
	}
	a.checkFuncs()
	a.checkOps()
	a.checkTypes()
	// classify every relation
	for bi, b := range st.Blocks {
		for ri := range b.Rels {
			r := &b.Rels[ri]
			if r.Kind != parser.RelTable {
				continue
			}
			t, cl, name := a.resolveTable(*r)
			ref := relRef{bi, ri}
			a.tables[ref], a.class[ref] = t, cl
			a.addTable(name)
		}
	}
	a.checkLocks()
	// pins, parents first
	for bi := range st.Blocks {
		a.pinBlock(bi)
	}
	// requirements
	for bi, b := range st.Blocks {
		for ri := range b.Rels {
			r := &b.Rels[ri]
			if r.Kind != parser.RelTable {
				continue
			}
			ref := relRef{bi, ri}
			cl, t := a.class[ref], a.tables[ref]
			name := a.displayName(ref)
			if r.Target {
				switch cl {
				case ClassTenant:
				case ClassGlobal:
					a.fail(deny("global_write", "global table "+name+" is read-only for tenants", "write reference data outside pgtenant"))
					continue
				case ClassCatalog:
					a.fail(deny("catalog_write", "writing to catalog "+name+" is not allowed", ""))
					continue
				default:
					a.relDenial(cl, name)
					continue
				}
				if b.DML != nil && (b.DML.Kind == parser.KindInsert || b.DML.Kind == parser.KindMerge) {
					continue // checked by the DML rules
				}
			}
			switch cl {
			case ClassTenant:
				if r.Source {
					a.fail(deny("merge_source", "tenant table "+name+" used directly as a MERGE source",
						"use USING (SELECT ... FROM "+t.Name+" WHERE "+t.TenantColumn+" = <your account>)"))
					continue
				}
				f := a.pinned[ref]
				if f == nil {
					if col := a.ambiguousTenantRef(bi, ref); col != "" {
						// PostgreSQL rejects the statement at parse analysis
						// (42702): refuse it with the server's own code
						a.fail(&Denial{Reason: "ambiguous_column", SQLState: sqlStateAmbiguousColumn,
							Message: "pgtenant: column reference \"" + col + "\" is ambiguous",
							Hint:    "qualify " + col + " with the table name or alias"})
						continue
					}
					a.unscoped(t, name, b.Role)
					continue
				}
				a.res.Reqs = append(a.res.Reqs, Req{Table: name, F: f})
			case ClassGlobal, ClassCatalog:
			default:
				if cl == ClassStats && a.isRelStats(ref) {
					continue // checked column by column (checkStatsCols)
				}
				a.relDenial(cl, name)
			}
		}
		if b.DML != nil {
			a.dmlRules(bi)
		}
	}
	a.checkStatsCols()
	size := 0
	for _, r := range a.res.Reqs {
		size += r.F.size()
	}
	if size > maxFormulaNodes {
		a.fail(&Denial{Reason: "too_complex", Message: "pgtenant: statement too complex to verify", SQLState: pgerrcode.StatementTooComplex})
	}
}

// isRelStats reports whether ref is a per-relation statistics view.
func (a *analyzer) isRelStats(ref relRef) bool {
	r := &a.st.Blocks[ref.b].Rels[ref.r]
	return r.Kind == parser.RelTable && a.tables[ref] == nil && a.class[ref] == ClassStats &&
		(r.Schema == "" || r.Schema == "pg_catalog") && relStatsViews[r.Name] != nil
}

// checkStatsCols allows per-relation statistics views for their identity
// columns only: every column reference that resolves to one must name an
// identity column, and a reference that cannot be resolved where such a view
// is visible (a star, a whole-row reference, an unknown name) is refused.
func (a *analyzer) checkStatsCols() {
	statsBlocks := map[int]bool{}
	for bi, b := range a.st.Blocks {
		for ri := range b.Rels {
			if a.isRelStats(relRef{bi, ri}) {
				statsBlocks[bi] = true
			}
		}
	}
	if len(statsBlocks) == 0 {
		return
	}
	bad := func(what string) {
		a.fail(deny("stats_view", "statistics views may be read for their identity columns only ("+what+")",
			"select relid, schemaname, relname, indexrelid or indexrelname only"))
	}
	for _, cu := range a.st.Cols {
		var scope []*parser.FromItem
		if cu.Scoped {
			scope = cu.Scope
		}
		rels, col, ok := a.resolve(cu.Block, scope, cu.Col)
		if !ok {
			for b := cu.Block; b >= 0; b = a.st.Blocks[b].Parent {
				if statsBlocks[b] {
					bad(strings.Join(cu.Col.Fields, "."))
					return
				}
			}
			continue
		}
		for _, r := range rels {
			if a.isRelStats(r) && !statsIdentity[col] {
				bad(strings.Join(cu.Col.Fields, "."))
				return
			}
		}
	}
}

// checkLocks refuses FOR UPDATE / FOR SHARE (any strength) reaching a
// global or catalog relation: a tenant would hold locks on rows every tenant
// shares. A lock on a derived table or WITH query reaches its relations.
func (a *analyzer) checkLocks() {
	for bi, b := range a.st.Blocks {
		if !b.Locking {
			continue
		}
		for ri := range b.Rels {
			if len(b.LockRels) > 0 && !contains(b.LockRels, b.Rels[ri].RefName()) {
				continue
			}
			if name, bad := a.lockReachesShared(relRef{bi, ri}, 0); bad {
				a.fail(deny("shared_lock", "FOR UPDATE/SHARE would lock rows of "+name+", which every tenant shares",
					"lock only your own rows: FOR UPDATE OF <tenant table alias>"))
				return
			}
		}
	}
}

func (a *analyzer) lockReachesShared(ref relRef, depth int) (string, bool) {
	if depth > len(a.st.Blocks) {
		return "a nested query", true
	}
	r := &a.st.Blocks[ref.b].Rels[ref.r]
	switch r.Kind {
	case parser.RelTable:
		if cl := a.class[ref]; cl != ClassTenant {
			return a.displayName(ref), true
		}
	case parser.RelSubquery, parser.RelCTE:
		if r.Block < 0 {
			return "a derived table", true
		}
		for ri := range a.st.Blocks[r.Block].Rels {
			if name, bad := a.lockReachesShared(relRef{r.Block, ri}, depth+1); bad {
				return name, true
			}
		}
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// sqlStateAmbiguousColumn is PostgreSQL's ambiguous_column.
const sqlStateAmbiguousColumn = "42702"

// ambiguousTenantRef returns the tenant column's name when an unqualified
// reference to it in block bi (where ref sits) is ambiguous there, as
// PostgreSQL's parse analysis would report.
func (a *analyzer) ambiguousTenantRef(bi int, ref relRef) string {
	col := a.tenantCol(ref)
	if col == "" {
		return ""
	}
	for _, cu := range a.st.Cols {
		if cu.Block != bi || len(cu.Col.Fields) != 1 || cu.Col.Fields[0] != col {
			continue
		}
		items := a.st.Blocks[bi].From
		if cu.Scoped {
			items = cu.Scope
		}
		var rels []relRef
		st := stNone
		for _, it := range items {
			r, s := a.unqualified(bi, it, col)
			rels, st = combine(rels, st, r, s)
		}
		if st == stAmbiguous {
			return col
		}
	}
	return ""
}

func (a *analyzer) unscoped(t *Table, name, role string) {
	where := ""
	switch role {
	case "cte":
		where = " (in a WITH query)"
	case "sublink":
		where = " (in a subquery)"
	case "from":
		where = " (in a derived table)"
	case "setop":
		where = " (in a UNION/INTERSECT/EXCEPT arm)"
	case "source":
		where = " (in the INSERT's SELECT)"
	}
	a.fail(deny("unscoped_table", "table "+name+" is not scoped to your account"+where,
		"add WHERE "+t.Name+"."+t.TenantColumn+" = <your account id> (or = $n bound to it) in every query block that reads "+t.Name))
}

func (a *analyzer) displayName(ref relRef) string {
	if t := a.tables[ref]; t != nil {
		return t.QualifiedName()
	}
	r := a.st.Blocks[ref.b].Rels[ref.r]
	if r.Schema != "" {
		return r.Schema + "." + r.Name
	}
	return r.Name
}

// resolveTable classifies a named relation against the catalog.
func (a *analyzer) resolveTable(r parser.Rel) (*Table, Class, string) {
	cat := a.cat
	if r.Catalog != "" {
		if r.Catalog != cat.Database || cat.Database == "" {
			// another database (an error in PostgreSQL) or one pgtenant cannot name
			return nil, ClassUnknown, r.Catalog + "." + r.Schema + "." + r.Name
		}
		r.Catalog = "" // the current database: the same as schema.name
	}
	if r.Schema != "" {
		name := r.Schema + "." + r.Name
		if a.e.forbidden[r.Schema] {
			return nil, ClassForbidden, name
		}
		switch {
		case r.Schema == "pg_catalog":
			return nil, catalogClass(r.Name), name
		case r.Schema == "information_schema":
			return nil, ClassCatalog, name
		case strings.HasPrefix(r.Schema, "pg_temp") || strings.HasPrefix(r.Schema, "pg_toast"):
			return nil, ClassForbidden, name
		}
		if t := cat.Tables[name]; t != nil {
			return t, a.e.tableClass(t), name
		}
		return nil, a.e.unknownClass(), name
	}
	if catalogRels[r.Name] {
		return nil, catalogClass(r.Name), "pg_catalog." + r.Name
	}
	for _, s := range cat.SearchPath {
		if t := cat.Tables[s+"."+r.Name]; t != nil {
			if a.e.forbidden[s] {
				return t, ClassForbidden, t.QualifiedName()
			}
			return t, a.e.tableClass(t), t.QualifiedName()
		}
	}
	if strings.HasPrefix(r.Name, "pg_") {
		return nil, ClassUnknown, r.Name
	}
	return nil, a.e.unknownClass(), cat.SearchPath[0] + "." + r.Name
}

func (e *Engine) tableClass(t *Table) Class {
	if t.Class == ClassUnknown {
		return e.unknownClass()
	}
	return t.Class
}

func (e *Engine) unknownClass() Class {
	if e.cfg.UnknownTables == "allow" {
		return ClassGlobal
	}
	return ClassUnknown
}

func catalogClass(name string) Class {
	if !catalogRels[name] {
		return ClassUnknown
	}
	if statsRels[name] || strings.HasPrefix(name, "pg_stat_") || strings.HasPrefix(name, "pg_statio_") {
		return ClassStats
	}
	return ClassCatalog
}
