package audit

import (
	"reflect"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

// A result merged as an event (async mode's path) leaves its statement's
// row exactly as the result made a row and merged would.
func TestMergeEventIsMergeResult(t *testing.T) {
	for _, res := range []tenancy.Event{
		{Rows: 5, DurationUS: 120, SQLState: ""},
		{Rows: -1, DurationUS: 0, SQLState: "42501"},
		{Rows: 0, DurationUS: 7, SQLState: "22\xff\x0001"},
	} {
		res.Kind, res.Time, res.AccountID, res.Region, res.SessionID, res.Ref = tenancy.KindResult, time.Now(), "42", "eu-west", "s1", 3
		st := stmt("42", "s1", 1)
		st.SQLState = "00000"
		viaRow, err := NewRow(st, "eu-west", "i", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		viaEvent := *viaRow
		resRow, err := NewRow(res, "eu-west", "i", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		mergeResult(viaRow, resRow)
		mergeEvent(&viaEvent, res)
		if !reflect.DeepEqual(*viaRow, viaEvent) {
			t.Errorf("result %+v:\nmerged as a row   %+v\nmerged as an event %+v", res, *viaRow, viaEvent)
		}
	}
}
