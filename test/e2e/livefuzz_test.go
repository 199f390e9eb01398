package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	encbin "encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// A bounded live fuzz run against the in-process proxy with the real policy
// and real clusters: tenant 7 sends random and mutated message streams on raw
// sockets after a valid login while tenant 42 keeps running scoped queries.
// Nothing tenant 7 reads may contain tenant 42's marker, tenant 42's queries
// must keep succeeding, and the proxy must serve normally afterwards.
// PGTENANT_LIVEFUZZ=60s runs it longer (default 10s).

// liveFuzzSQL are the statements tenant 7's streams are built from: allowed
// ones, and attempts to reach tenant 42's rows or escape the tenant context.
var liveFuzzSQL = []string{
	"SELECT 1",
	"SELECT note FROM orders WHERE account_id = 7",
	"SELECT note FROM orders WHERE account_id = $1",
	"SELECT note FROM orders WHERE account_id = 42",
	"SELECT note FROM orders",
	"SELECT note FROM orders WHERE account_id = 7 OR true",
	"SELECT note FROM orders WHERE account_id IN (7, 42)",
	"SELECT string_agg(note, ',') FROM orders WHERE account_id = $1",
	"SELECT set_config('app.current_account_id', '42', false)",
	"SET app.current_account_id = '42'",
	"RESET ALL",
	"COPY orders TO STDOUT",
	"COPY (SELECT note FROM orders) TO STDOUT",
	"BEGIN",
	"COMMIT",
	"ROLLBACK",
	"SELECT note FROM orders WHERE account_id = 7; SELECT note FROM orders",
	"PREPARE p AS SELECT note FROM orders WHERE account_id = $1",
	"EXECUTE p(42)",
	"SELECT current_setting('app.current_account_id')",
	"SELECT pg_sleep(0.01)",
	"SELECT note FROM orders WHERE account_id = current_setting('app.current_account_id')::bigint",
	"INSERT INTO orders (account_id, note) VALUES (7, 'fuzz')",
	"UPDATE orders SET account_id = 42 WHERE account_id = 7",
	"WITH x AS (SELECT note FROM orders) SELECT * FROM x",
}

// liveFuzzValues are values bound to parameters.
var liveFuzzValues = []string{"7", "42", "042", " 42", "7 OR 1=1", "", "4.2e1", "\x00"}

// liveFuzzCopyRows are CopyData payloads: rows of tenant 7, of tenant 42,
// without a tenant, and in CSV.
var liveFuzzCopyRows = []string{"42\tx\n", "7\tfz7\n", "42\tfz7\n", "\\N\tfz7\n", "fz7,42\n", "7\tfz7\n42\tfz7\n"}

// liveFuzzStream builds one message stream for a session.
type liveFuzzStream struct {
	r    *mrand.Rand
	sqls []string // the statements to draw from
	buf  []byte
	lens []int // offsets of length fields
	msgs []int // offsets of message starts
}

func (s *liveFuzzStream) add(m pgproto3.FrontendMessage) {
	b, err := m.Encode(nil)
	if err != nil {
		return
	}
	s.msgs = append(s.msgs, len(s.buf))
	s.lens = append(s.lens, len(s.buf)+1)
	s.buf = append(s.buf, b...)
}

func (s *liveFuzzStream) sql() string { return s.sqls[s.r.IntN(len(s.sqls))] }

func (s *liveFuzzStream) bind(portal, stmt string) *pgproto3.Bind {
	b := &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
	for range s.r.IntN(3) {
		v := liveFuzzValues[s.r.IntN(len(liveFuzzValues))]
		if s.r.IntN(8) == 0 {
			b.Parameters = append(b.Parameters, nil)
			continue
		}
		b.Parameters = append(b.Parameters, []byte(v))
	}
	if s.r.IntN(4) == 0 {
		b.ParameterFormatCodes = []int16{int16(s.r.IntN(3))}
	}
	return b
}

