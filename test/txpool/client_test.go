package txpool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// proto is how a client talks to the proxy.
type proto int

const (
	// protoSimple: the simple query protocol (pgbench -M simple), also
	// multi-statement Query messages (one implicit transaction each).
	protoSimple proto = iota
	// protoExtended: unnamed statements, Parse/Bind/Execute/Sync per
	// statement (pgbench -M extended).
	protoExtended
	// protoPrepared: named statements prepared once per client connection
	// and reused on whatever backend serves the next transaction (pgbench
	// -M prepared).
	protoPrepared
	// protoBatch: a pgx batch, the statements of a transaction pipelined
	// with one Sync at the end (one implicit transaction).
	protoBatch
	// protoPipeline: a pgconn pipeline with a Sync after every statement:
	// several transactions in flight at once on one client connection.
	protoPipeline
	// protoDescribe: pgx's DescribeExec, an unnamed statement parsed and
	// described in a round trip (Parse, Describe, Sync) of its own, then
	// bound and executed in the next: the unnamed statement must survive
	// the transaction boundary between the two.
	protoDescribe
	numProtos
)

func (p proto) String() string {
	return [...]string{"simple", "extended", "prepared", "batch", "pipeline", "describe"}[p]
}

// execMode is the pgx query mode of the protocol.
func (p proto) execMode() pgx.QueryExecMode {
	switch p {
	case protoSimple:
		return pgx.QueryExecModeSimpleProtocol
	case protoExtended:
		return pgx.QueryExecModeExec
	case protoDescribe:
		return pgx.QueryExecModeDescribeExec
	default:
		return pgx.QueryExecModeCacheStatement
	}
}

// errIsolation marks a broken invariant, as opposed to a failed statement.
var errIsolation = errors.New("isolation")

func isolationf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errIsolation, fmt.Sprintf(format, args...))
}

// The statements of the scripts. settingSQL and countsSQL read tx_probe
// under RLS with no predicate on account_id: only the tenant setting
// chooses which rows they see.
const (
	insertSQL  = `INSERT INTO public.tx_probe (account_id, client, seq) VALUES ($1::bigint, $2::int, $3::int)`
	settingSQL = `SELECT coalesce(current_setting('app.current_account_id', true), '<unset>')`
	// countsSQL: the tenant setting, this client's visible rows, and
	// visible rows of other accounts (always 0 under a correct setting).
	countsSQL = `SELECT coalesce(current_setting('app.current_account_id', true), '<unset>'),
	count(*) FILTER (WHERE client = $1::int), count(*) FILTER (WHERE account_id <> $2::bigint)
	FROM public.tx_probe`
	// ordersSQL: the demo's orders under their own fail-closed RLS.
	ordersSQL  = `SELECT account_id, count(*) FROM public.orders GROUP BY account_id ORDER BY account_id`
	outsideSQL = `CALL public.tx_probe_outside(NULL, NULL)`
)

// client is one client connection of one tenant running the scripts. It
// counts the rows it committed to tx_probe, which its reads must see.
type client struct {
	id        int
	tenant    int64
	proto     proto
	conn      *pgx.Conn
	committed int // tx_probe rows of this client that committed
	seq       int // next seq value
	txMode    bool
	// noCall: the statement policy is on and refuses CALL, so outside
	// cannot probe the backend.
	noCall bool
	// pipePrepared: pipeCountsStmt is prepared on this client connection.
	pipePrepared bool
}

// pipeCountsStmt is the named statement of protoPipeline.
const pipeCountsStmt = "txp_counts"

func (c *client) nextSeq() int { c.seq++; return c.seq }

// wantSetting checks the tenant setting a statement saw.
func (c *client) wantSetting(where, got string) error {
	if got != strconv.FormatInt(c.tenant, 10) {
		return isolationf("client %d (tenant %d, %s) %s: tenant setting %q", c.id, c.tenant, c.proto, where, got)
	}
	return nil
}

