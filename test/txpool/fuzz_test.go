package txpool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Fuzz program shape: the first byte picks the pool (pool.size 2 or 3);
// then each pair of bytes is one operation: the first picks the client,
// the second the operation (low bits) and its parameter (high bits).
const (
	fuzzClients = 6 // client i is tenant tenantID(i % fuzzTenants)
	fuzzTenants = 4 // so clients 0/4 and 1/5 share a tenant
	fuzzMaxOps  = 64
)

// fuzzReadSQL is countsSQL with the session's work_mem (see opSet).
const fuzzReadSQL = `SELECT coalesce(current_setting('app.current_account_id', true), '<unset>'),
	count(*) FILTER (WHERE client = $1::int), count(*) FILTER (WHERE account_id <> $2::bigint),
	current_setting('work_mem')
	FROM public.tx_probe`

// fuzzOp is one operation of a fuzz program.
type fuzzOp int

const (
	opBegin       fuzzOp = iota
	opInsert             // INSERT a row of this client
	opRead               // setting, own rows exactly, no foreign rows
	opCommit             //
	opRollback           //
	opDivZero            // SELECT 1/0: an error (aborts a BEGIN block)
	opUnique             // INSERT a duplicate (client, seq): 23505
	opSleepCancel        // tx_sleep while the client's own CancelRequest fires
	opDisconnect         // close the connection (hard: TCP close, or Terminate), maybe mid-transaction
	opOutside            // CALL tx_probe_outside: no tenant outside a transaction
	opOrders             // exactly the tenant's own orders
	opMultiError         // one Query "INSERT; SELECT 1/0": the whole implicit transaction rolls back
	opSet                // SET work_mem to this client's own value: no other client may ever see it
	numFuzzOps
)

var fuzzOpNames = [...]string{"begin", "insert", "read", "commit", "rollback", "divzero", "unique",
	"sleep+cancel", "disconnect", "outside", "orders", "multi-error", "set"}

func (o fuzzOp) String() string { return fuzzOpNames[o] }

// fuzzClientIDs numbers clients across inputs (tx_probe keeps every row).
var fuzzClientIDs atomic.Int64

// FuzzTransactions interleaves BEGIN blocks, implicit transactions,
// errors (division by zero, unique violations, a failing multi-statement
// Query), cancels and disconnects (graceful and hard, also mid-transaction)
// of six clients of four tenants on a pool of two or three backends. Each
// client's operations run in program order on its own goroutine, so
// clients run concurrently. It asserts that
//   - every read sees its own tenant's setting, exactly its own committed
//     (plus its transaction's pending) rows, no other tenant's rows, and
//     exactly its own orders; an aborted transaction refuses statements
//     (25P02) until it ends;
//   - an error, cancel or disconnect carries nothing over: after it, the
//     client's (or a new connection's) next transaction starts clean and
//     no other client ever sees its pending rows or setting;
//   - a statement is cancelled (57014) only by its own client's
//     CancelRequest, and outside a transaction the backend holds no tenant;
//   - in the database, every row recorded its own tenant's setting, no
//     transaction served two clients, and each client's rows are exactly
//     those it committed (rolled back, failed and disconnected
//     transactions left none).
//
// The seeds in testdata/fuzz/FuzzTransactions run as a regular test.
func FuzzTransactions(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 1, 1, 1, 2, 0, 1, 1, 3, 0, 2, 1, 2})
	// One proxy per pool size for all inputs: an input must leave nothing
	// behind for the next one.
	envs := map[int]*txEnv{}
	for _, size := range []int{2, 3} {
		envs[size] = start(f, poolOptions{Size: size, MaxWait: 30 * time.Second})
	}
	seedTenants(f, envs[2].c, fuzzTenants)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 3 {
			return
		}
		runFuzzProgram(t, envs[2+int(data[0]%2)], data[1:])
	})
}

// fuzzClient is one client of a fuzz program and the model of what it
// must see.
type fuzzClient struct {
	e         *txEnv
	t         *testing.T
	id        int // client column of tx_probe
	tenant    int64
	proto     proto // simple, extended or prepared
	conn      *pgx.Conn
	inTx      bool
	aborted   bool // the BEGIN block failed: statements get 25P02 until it ends
	pending   int  // rows inserted in the open BEGIN block
	committed int
	seq       int
	ops       chan fuzzStep
	log       []string // what ran, for the failure message
	// defaultWorkMem is the server's work_mem; opSet sets workMem().
	defaultWorkMem string
}

// workMem is the client's own work_mem value: unique per client (ids
// differ), in kB below 1MB so that the server shows it as written.
func (c *fuzzClient) workMem() string { return fmt.Sprintf("%dkB", 64+c.id%900) }

type fuzzStep struct {
	op    fuzzOp
	param byte
}

