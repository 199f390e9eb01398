package parser

// Kind is a statement's kind as far as the policy cares.
type Kind int

// Statement kinds.
const (
	KindOther Kind = iota // anything not listed: DDL, DO, CALL, LOCK, ... (see Statement.Node)
	KindSelect
	KindInsert
	KindUpdate
	KindDelete
	KindMerge
	KindCopy
	KindExplain
	KindDeclareCursor
	KindFetch
	KindClosePortal
	KindPrepare
	KindExecute
	KindDeallocate
	KindTransaction
	KindSet
	KindShow
	KindDiscard
	KindListen
	KindUnlisten
	KindNotify
)

// Summary is the parse of one text: its statements in order.
type Summary struct {
	Statements []*Statement
}

// Statement summarises one statement (RawStmt) of a text.
type Statement struct {
	Kind Kind
	// Node is the pg_query node name of the statement, e.g. "CreateStmt".
	Node string
	// Start and End delimit the statement's text in the source.
	Start, End int
	// Inner is the statement an EXPLAIN, DECLARE or PREPARE wraps.
	Inner *Statement
	// Name is the PREPARE/EXECUTE/DEALLOCATE/DECLARE/LISTEN name.
	Name string
	// All marks DEALLOCATE ALL and DISCARD ALL.
	All bool
	// Analyze marks EXPLAIN with an ANALYZE option.
	Analyze bool
	// Hold marks DECLARE ... WITH HOLD: the cursor outlives its transaction.
	Hold bool
	// Into marks SELECT ... INTO.
	Into bool
	// CurrentOf marks WHERE CURRENT OF somewhere in the statement.
	CurrentOf bool
	// Txn is the transaction statement kind: begin, commit, rollback,
	// savepoint, release, rollback_to, prepare, commit_prepared, rollback_prepared.
	Txn string
	// Discard is the DISCARD target: all, plans, sequences, temp.
	Discard string
	// Set describes a SET/RESET statement.
	Set *SetInfo
	// Copy describes a COPY statement; its query (if any) is Blocks.
	Copy *CopyInfo
	// ExecArgs are EXECUTE's argument values.
	ExecArgs []Value
	// ParamTypes are PREPARE's declared parameter type names.
	ParamTypes []string
	// Blocks are all query blocks; Blocks[0] is the top one when present.
	Blocks []*Block
	// Funcs are all function calls anywhere in the statement.
	Funcs []Func
	// Ops are all operators named anywhere (A_Expr and sublink operators).
	Ops []QName
	// Types are all type names anywhere.
	Types []QName
	// Unknown lists node kinds the walker does not understand in places where
	// a relation or function could hide; the policy denies them.
	Unknown []string
	// ReadWrite marks BEGIN / START TRANSACTION, SET TRANSACTION and SET
	// SESSION CHARACTERISTICS that ask for READ WRITE (or a transaction_read_only
	// option the walker cannot read as on).
	ReadWrite bool `json:",omitempty"`
	// Locking marks a row-locking clause (FOR UPDATE, NO KEY UPDATE, SHARE,
	// KEY SHARE) anywhere in the statement.
	Locking bool `json:",omitempty"`
	// Cols are every column reference of the statement, with the block
	// (and, inside JOIN ON, the items) it is resolved in.
	Cols []ColUse
	// Fixed are the locations of constants whose value the summary copied for
	// a decision (setting names, SET values): a cached analysis holds only while
	// these literals keep their text.
	Fixed []int
}

// QName is a possibly schema-qualified name (function, operator, type).
type QName struct {
	Schema, Name string
}

// ColUse is one column reference: its name parts ("*" for a star) and the
// block it is resolved in; Scoped marks a reference in JOIN ON, which sees
// only Scope (the join's two sides) of the block.
type ColUse struct {
	Block  int
	Col    ColRef
	Scoped bool
	Scope  []*FromItem `json:"-"`
}

// Func is one function call.
type Func struct {
	QName
	// Args are the call's arguments reduced to values (Kind ValOther when not a constant).
	Args []Value
	// Loc is the call's location.
	Loc int
}

// SetInfo describes SET, SET LOCAL, RESET and RESET ALL.
type SetInfo struct {
	// Kind is value, default, current, multi, reset or reset_all.
	Kind string
	// Name is the setting name, lower-cased as PostgreSQL does.
	Name string
	// Args are the value's constants as text; ArgsOK is false when some value
	// was not a plain constant.
	Args   []string
	ArgsOK bool
	Local  bool
	// Func marks a set_config call judged as a SET.
	Func bool
}

// CopyInfo describes a COPY statement.
type CopyInfo struct {
	// Rel is the table form's relation (nil for COPY (query)).
	Rel *Rel
	// From is COPY ... FROM; File and Program mark server-side files and programs.
	From, File, Program bool
	// Query is true for COPY (query) TO; the query's blocks are the statement's Blocks.
	Query bool
}

// RelKind is the kind of a range-table entry.
type RelKind int

// Relation kinds.
const (
	RelTable    RelKind = iota // a named relation (table, view, catalog)
	RelCTE                     // a reference to a WITH query
	RelSubquery                // a sub-SELECT in FROM
	RelFunction                // a function in FROM
	RelExcluded                // ON CONFLICT's EXCLUDED pseudo-relation
)

// Rel is one range-table entry of a block.
type Rel struct {
	Kind                  RelKind
	Catalog, Schema, Name string
	// Alias is the alias if any; ColAliases its column aliases.
	Alias      string
	ColAliases []string
	// Block is the body of a subquery or CTE reference (-1 otherwise).
	Block int
	// Cols are the output columns of a subquery/CTE/function when derivable (nil: unknown).
	Cols []string
	// DefAliases are a CTE reference's column names from the WITH definition.
	DefAliases []string
	// Target marks a DML target; Source marks a MERGE source.
	Target, Source bool
	// QualifiedOnly marks entries visible only to qualified references (EXCLUDED).
	QualifiedOnly bool
	Loc           int
}