// wantCounts checks countsSQL's answer: the own setting, own rows exactly
// as many as expected, no other account's rows.
func (c *client) wantCounts(where, setting string, own, foreign int64, wantOwn int) error {
	if err := c.wantSetting(where, setting); err != nil {
		return err
	}
	if own != int64(wantOwn) || foreign != 0 {
		return isolationf("client %d (tenant %d, %s) %s: sees %d own rows (want %d) and %d rows of other accounts",
			c.id, c.tenant, c.proto, where, own, wantOwn, foreign)
	}
	return nil
}

// wantOrders checks ordersSQL's rows: exactly the tenant's seeded orders.
func (c *client) wantOrders(where string, rows pgx.Rows) error {
	type pair struct{ acct, n int64 }
	var got []pair
	for rows.Next() {
		var p pair
		if err := rows.Scan(&p.acct, &p.n); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		got = append(got, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if len(got) != 1 || got[0].acct != c.tenant || got[0].n != ordersPerTenant {
		return isolationf("client %d (tenant %d, %s) %s: orders visible %v, want only [{%d %d}]",
			c.id, c.tenant, c.proto, where, got, c.tenant, ordersPerTenant)
	}
	return nil
}

// explicit runs BEGIN; setting; INSERT; counts; orders; COMMIT.
func (c *client) explicit(ctx context.Context) error {
	seq := c.nextSeq()
	switch c.proto {
	case protoBatch:
		return c.explicitBatch(ctx, seq)
	case protoPipeline:
		return c.explicitPipeline(ctx, seq)
	}
	tx, err := c.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var setting string
	if err := tx.QueryRow(ctx, settingSQL).Scan(&setting); err != nil {
		return fmt.Errorf("explicit setting: %w", err)
	}
	if err := c.wantSetting("first statement of BEGIN block", setting); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, insertSQL, c.tenant, c.id, seq); err != nil {
		return fmt.Errorf("explicit insert: %w", err)
	}
	var own, foreign int64
	if err := tx.QueryRow(ctx, countsSQL, c.id, c.tenant).Scan(&setting, &own, &foreign); err != nil {
		return fmt.Errorf("explicit counts: %w", err)
	}
	if err := c.wantCounts("in BEGIN block after INSERT", setting, own, foreign, c.committed+1); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, ordersSQL)
	if err != nil {
		return fmt.Errorf("explicit orders: %w", err)
	}
	if err := c.wantOrders("orders in BEGIN block", rows); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	c.committed++
	return nil
}

func (c *client) explicitBatch(ctx context.Context, seq int) error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(insertSQL, c.tenant, c.id, seq)
	b.Queue(countsSQL, c.id, c.tenant)
	b.Queue(ordersSQL)
	b.Queue("COMMIT")
	br := c.conn.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch begin: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch insert: %w", err)
	}
	var setting string
	var own, foreign int64
	if err := br.QueryRow().Scan(&setting, &own, &foreign); err != nil {
		return fmt.Errorf("batch counts: %w", err)
	}
	if err := c.wantCounts("batched BEGIN block", setting, own, foreign, c.committed+1); err != nil {
		return err
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("batch orders: %w", err)
	}
	if err := c.wantOrders("orders in batched BEGIN block", rows); err != nil {
		return err
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("batch commit: %w", err)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	c.committed++
	return nil
}