func runFuzzProgram(t *testing.T, e *txEnv, prog []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var errs errorList
	clients := make([]*fuzzClient, fuzzClients)
	var defaultWorkMem string // the superuser's session never sets it
	if err := e.su.QueryRow(ctx, `SHOW work_mem`).Scan(&defaultWorkMem); err != nil {
		t.Fatal(err)
	}
	for i := range clients {
		clients[i] = &fuzzClient{e: e, t: t, id: int(1_000_000 + fuzzClientIDs.Add(1)), tenant: tenantID(i % fuzzTenants),
			proto: proto(i % 3), ops: make(chan fuzzStep, fuzzMaxOps), defaultWorkMem: defaultWorkMem}
	}
	n := 0
	for i := 0; i+1 < len(prog) && n < fuzzMaxOps; i += 2 {
		c := clients[int(prog[i])%fuzzClients]
		c.ops <- fuzzStep{fuzzOp(int(prog[i+1]) % int(numFuzzOps)), prog[i+1] / byte(numFuzzOps)}
		n++
	}
	var wg sync.WaitGroup
	for _, c := range clients {
		close(c.ops)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.runAll(ctx)
			if err != nil {
				err = fmt.Errorf("client %d (tenant %d, %s) after %v: %w", c.id, c.tenant, c.proto, c.log, err)
			}
			errs.add(err)
		}()
	}
	wg.Wait()
	if errs.count() > 0 {
		t.Errorf("%s", errs.String())
	}
	reportViolations(t, e.checkDatabase(ctx, t, true))
	// Each client's rows are exactly those it committed.
	for _, c := range clients {
		var got int
		if err := e.su.QueryRow(ctx, `SELECT count(*) FROM public.tx_probe WHERE client = $1`, c.id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.committed && errs.count() == 0 {
			t.Errorf("client %d (tenant %d): %d rows in tx_probe, committed %d; ops %v", c.id, c.tenant, got, c.committed, c.log)
		}
	}
}

// runAll runs the client's operations, then ends its transaction, checks
// it once more and disconnects.
func (c *fuzzClient) runAll(ctx context.Context) error {
	defer c.close(false)
	for s := range c.ops {
		c.log = append(c.log, s.op.String())
		if err := c.do(ctx, s); err != nil {
			return err
		}
	}
	c.log = append(c.log, "(end)")
	for _, op := range []fuzzOp{opRollback, opRead, opOutside} {
		if err := c.do(ctx, fuzzStep{op: op}); err != nil {
			return err
		}
	}
	return nil
}

// ensure connects (again, after a disconnect) and gives the client its
// seq-0 row, which opUnique duplicates.
func (c *fuzzClient) ensure(ctx context.Context) error {
	if c.conn != nil {
		return nil
	}
	conn, err := c.e.connect(ctx, c.t, c.tenant, c.proto.execMode())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c.conn, c.inTx, c.aborted, c.pending = conn, false, false, 0
	if c.seq == 0 {
		if _, err := c.conn.Exec(ctx, insertSQL, c.tenant, c.id, 0); err != nil {
			return fmt.Errorf("first row: %w", err)
		}
		c.committed++
		c.seq = 1
	}
	return nil
}

