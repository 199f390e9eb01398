package e2e

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/tenancy"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// hungAuditor never completes a statement event: it holds the caller until
// the caller's context ends, as an audit store that stopped answering does.
type hungAuditor struct{ waited atomic.Int64 }

func (h *hungAuditor) Record(ctx context.Context, ev tenancy.Event) error {
	if ev.Kind != tenancy.KindStatement {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("audit wait without a deadline")
	}
	<-ctx.Done()
	h.waited.Add(1)
	return ctx.Err()
}

// An audit store that hangs refuses statements (57P03) after a bounded wait
// instead of stalling the session, and Shutdown still completes.
func TestAuditOutageIsBounded(t *testing.T) {
	h := &hungAuditor{}
	env := proxytest.Start(t, proxytest.Options{Regions: []string{"eu-west"}, Auditor: h})
	conn := connect(t, env.DSN(t, "42", "eu-west"))
	_, err := conn.Exec(ctxT(t), "SELECT 1")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57P03" {
		t.Fatalf("statement during an audit outage: %v, want 57P03", err)
	}
	if h.waited.Load() != 1 {
		t.Fatalf("auditor calls that ended: %d", h.waited.Load())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := env.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown during an audit outage: %v", err)
	}
}