// explicitPipeline sends a BEGIN block and two implicit transactions
// behind it in one pipeline, each ended by its own Sync: the proxy sees
// the next transactions' messages before the first one's answers.
func (c *client) explicitPipeline(ctx context.Context, seq int) error {
	pc := c.conn.PgConn()
	p := pc.StartPipeline(ctx)
	args := func(vs ...any) [][]byte {
		var out [][]byte
		for _, v := range vs {
			out = append(out, []byte(fmt.Sprint(v)))
		}
		return out
	}
	// A named statement, parsed in the first pipeline of the connection
	// and executed in every later one, on whichever backend serves it.
	if !c.pipePrepared {
		p.SendPrepare(pipeCountsStmt, countsSQL, nil)
	}
	p.SendQueryParams("BEGIN", nil, nil, nil, nil)
	p.SendQueryParams(insertSQL, args(c.tenant, c.id, seq), nil, nil, nil)
	p.SendQueryPrepared(pipeCountsStmt, args(c.id, c.tenant), nil, nil)
	p.SendQueryParams("COMMIT", nil, nil, nil, nil)
	p.SendPipelineSync()
	p.SendQueryParams(insertSQL, args(c.tenant, c.id, c.nextSeq()), nil, nil, nil) // implicit, committed at its Sync
	p.SendPipelineSync()
	p.SendQueryPrepared(pipeCountsStmt, args(c.id, c.tenant), nil, nil)
	if err := p.Sync(); err != nil { // the third Sync, and the flush
		_ = p.Close()
		return fmt.Errorf("pipeline send: %w", err)
	}
	var results []*pgconn.Result
	syncs := 0
	for syncs < 3 {
		r, err := p.GetResults()
		if err != nil {
			_ = p.Close()
			return fmt.Errorf("pipeline result: %w", err)
		}
		switch r := r.(type) {
		case *pgconn.ResultReader:
			res := r.Read()
			if res.Err != nil {
				_ = p.Close()
				return fmt.Errorf("pipeline statement %d: %w", len(results), res.Err)
			}
			results = append(results, res)
		case *pgconn.StatementDescription:
			c.pipePrepared = true
		case *pgconn.PipelineSync:
			syncs++
		}
	}
	if err := p.Close(); err != nil {
		return fmt.Errorf("pipeline close: %w", err)
	}
	if len(results) != 6 {
		return fmt.Errorf("pipeline: %d results, want 6", len(results))
	}
	check := func(i int, where string, wantOwn int) error {
		row := results[i].Rows
		if len(row) != 1 || len(row[0]) != 3 {
			return fmt.Errorf("pipeline %s: %d rows", where, len(row))
		}
		own, _ := strconv.ParseInt(string(row[0][1]), 10, 64)
		foreign, _ := strconv.ParseInt(string(row[0][2]), 10, 64)
		return c.wantCounts(where, string(row[0][0]), own, foreign, wantOwn)
	}
	if err := check(2, "pipelined BEGIN block", c.committed+1); err != nil {
		return err
	}
	if err := check(5, "pipelined implicit transaction after two others", c.committed+2); err != nil {
		return err
	}
	c.committed += 2
	return nil
}