// valid appends a plausible sequence: simple queries and extended batches.
func (s *liveFuzzStream) valid() {
	names := []string{"", "s1", "s2"}
	for range 1 + s.r.IntN(6) {
		name := names[s.r.IntN(len(names))]
		switch s.r.IntN(9) {
		case 0, 1:
			s.add(&pgproto3.Query{String: s.sql()})
		case 2:
			s.add(&pgproto3.Parse{Name: name, Query: s.sql()})
		case 3:
			s.add(s.bind("", name))
		case 4:
			s.add(&pgproto3.Execute{Portal: "", MaxRows: uint32(s.r.IntN(2))})
		case 5:
			s.add(&pgproto3.Describe{ObjectType: "SP"[s.r.IntN(2)], Name: name})
		case 6:
			s.add(&pgproto3.Close{ObjectType: "SP"[s.r.IntN(2)], Name: name})
		case 7:
			s.add(&pgproto3.Parse{Name: name, Query: s.sql()})
			s.add(s.bind("", name))
			s.add(&pgproto3.Describe{ObjectType: 'P'})
			s.add(&pgproto3.Execute{})
			s.add(&pgproto3.Sync{})
		case 8:
			switch s.r.IntN(5) {
			case 0:
				s.add(&pgproto3.Flush{})
			case 1:
				s.add(&pgproto3.CopyData{Data: []byte(liveFuzzCopyRows[s.r.IntN(len(liveFuzzCopyRows))])})
			case 2:
				s.add(&pgproto3.CopyDone{})
			case 3:
				s.add(&pgproto3.FunctionCall{Function: 1})
			default:
				s.add(&pgproto3.Sync{})
			}
		}
	}
	s.add(&pgproto3.Sync{})
}

// mutate applies a few random mutations.
func (s *liveFuzzStream) mutate() {
	for range s.r.IntN(4) {
		if len(s.buf) == 0 {
			return
		}
		switch s.r.IntN(7) {
		case 0: // flip a bit
			s.buf[s.r.IntN(len(s.buf))] ^= 1 << s.r.IntN(8)
		case 1: // a length that lies
			off := s.lens[s.r.IntN(len(s.lens))]
			if off+4 > len(s.buf) {
				continue
			}
			n := int32(encbin.BigEndian.Uint32(s.buf[off:]))
			lies := []int32{n + 1, n - 1, n + int32(s.r.IntN(64)), 0, 3, -1, 1 << 30, 0x7fffffff}
			encbin.BigEndian.PutUint32(s.buf[off:], uint32(lies[s.r.IntN(len(lies))]))
		case 2: // truncate
			s.buf = s.buf[:s.r.IntN(len(s.buf))]
		case 3: // insert random bytes
			at := s.r.IntN(len(s.buf) + 1)
			junk := make([]byte, 1+s.r.IntN(16))
			for i := range junk {
				junk[i] = byte(s.r.UintN(256))
			}
			s.buf = append(s.buf[:at], append(junk, s.buf[at:]...)...)
		case 4: // duplicate a message (Sync storms, repeated Binds)
			i := s.r.IntN(len(s.msgs))
			end := len(s.buf)
			if i+1 < len(s.msgs) {
				end = s.msgs[i+1]
			}
			if s.msgs[i] >= len(s.buf) || end > len(s.buf) {
				continue
			}
			dup := bytes.Repeat(s.buf[s.msgs[i]:end], 1+s.r.IntN(8))
			s.buf = append(s.buf[:end], append(dup, s.buf[end:]...)...)
		case 5: // change a message type
			off := s.msgs[s.r.IntN(len(s.msgs))]
			if off < len(s.buf) {
				s.buf[off] = "QPBEDCSHdcfFXpz\x00"[s.r.IntN(16)]
			}
		case 6: // swap two messages' order: drop one and append it
			i := s.r.IntN(len(s.msgs))
			end := len(s.buf)
			if i+1 < len(s.msgs) {
				end = s.msgs[i+1]
			}
			if s.msgs[i] >= len(s.buf) || end > len(s.buf) {
				continue
			}
			m := bytes.Clone(s.buf[s.msgs[i]:end])
			s.buf = append(append(s.buf[:s.msgs[i]], s.buf[end:]...), m...)
		}
	}
}

// newLiveFuzzStream returns a random stream: mutated valid sequences,
// random bytes, or a header whose length lies.
func newLiveFuzzStream(r *mrand.Rand, sqls []string) []byte {
	s := &liveFuzzStream{r: r, sqls: sqls}
	switch r.IntN(10) {
	case 0: // random bytes
		s.buf = make([]byte, r.IntN(256))
		for i := range s.buf {
			s.buf[i] = byte(r.UintN(256))
		}
	case 1: // a header with a huge or negative length, maybe followed by a query
		s.buf = []byte{"QPBEDS"[r.IntN(6)], 0, 0, 0, 0}
		encbin.BigEndian.PutUint32(s.buf[1:], []uint32{0x7fffffff, 0xffffffff, 1 << 26, 5}[r.IntN(4)])
		s.add(&pgproto3.Query{String: s.sql()})
	default:
		s.valid()
		s.mutate()
	}
	if r.IntN(2) == 0 {
		s.add(&pgproto3.Terminate{})
	}
	return s.buf
}

