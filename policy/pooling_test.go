package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Under transaction pooling, statements that leave session state behind
// are refused with 0A000 naming pool.mode: session; the same statements keep
// their session-mode verdict, and transaction-scoped forms stay allowed.
func TestTransactionPoolingRefusesSessionState(t *testing.T) {
	session := newTestEngine(t)
	pooled := newTestEngine(t)
	TransactionPooling()(pooled)
	refused := []string{
		"PREPARE q AS SELECT 1",
		"DEALLOCATE q",
		"DEALLOCATE ALL",
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"SET default_transaction_isolation = 'serializable'",
		"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
		"SELECT set_config('application_name', 'x', false)",
		"SELECT set_config('application_name', 'x', 'off')",
		"SELECT set_config('application_name', 'x', 'on'::bool)", // a cast: not a plain constant
		"SELECT 1; SET transaction_read_only = on",
	}
	for _, sql := range refused {
		d := pooled.NewSession(principal42()).CheckQuery(sql)
		if d.Allow || d.SQLState != pgerrcode.FeatureNotSupported || !strings.Contains(d.Message, "pool.mode: session") ||
			d.Reason != "transaction_pooling" {
			t.Errorf("pooled %q: allow=%v sqlstate=%s reason=%s message=%q; want 0A000 naming pool.mode: session",
				sql, d.Allow, d.SQLState, d.Reason, d.Message)
		}
		if d := session.NewSession(principal42()).CheckQuery(sql); d.Reason == "transaction_pooling" {
			t.Errorf("session mode %q refused for transaction pooling", sql)
		}
	}
	allowed := []string{
		"SET LOCAL TimeZone = 'UTC'",
		"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
		"SELECT set_config('application_name', 'x', true)",
		"SELECT set_config('application_name', 'x', 'on')",
		"SELECT set_config('application_name', 'x', 'YES')",
		"DECLARE c CURSOR FOR SELECT 1",
		"BEGIN; SET LOCAL statement_timeout = '1s'; SELECT 1; COMMIT",
	}
	for _, sql := range allowed {
		if d := pooled.NewSession(principal42()).CheckQuery(sql); !d.Allow {
			t.Errorf("pooled %q denied: %s", sql, d.Message)
		}
	}
}

func principal42() auth.Principal { return auth.Principal{Account: "42", Region: "eu-west"} }

// Session-level SETs of allowed settings are allowed under transaction
// pooling and carried in the decision for the proxy to replay.
func TestTransactionPoolingTracksSessionSets(t *testing.T) {
	pooled := newTestEngine(t)
	TransactionPooling()(pooled)
	cases := map[string][]tenancy.SessionSet{
		"SET TimeZone = 'UTC'":                 {{Name: "timezone", Value: "UTC"}},
		"SET SESSION statement_timeout = 5000": {{Name: "statement_timeout", Value: "5000"}},
		"SET DateStyle = ISO, MDY":             {{Name: "datestyle", Value: "iso, mdy"}},
		"RESET TimeZone":                       {{Name: "timezone", Reset: true}},
		"SET application_name TO DEFAULT":      {{Name: "application_name", Reset: true}},
		"SELECT 1; SET lock_timeout = '1s'":    {{Stmt: 1, Name: "lock_timeout", Value: "1s"}},
		"SET LOCAL TimeZone = 'UTC'":           nil,
		"RESET ALL":                            {{Reset: true, All: true}},
	}
	for sql, want := range cases {
		d := pooled.NewSession(principal42()).CheckQuery(sql)
		if !d.Allow || fmt.Sprint(d.Sets) != fmt.Sprint(want) {
			t.Errorf("%s: allow=%v sets=%+v (%s), want sets %+v", sql, d.Allow, d.Sets, d.Message, want)
		}
	}
	s := pooled.NewSession(principal42())
	if d := s.CheckParse("st", "SET TimeZone = 'Asia/Tokyo'", nil); !d.Allow {
		t.Fatalf("parse: %s", d.Message)
	}
	for _, c := range s.inflight {
		s.Resolve(c.id, tenancy.Confirmed, nil)
	}
	d := s.CheckBind("st", nil, nil)
	if !d.Allow || len(d.Sets) != 1 || d.Sets[0] != (tenancy.SessionSet{Name: "timezone", Value: "Asia/Tokyo"}) {
		t.Errorf("bind of a prepared SET: %+v", d)
	}
	// session mode carries none
	if d := newTestEngine(t).NewSession(principal42()).CheckQuery("SET TimeZone = 'UTC'"); !d.Allow || d.Sets != nil {
		t.Errorf("session mode: %+v", d)
	}
}