// implicit runs statements outside BEGIN: an INSERT on its own, then a
// read, and (simple protocol) a two-statement Query, (batch) a batch
// without BEGIN: each one implicit transaction.
func (c *client) implicit(ctx context.Context) error {
	switch c.proto {
	case protoSimple:
		seq := c.nextSeq()
		// One Query message, two statements, one implicit transaction.
		q := fmt.Sprintf("INSERT INTO public.tx_probe (account_id, client, seq) VALUES (%d, %d, %d); %s",
			c.tenant, c.id, seq, strings.ReplaceAll(strings.ReplaceAll(countsSQL, "$1::int", strconv.Itoa(c.id)), "$2::bigint", strconv.FormatInt(c.tenant, 10)))
		res, err := c.conn.PgConn().Exec(ctx, q).ReadAll()
		if err != nil {
			return fmt.Errorf("multi-statement query: %w", err)
		}
		if len(res) != 2 || len(res[1].Rows) != 1 {
			return fmt.Errorf("multi-statement query: %d results", len(res))
		}
		row := res[1].Rows[0]
		own, _ := strconv.ParseInt(string(row[1]), 10, 64)
		foreign, _ := strconv.ParseInt(string(row[2]), 10, 64)
		if err := c.wantCounts("multi-statement Query", string(row[0]), own, foreign, c.committed+1); err != nil {
			return err
		}
		c.committed++
	case protoBatch:
		b := &pgx.Batch{}
		b.Queue(insertSQL, c.tenant, c.id, c.nextSeq())
		b.Queue(countsSQL, c.id, c.tenant)
		b.Queue(ordersSQL)
		br := c.conn.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			br.Close()
			return fmt.Errorf("implicit batch insert: %w", err)
		}
		var setting string
		var own, foreign int64
		if err := br.QueryRow().Scan(&setting, &own, &foreign); err != nil {
			br.Close()
			return fmt.Errorf("implicit batch counts: %w", err)
		}
		if err := c.wantCounts("batch without BEGIN", setting, own, foreign, c.committed+1); err != nil {
			br.Close()
			return err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return fmt.Errorf("implicit batch orders: %w", err)
		}
		err = c.wantOrders("orders in batch without BEGIN", rows)
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("implicit batch: %w", cerr)
		}
		if err != nil {
			return err
		}
		c.committed++
	}
	if _, err := c.conn.Exec(ctx, insertSQL, c.tenant, c.id, c.nextSeq()); err != nil {
		return fmt.Errorf("implicit insert: %w", err)
	}
	c.committed++
	var setting string
	var own, foreign int64
	if err := c.conn.QueryRow(ctx, countsSQL, c.id, c.tenant).Scan(&setting, &own, &foreign); err != nil {
		return fmt.Errorf("implicit counts: %w", err)
	}
	if err := c.wantCounts("statement outside BEGIN", setting, own, foreign, c.committed); err != nil {
		return err
	}
	rows, err := c.conn.Query(ctx, ordersSQL)
	if err != nil {
		return fmt.Errorf("implicit orders: %w", err)
	}
	return c.wantOrders("orders outside BEGIN", rows)
}

// rollback inserts in a BEGIN block, sees its row, and rolls back: the
// row must never be counted again.
func (c *client) rollback(ctx context.Context) error {
	tx, err := c.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, insertSQL, c.tenant, c.id, c.nextSeq()); err != nil {
		return fmt.Errorf("insert before rollback: %w", err)
	}
	var setting string
	var own, foreign int64
	if err := tx.QueryRow(ctx, countsSQL, c.id, c.tenant).Scan(&setting, &own, &foreign); err != nil {
		return fmt.Errorf("counts before rollback: %w", err)
	}
	if err := c.wantCounts("before ROLLBACK", setting, own, foreign, c.committed+1); err != nil {
		return err
	}
	if err := tx.Rollback(ctx); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// outside calls tx_probe_outside: the tenant inside the client's
// transaction must be its own and, in transaction mode, the backend must
// hold no tenant once that transaction committed.
func (c *client) outside(ctx context.Context) error {
	if c.noCall {
		return nil
	}
	var inside, outside *string
	if err := c.conn.QueryRow(ctx, outsideSQL).Scan(&inside, &outside); err != nil {
		return fmt.Errorf("call tx_probe_outside: %w", err)
	}
	in := "<unset>"
	if inside != nil {
		in = *inside
	}
	if err := c.wantSetting("inside CALL", in); err != nil {
		return err
	}
	if c.txMode && outside != nil && *outside != "" {
		return isolationf("client %d (tenant %d, %s): after COMMIT the backend still holds tenant setting %q (want none: transaction-local)",
			c.id, c.tenant, c.proto, *outside)
	}
	return nil
}

// errorList collects the first errors of many goroutines.
type errorList struct {
	mu        sync.Mutex
	n         int
	isolation int
	first     []string
}

func (l *errorList) add(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if errors.Is(err, errIsolation) {
		l.isolation++
	}
	if len(l.first) < 25 {
		l.first = append(l.first, err.Error())
	}
}

func (l *errorList) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d errors (%d isolation violations); first:\n  %s", l.n, l.isolation, strings.Join(l.first, "\n  "))
}

func (l *errorList) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}