// liveFuzzExchange sends stream on conn and reads what comes back until the
// proxy closes the connection or stays silent for idle.
func liveFuzzExchange(conn net.Conn, stream []byte, idle time.Duration) ([]byte, error) {
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	writeErr := make(chan error, 1)
	go func() { _, err := conn.Write(stream); writeErr <- err }()
	var got bytes.Buffer
	buf := make([]byte, 32<<10)
	for got.Len() < 64<<20 {
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		n, err := conn.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || liveFuzzReadFailed(err) {
				break
			}
			return got.Bytes(), err
		}
	}
	conn.Close()
	<-writeErr
	return got.Bytes(), nil
}

// liveFuzzReadFailed reports a read error from the socket itself (a reset
// when the proxy closes with input unread).
func liveFuzzReadFailed(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "read"
}

func liveFuzzDuration(t *testing.T) time.Duration {
	v := os.Getenv("PGTENANT_LIVEFUZZ")
	if v == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("PGTENANT_LIVEFUZZ=%q: %v", v, err)
	}
	return d
}

// TestLiveFuzzNoCrossTenantLeak runs the live fuzz in both pool modes: in
// transaction mode a session that hangs holds a backend the other tenants
// wait for, so every pooled backend must be free again at the end.
func TestLiveFuzzNoCrossTenantLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("live fuzz run skipped in -short mode")
	}
	for _, mode := range []string{config.PoolSession, config.PoolTransaction} {
		t.Run(mode, func(t *testing.T) { testLiveFuzzNoCrossTenantLeak(t, mode) })
	}
}