// close drops the connection: hard closes the socket without a Terminate
// message, as a crashed client would.
func (c *fuzzClient) close(hard bool) {
	if c.conn == nil {
		return
	}
	if hard {
		_ = c.conn.PgConn().Conn().Close()
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = c.conn.Close(cctx)
	cancel()
	c.conn, c.inTx, c.aborted, c.pending = nil, false, false, 0
}

// expectInTx checks the result of a statement in the current state: in
// an aborted BEGIN block every statement must fail with 25P02.
func (c *fuzzClient) expect(what string, err error) (ok bool, _ error) {
	if c.aborted {
		if sqlstate(err) != "25P02" {
			return false, fmt.Errorf("%s in an aborted transaction: %v, want SQLSTATE 25P02", what, err)
		}
		return false, nil
	}
	if sqlstate(err) == queryCanceled {
		return false, isolationf("%s was cancelled, and not by its own client", what)
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	return true, nil
}

// fail records that a statement failed: a BEGIN block is aborted, an
// implicit transaction is simply gone.
func (c *fuzzClient) fail() {
	if c.inTx {
		c.aborted = true
	}
}

func (c *fuzzClient) do(ctx context.Context, s fuzzStep) error {
	if err := c.ensure(ctx); err != nil {
		return err
	}
	switch s.op {
	case opBegin:
		if c.inTx {
			return nil
		}
		if _, err := c.conn.Exec(ctx, "BEGIN"); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		c.inTx = true
	case opInsert:
		_, err := c.conn.Exec(ctx, insertSQL, c.tenant, c.id, c.seq)
		c.seq++
		ok, err := c.expect("insert", err)
		if err != nil || !ok {
			return err
		}
		if c.inTx {
			c.pending++
		} else {
			c.committed++
		}
	case opRead:
		var setting, workMem string
		var own, foreign int64
		err := c.conn.QueryRow(ctx, fuzzReadSQL, c.id, c.tenant).Scan(&setting, &own, &foreign, &workMem)
		ok, err := c.expect("read", err)
		if err != nil || !ok {
			return err
		}
		if setting != strconv.FormatInt(c.tenant, 10) || own != int64(c.committed+c.pending) || foreign != 0 {
			return isolationf("read: setting %q, %d own rows (want %d), %d rows of other accounts", setting, own, c.committed+c.pending, foreign)
		}
		// Whether the client's own SET outlives its transaction depends on
		// the policy (tracked and replayed, or reset at check-in); another
		// client's value must never show.
		if workMem != c.defaultWorkMem && workMem != c.workMem() {
			return isolationf("read: work_mem %q, set by another client (own %q, default %q)", workMem, c.workMem(), c.defaultWorkMem)
		}
	case opOrders:
		rows, err := c.conn.Query(ctx, ordersSQL)
		if err == nil {
			cl := client{id: c.id, tenant: c.tenant, proto: c.proto}
			err = cl.wantOrders("orders", rows)
			if errors.Is(err, errIsolation) {
				return err
			}
		}
		if _, err := c.expect("orders", err); err != nil {
			return err
		}
	case opCommit, opRollback:
		if !c.inTx {
			return nil
		}
		sql := "COMMIT"
		if s.op == opRollback || c.aborted {
			sql = "ROLLBACK" // COMMIT of an aborted block rolls back too; keep the model simple
		}
		if _, err := c.conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		if sql == "COMMIT" {
			c.committed += c.pending
		}
		c.inTx, c.aborted, c.pending = false, false, 0
	case opDivZero:
		_, err := c.conn.Exec(ctx, "SELECT 1/0")
		if c.aborted {
			_, err = c.expect("1/0", err)
			return err
		}
		if sqlstate(err) != "22012" {
			return fmt.Errorf("SELECT 1/0: %v, want SQLSTATE 22012", err)
		}
		c.fail()
	case opUnique:
		_, err := c.conn.Exec(ctx, insertSQL, c.tenant, c.id, 0)
		if c.aborted {
			_, err = c.expect("duplicate insert", err)
			return err
		}
		if sqlstate(err) != "23505" {
			return fmt.Errorf("duplicate insert: %v, want SQLSTATE 23505", err)
		}
		c.fail()
	case opMultiError:
		q := fmt.Sprintf("INSERT INTO public.tx_probe (account_id, client, seq) VALUES (%d, %d, %d); SELECT 1/0", c.tenant, c.id, c.seq)
		c.seq++
		_, err := c.conn.PgConn().Exec(ctx, q).ReadAll()
		if c.aborted {
			_, err = c.expect("multi-statement query", err)
			return err
		}
		if sqlstate(err) != "22012" {
			return fmt.Errorf("INSERT; SELECT 1/0: %v, want SQLSTATE 22012", err)
		}
		c.fail()
	case opSet:
		_, err := c.conn.Exec(ctx, "SET work_mem = '"+c.workMem()+"'")
		if _, err := c.expect("SET work_mem", err); err != nil {
			return err
		}
	case opSleepCancel:
		return c.sleepCancel(ctx, time.Duration(s.param%8)*10*time.Millisecond)
	case opDisconnect:
		c.close(s.param%2 == 0)
	case opOutside:
		if c.inTx {
			return nil // CALL with COMMIT inside a BEGIN block is an error by design
		}
		var inside, outside *string
		err := c.conn.QueryRow(ctx, outsideSQL).Scan(&inside, &outside)
		if _, err := c.expect("call tx_probe_outside", err); err != nil {
			return err
		}
		if inside == nil || *inside != strconv.FormatInt(c.tenant, 10) {
			in := "<unset>"
			if inside != nil {
				in = *inside
			}
			return isolationf("inside CALL: tenant setting %q", in)
		}
		if c.e.transactionMode() && outside != nil && *outside != "" {
			return isolationf("after COMMIT the backend still holds tenant setting %q", *outside)
		}
	}
	return nil
}

// sleepCancel runs tx_sleep and sends the client's own CancelRequest after
// delay, while it waits for or runs on a backend; the request has been sent
// before it returns, so a late cancel can only find the client idle. The
// statement ends cancelled (57014) or, if the cancel found it still
// waiting for a backend, completes; nothing else.
func (c *fuzzClient) sleepCancel(ctx context.Context, delay time.Duration) error {
	sent := make(chan error, 1)
	pc := c.conn.PgConn()
	go func() {
		time.Sleep(delay)
		sent <- pc.CancelRequest(ctx)
	}()
	var got string
	err := c.conn.QueryRow(ctx, `SELECT public.tx_sleep(0.15)`).Scan(&got)
	if serr := <-sent; serr != nil {
		return fmt.Errorf("cancel request: %w", serr)
	}
	switch {
	case c.aborted:
		_, err = c.expect("tx_sleep", err)
		return err
	case sqlstate(err) == queryCanceled:
		c.fail()
	case err != nil:
		return fmt.Errorf("tx_sleep with a cancel: %w", err)
	case got != strconv.FormatInt(c.tenant, 10): // pg_sleep's void is '' as text
		return isolationf("tx_sleep ran as %q", got)
	}
	return nil
}
