package parser

import (
	"sort"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// The walker handles these node types field by field rather than generically.
// If a pg_query upgrade adds a field to one of them (where a relation or a
// sublink could hide), this test fails until the walker is taught about it.
func TestWalkerKnowsEveryField(t *testing.T) {
	known := map[proto.Message]string{
		&pg.SelectStmt{}:        "distinct_clause into_clause target_list from_clause where_clause group_clause group_distinct having_clause window_clause values_lists sort_clause limit_offset limit_count limit_option locking_clause with_clause op all larg rarg",
		&pg.InsertStmt{}:        "relation cols select_stmt on_conflict_clause returning_list with_clause override",
		&pg.UpdateStmt{}:        "relation target_list where_clause from_clause returning_list with_clause",
		&pg.DeleteStmt{}:        "relation using_clause where_clause returning_list with_clause",
		&pg.MergeStmt{}:         "relation source_relation join_condition merge_when_clauses returning_list with_clause",
		&pg.MergeWhenClause{}:   "match_kind command_type override condition target_list values",
		&pg.OnConflictClause{}:  "action infer target_list where_clause location",
		&pg.InferClause{}:       "index_elems where_clause conname location",
		&pg.CommonTableExpr{}:   "ctename aliascolnames ctematerialized ctequery search_clause cycle_clause location cterecursive cterefcount ctecolnames ctecoltypes ctecoltypmods ctecolcollations",
		&pg.WithClause{}:        "ctes recursive location",
		&pg.JoinExpr{}:          "jointype is_natural larg rarg using_clause join_using_alias quals alias rtindex",
		&pg.RangeSubselect{}:    "lateral subquery alias",
		&pg.RangeFunction{}:     "lateral ordinality is_rowsfrom functions alias coldeflist",
		&pg.RangeTableSample{}:  "relation method args repeatable location",
		&pg.RangeVar{}:          "catalogname schemaname relname inh relpersistence alias location",
		&pg.CopyStmt{}:          "relation query attlist is_from is_program filename options where_clause",
		&pg.ExplainStmt{}:       "query options",
		&pg.PrepareStmt{}:       "name argtypes query",
		&pg.ExecuteStmt{}:       "name params",
		&pg.DeclareCursorStmt{}: "portalname options query",
		&pg.SubLink{}:           "xpr sub_link_type sub_link_id testexpr oper_name subselect location",
		&pg.FuncCall{}:          "funcname args agg_order agg_filter over agg_within_group agg_star agg_distinct func_variadic funcformat location",
		&pg.A_Expr{}:            "kind name lexpr rexpr location",
		&pg.TypeCast{}:          "arg type_name location",
		&pg.ResTarget{}:         "name indirection val location",
		&pg.VariableSetStmt{}:   "kind name args is_local",
	}
	for m, want := range known {
		var got []string
		fields := m.ProtoReflect().Descriptor().Fields()
		for i := 0; i < fields.Len(); i++ {
			got = append(got, string(fields.Get(i).Name()))
		}
		w := strings.Fields(want)
		sort.Strings(got)
		sort.Strings(w)
		if strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("%s fields changed:\n got %v\nwant %v", m.ProtoReflect().Descriptor().Name(), got, w)
		}
	}
}