func testLiveFuzzNoCrossTenantLeak(t *testing.T, poolMode string) {
	dur := liveFuzzDuration(t)
	env := proxytest.Start(t, proxytest.Options{Policy: true, Regions: []string{"eu-west"}, Configure: func(cfg *config.Config) {
		cfg.Pool.Mode = poolMode
		cfg.Pool.Size = liveFuzzWorkers + 2 // the workers' open transactions and both pgx connections'
	}})
	ctx := context.Background()

	// Tenant 42's marker row.
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	marker := "secret-42-" + suffix
	owner := connect(t, env.DSN(t, "42", "eu-west"))
	if _, err := owner.Exec(ctx, "INSERT INTO orders (account_id, note) VALUES (42, $1)", marker); err != nil {
		t.Fatalf("seed marker: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), env.DSN(t, "42", "eu-west"))
		if err == nil {
			_, _ = c.Exec(context.Background(), "DELETE FROM orders WHERE account_id = 42 AND note = $1", marker)
			_ = c.Close(context.Background())
		}
	})
	// Tenant 7 has rows of its own too, so allowed reads return data.
	seven := connect(t, env.DSN(t, "7", "eu-west"))
	if _, err := seven.Exec(ctx, "INSERT INTO orders (account_id, note) VALUES (7, 'seven-livefuzz')"); err != nil {
		t.Fatalf("seed tenant 7: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), env.DSN(t, "7", "eu-west"))
		if err == nil {
			_, _ = c.Exec(context.Background(), "DELETE FROM orders WHERE account_id = 7 AND note IN ('seven-livefuzz', 'fuzz')")
			_ = c.Close(context.Background())
		}
	})
	_ = seven.Close(ctx)

	// Positive control: the exchange used below does see tenant 42's marker
	// when tenant 42 itself reads it, so a leak to tenant 7 would show.
	ctl, err := loginRaw(env.Addr, proxytest.Token(t, "42", "eu-west", 0), false, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := (&pgproto3.Query{String: "SELECT note FROM orders WHERE account_id = 42"}).Encode(nil)
	got, err := liveFuzzExchange(ctl, append(q, 'X', 0, 0, 0, 4), 5*time.Second)
	if err != nil || !bytes.Contains(got, []byte(suffix)) {
		t.Fatalf("positive control: tenant 42 did not read its marker through a raw exchange (%v, %q)", err, got)
	}

	stop := time.Now().Add(dur)
	stats, wait := startLiveFuzz(t, env.Addr, proxytest.Token(t, "7", "eu-west", 0), liveFuzzSQL, stop, []byte(suffix))

	// Meanwhile tenant 42's scoped queries keep succeeding.
	var ok42 int
	for time.Now().Before(stop) {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var note string
		err := owner.QueryRow(qctx, "SELECT note FROM orders WHERE account_id = $1 AND note = $2", 42, marker).Scan(&note)
		cancel()
		if err != nil || note != marker {
			t.Errorf("tenant 42's scoped query failed during the fuzz run: %v (%q)", err, note)
			break
		}
		ok42++
		time.Sleep(time.Millisecond) // leave the CPU to the fuzzing workers
	}
	wait()
	stats.log(t, dur)
	t.Logf("%d tenant 42 queries succeeded meanwhile", ok42)

	// The proxy still serves both tenants, each in its own context.
	after := connect(t, env.DSN(t, "7", "eu-west"))
	var account string
	var n int
	if err := after.QueryRow(ctx, "SELECT current_setting('app.current_account_id'), (SELECT count(*) FROM orders WHERE account_id = 7 AND note = $1)", marker).Scan(&account, &n); err != nil {
		t.Fatalf("tenant 7 after the fuzz run: %v", err)
	}
	if account != "7" || n != 0 {
		t.Errorf("tenant 7 after the fuzz run: context %q, %d marker rows", account, n)
	}
	var note string
	if err := owner.QueryRow(ctx, "SELECT note FROM orders WHERE account_id = 42 AND note = $1", marker).Scan(&note); err != nil || note != marker {
		t.Errorf("tenant 42 after the fuzz run: %v (%q)", err, note)
	}
	// Every fuzz session ended: only the two pgx connections remain.
	if got := settle(func() int { return int(env.Server.ActiveClients()) }, 2); got > 2 {
		t.Errorf("%d client sessions still open after the fuzz run, want 2 (TestLiveFuzzReplay finds the stream from the seeds logged above)", got)
		logStuckSessions(ctx, t, env.Clusters["eu-west"])
	}
	checkNoBackendHeld(ctx, t, env, env.Clusters["eu-west"])
}

// checkNoBackendHeld checks that no session holds a pooled backend
// (pool.mode: transaction) once the clients are idle between transactions.
func checkNoBackendHeld(ctx context.Context, t *testing.T, env *proxytest.Env, c *cluster.Cluster) {
	t.Helper()
	held := func() int {
		n := 0
		for _, p := range env.Server.PoolStats() {
			n += p.Active
		}
		return n
	}
	if got := settle(held, 0); got > 0 {
		t.Errorf("%d pooled backends still held after the fuzz run, want 0", got)
		logStuckSessions(ctx, t, c)
	}
}

// TestLiveFuzzReplay replays the streams of TestLiveFuzzNoCrossTenantLeak's
// workers from the seeds it logged (PGTENANT_LIVEFUZZ_REPLAY=seed,seed,...,
// and PGTENANT_LIVEFUZZ_POOL=transaction for that subtest), one stream at a
// time, and names the first stream whose session does not
// end when the client leaves: how a session left open in a run is traced to
// the stream that caused it. Without the variable it is skipped.
func TestLiveFuzzReplay(t *testing.T) {
	seeds := os.Getenv("PGTENANT_LIVEFUZZ_REPLAY")
	if seeds == "" {
		t.Skip("set PGTENANT_LIVEFUZZ_REPLAY to the seeds a live fuzz run logged")
	}
	mode := os.Getenv("PGTENANT_LIVEFUZZ_POOL") // the subtest's pool mode; default session
	env := proxytest.Start(t, proxytest.Options{Policy: true, Regions: []string{"eu-west"}, Configure: func(cfg *config.Config) {
		if mode != "" {
			cfg.Pool.Mode = mode
		}
	}})
	token := proxytest.Token(t, "7", "eu-west", 0)
	const perSeed = 300 // more streams than a worker sends in a default run
	for _, field := range strings.Split(seeds, ",") {
		seed, err := strconv.ParseUint(strings.TrimSpace(field), 10, 64)
		if err != nil {
			t.Fatalf("PGTENANT_LIVEFUZZ_REPLAY: %v", err)
		}
		r := mrand.New(mrand.NewPCG(seed, 0x5eed))
		for i := range perSeed {
			stream := newLiveFuzzStream(r, liveFuzzSQL)
			conn, err := loginRaw(env.Addr, token, false, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = liveFuzzExchange(conn, stream, 300*time.Millisecond)
			if n := settle(func() int { return int(env.Server.ActiveClients()) }, 0); n > 0 {
				t.Fatalf("seed %d, stream %d: the session did not end after the client left; the stream: %q", seed, i, stream)
			}
		}
	}
}

// liveFuzzStats counts what a live fuzz run sent and read.
type liveFuzzStats struct {
	streams, sent, read, fatals, ownRows atomic.Int64
}

func (st *liveFuzzStats) log(t *testing.T, dur time.Duration) {
	t.Helper()
	t.Logf("live fuzz: %d streams (%.1f/s) from %d workers, %d bytes sent, %d bytes read, %d sessions ended with FATAL, %d read tenant 7's own rows",
		st.streams.Load(), float64(st.streams.Load())/dur.Seconds(), liveFuzzWorkers, st.sent.Load(), st.read.Load(), st.fatals.Load(), st.ownRows.Load())
	if st.streams.Load() == 0 {
		t.Fatal("no fuzz stream was sent")
	}
}

// liveFuzzWorkers is the number of sessions a live fuzz run keeps busy.
const liveFuzzWorkers = 3

// startLiveFuzz starts the workers of a live fuzz run: each logs in with
// token on a raw socket, sends a stream built from sqls and reads the reply
// until stop. A reply holding leak fails the test. wait returns when every
// worker has stopped.
func startLiveFuzz(t *testing.T, addr, token string, sqls []string, stop time.Time, leak []byte) (stats *liveFuzzStats, wait func()) {
	stats = &liveFuzzStats{}
	var wg sync.WaitGroup
	var leakOnce sync.Once
	for w := range liveFuzzWorkers {
		seed := uint64(time.Now().UnixNano()) + uint64(w)
		t.Logf("worker %d seed %d", w, seed)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(seed, 0x5eed))
			for time.Now().Before(stop) {
				conn, err := loginRaw(addr, token, false, 10*time.Second)
				if err != nil {
					t.Errorf("worker %d: login: %v", w, err)
					return
				}
				stream := newLiveFuzzStream(r, sqls)
				got, err := liveFuzzExchange(conn, stream, 300*time.Millisecond)
				stats.streams.Add(1)
				stats.sent.Add(int64(len(stream)))
				stats.read.Add(int64(len(got)))
				if bytes.Contains(got, []byte("seven-livefuzz")) {
					stats.ownRows.Add(1) // allowed reads of tenant 7's own rows came through
				}
				if bytes.Contains(got, []byte("FATAL")) {
					stats.fatals.Add(1)
				}
				if err != nil {
					t.Errorf("worker %d: read: %v (stream %q)", w, err, truncateBytes(stream, 200))
				}
				if bytes.Contains(got, leak) {
					leakOnce.Do(func() {
						t.Errorf("tenant 7 received tenant 42's marker after sending %q; it read %q", truncateBytes(stream, 400), truncateBytes(got, 400))
					})
				}
			}
		}()
	}
	return stats, wg.Wait
}

// logStuckSessions logs what a session left open is waiting for: the
// proxy's goroutines and the server backends of c, the region's cluster.
func logStuckSessions(ctx context.Context, t *testing.T, c *cluster.Cluster) {
	var stacks strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
	t.Logf("goroutines:\n%s", stacks.String())
	admin, err := pgx.Connect(ctx, c.SuperuserDSN(c.Database))
	if err != nil {
		t.Logf("server backends: %v", err)
		return
	}
	defer admin.Close(ctx)
	rows, err := admin.Query(ctx, `SELECT pid, state, coalesce(wait_event_type || '/' || wait_event, ''), left(query, 200)
		FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`)
	if err != nil {
		t.Logf("server backends: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var state, wait, query string
		if err := rows.Scan(&pid, &state, &wait, &query); err != nil {
			t.Logf("server backends: %v", err)
			return
		}
		t.Logf("server backend %d: %s, waiting for %q, last query %q", pid, state, wait, query)
	}
}

func truncateBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
