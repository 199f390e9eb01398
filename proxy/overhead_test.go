package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/tenancy"
)

// slowAuditor takes auditDelay to record each statement event, as a spool
// waiting for an fsync would.
type slowAuditor struct{}

const auditDelay = 3 * time.Millisecond

func (slowAuditor) Record(_ context.Context, ev tenancy.Event) error {
	if ev.Kind == tenancy.KindStatement {
		time.Sleep(auditDelay)
	}
	return nil
}

// overheadMetrics records what StatementDone reports.
type overheadMetrics struct {
	nopMetrics
	mu        sync.Mutex
	overheads []time.Duration
}

func (m *overheadMetrics) StatementDone(_ string, overhead, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.overheads = append(m.overheads, overhead)
}

// Every statement reports the time pgtenant spent on it, the audit's wait
// included, in the extended protocol too, where the check and the audit run
// at Bind, not at Execute.
func TestStatementOverheadIsReportedInEveryProtocol(t *testing.T) {
	for name, tc := range map[string]struct {
		msgs       []pgproto3.FrontendMessage
		statements int
	}{
		"simple":   {[]pgproto3.FrontendMessage{&pgproto3.Query{String: "SELECT 1"}}, 1},
		"extended": {[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "SELECT $1"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("42")}}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 1},
		"prepared twice": {[]pgproto3.FrontendMessage{&pgproto3.Parse{Name: "s", Query: "SELECT 1"}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Bind{PreparedStatement: "s"}, &pgproto3.Execute{}, &pgproto3.Sync{}}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			srv := fuzzSessionServer(t)
			m := &overheadMetrics{}
			srv.opts.Metrics, srv.opts.Auditor = m, slowAuditor{}
			var script []byte
			for _, msg := range tc.msgs {
				script = append(script, fuzzMsg(msg)...)
			}
			runFuzzSession(t, srv, script)
			m.mu.Lock()
			defer m.mu.Unlock()
			waited := 0
			for _, o := range m.overheads {
				if o >= auditDelay {
					waited++
				}
			}
			if waited != tc.statements {
				t.Errorf("overheads reported %v: %d include the audit's %v, want %d", m.overheads, waited, auditDelay, tc.statements)
			}
		})
	}
}
