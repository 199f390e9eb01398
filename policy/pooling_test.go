package policy

import (
	"strings"
	"testing"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
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
		"SET TimeZone = 'UTC'",
		"SET SESSION statement_timeout = '5s'",
		"RESET TimeZone",
		"RESET ALL",
		"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
		"SELECT set_config('application_name', 'x', false)",
		"SELECT 1; SET TimeZone = 'UTC'",
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