// RefName is the name a column reference uses for the entry.
func (r *Rel) RefName() string {
	if r.Alias != "" {
		return r.Alias
	}
	return r.Name
}

// JoinKind is a join's type.
type JoinKind int

// Join kinds.
const (
	JoinInner JoinKind = iota
	JoinLeft
	JoinRight
	JoinFull
)

// FromItem is a node of a block's FROM tree: a leaf (Rel >= 0) or a join.
type FromItem struct {
	Rel         int
	Join        JoinKind
	Left, Right *FromItem
	Quals       []Pred
	Using       []string
	Natural     bool
	Alias       string
	// UsingAlias is JOIN ... USING (...) AS name: a name for the merged
	// USING columns that, unlike Alias, hides nothing.
	UsingAlias string
}

// PredKind is the form of a conjunct.
type PredKind int

// Predicate forms.
const (
	PredOther PredKind = iota // anything else (never pins)
	PredEq                    // Col = every one of Vals (=, IN, = ANY, IS NOT DISTINCT FROM)
	PredColEq                 // Col = Col2, both uncast column references
	PredOr                    // an OR: every branch (a conjunct list) must pin
)

// Pred is one conjunct of a WHERE or ON clause.
type Pred struct {
	Kind PredKind
	Col  ColRef
	Col2 ColRef
	Vals []Value
	Or   [][]Pred
}

// ColRef is a column reference's name parts (last part is the column).
type ColRef struct {
	Fields []string
}

// ValueKind is the form of a candidate pin value.
type ValueKind int

// Value forms.
const (
	ValOther      ValueKind = iota // not a pin value
	ValConst                       // a constant (ConstKind tells which)
	ValParam                       // $n
	ValSetting                     // current_setting(Text [, missing_ok])
	ValArrayConst                  // an array literal '{...}' (for = ANY)
	ValArrayParam                  // $n holding an array (for = ANY)
)

// Value is an expression reduced to what a pin needs.
type Value struct {
	Kind ValueKind
	// ConstKind is int, string, float, bool or null for ValConst.
	ConstKind string
	// Text is the constant's text or the setting name.
	Text string
	// Param is the parameter number.
	Param int
	// Loc is the constant's location (A_Const.location).
	Loc int
	// Casts are the type names the value is cast to, innermost first
	// ("?" for a cast to a type outside pg_catalog).
	Casts []string
}

// Expr is a target-list or VALUES expression reduced for INSERT/UPDATE checks.
type Expr struct {
	// Kind is value, column, default or other.
	Kind string
	Val  Value
	Col  ColRef
}

// Block is one query level.
type Block struct {
	// Parent is the block whose FROM entries are visible to correlated
	// references from this one (-1: none).
	Parent int
	// Scoped marks a block that sees only Scope of its parent's FROM items
	// (parse analysis' namespace at the point the block was parsed: a
	// LATERAL subquery or a function in FROM sees the earlier items and the
	// left sides of the joins it is on the right of; a subquery in JOIN ON
	// sees the join's two sides). Unscoped blocks see every FROM item.
	Scoped bool
	Scope  []*FromItem `json:"-"`
	// Role says where the block sits: select, cte, from, sublink, setop,
	// values, insert, update, delete, merge.
	Role string
	Rels []Rel
	From []*FromItem
	// Where holds the WHERE conjuncts.
	Where []Pred
	// Targets are the target-list expressions; Star marks a * in it.
	Targets []Expr
	Star    bool
	// TargetNames are the output names of the targets: a name, "*" or
	// "qualifier.*" for stars, "" when not derivable.
	TargetNames []string
	// Values are the rows of a VALUES block.
	Values [][]Expr
	// OutCols are the output column names when derivable.
	OutCols []string
	// DML describes an INSERT/UPDATE/DELETE/MERGE body.
	DML *DML
	// Locking marks FOR UPDATE / FOR SHARE (any strength); LockRels are
	// the names after OF (empty: every relation of the block).
	Locking  bool
	LockRels []string
}

// DML describes a data-modifying block. Its target is Rels[0].
type DML struct {
	Kind Kind
	// Cols is INSERT's column list (nil: none given); Indirect marks columns
	// with subscripts or field selection.
	Cols     []string
	Indirect []bool
	// DefaultValues marks INSERT ... DEFAULT VALUES.
	DefaultValues bool
	// Arms are INSERT's source blocks (each set-operation arm or VALUES block).
	Arms []int
	// SourceOther marks an INSERT source the walker could not reduce to arms.
	SourceOther bool
	// Set is UPDATE's (or ON CONFLICT DO UPDATE's) SET list.
	Set []SetTarget
	// Conflict describes INSERT ... ON CONFLICT.
	Conflict *Conflict
	// On holds MERGE's ON conjuncts; Actions its WHEN clauses.
	On      []Pred
	Actions []MergeAction
}

// SetTarget is one SET assignment.
type SetTarget struct {
	Col      string
	Indirect bool
	Val      Expr
}

// Conflict is an ON CONFLICT clause.
type Conflict struct {
	Update     bool
	Infer      []string
	Constraint string
	Where      []Pred
	Set        []SetTarget
}

// MergeAction is one WHEN clause of MERGE.
type MergeAction struct {
	// Match is matched, not_matched (by target) or not_matched_by_source.
	Match string
	// Cmd is insert, update, delete or nothing.
	Cmd    string
	Cols   []string
	Values []Expr
	Set    []SetTarget
}
