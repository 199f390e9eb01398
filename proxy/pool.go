package proxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/config"
)

// Transaction pooling (pool.mode: transaction). Client sessions share a
// bounded pool of backend connections per (region, database, read-only): a
// session checks a backend out at the start of a transaction and the backend
// loop checks it back in when the server's ReadyForQuery says 'I' with
// nothing in flight (txmode.go). A pooled backend carries pgtenant's pins
// (startup parameters) and nothing of any tenant: the tenant setting, the
// subject and the client's startup settings are set transaction-locally at
// the start of every transaction by one of the statements prepared when the
// backend was dialed (ctxFixedName(k) for k settings, or ctxStatement).

// ctxStatement is the statement every pooled backend prepares once at dial:
// it sets each (name, value) pair transaction-locally. Its name is in the
// reserved namespace, so no client can Parse, Close or Bind it.
const (
	ctxStatement = "pgtenant_ctx"
	ctxQuery     = "SELECT pg_catalog.set_config(s.n, s.v, true) FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS s(n, v)"
)

// ctxFixedMax is the largest number of (name, value) pairs the context
// statements of fixed arity take, prepared at dial as ctxFixedName(k): a
// transaction's context then costs the server a bare Result node of k
// set_config calls on text parameters, with no array to parse and no
// function scan to materialize. More pairs (a client with many startup or
// session settings) go through ctxStatement's arrays.
const ctxFixedMax = 6

// ctxFixedName is the name of the context statement for k pairs.
func ctxFixedName(k int) string { return ctxStatement + strconv.Itoa(k) }

// ctxPrepareSQL prepares the context statements of fixed arity, in one
// round trip at dial.
var ctxPrepareSQL = func() string {
	var b strings.Builder
	for k := 1; k <= ctxFixedMax; k++ {
		fmt.Fprintf(&b, "PREPARE %s(%s) AS SELECT ", ctxFixedName(k), strings.Repeat("text, ", 2*k-1)+"text")
		for i := range k {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "pg_catalog.set_config($%d, $%d, true)", 2*i+1, 2*i+2)
		}
		b.WriteString(";\n")
	}
	return b.String()
}()

// idleCheckAfter is how long a backend connection stays idle before a
// checkout checks that the server has not closed it (as PgBouncer's
// server_check_delay; a busy pool pays nothing).
const idleCheckAfter = time.Second

// maxPreparedPerBackend bounds the client statements one pooled backend
// keeps prepared; the least recently used is closed beyond it (as
// PgBouncer's max_prepared_statements).
const maxPreparedPerBackend = 256

// poolKey identifies a pool. Sessions of read-only principals need backends
// pinned to default_transaction_read_only = on; sessions differ in nothing
// else at the backend.
type poolKey struct {
	region   string
	database string
	readOnly bool
}

// pooledConn is one backend connection of a pool: the swappable backend side
// of the sessions it serves in turn.
type pooledConn struct {
	side backendSide
	pool *backendPool
	id   uint64
	// created and lastUsed are for idle_timeout and SHOW SERVERS (pool.mu).
	created, lastUsed time.Time
	// holder is the session holding the connection, nil when idle (pool.mu).
	holder *session
	// retired: RECONNECT asked for it to close when checked in (pool.mu).
	retired bool
	// prepared are the server-side names of client statements this backend
	// holds or has been sent, most recently used first (pmu: the holder's
	// client loop adds, its backend loop drops a name the server refused).
	pmu      sync.Mutex
	prepared *list.List
	names    map[string]*list.Element
	// dirty: a statement changed session state (a SET outside a
	// transaction); the backend is reset before another client gets it.
	// lost: its state is unknown (a failed reset, session state the
	// policy should have refused); it is closed instead of reused.
	dirty, lost bool
	// cancels counts cancel requests forwarded to this backend and not yet
	// delivered: it is not handed to another client before they are.
	cancels sync.WaitGroup
}

func newPooledConn(p *backendPool, bc *backendConn, id uint64) *pooledConn {
	now := time.Now()
	pc := &pooledConn{pool: p, id: id, created: now, lastUsed: now, prepared: list.New(), names: map[string]*list.Element{}}
	pc.side = newBackendSide(bc)
	return pc
}

// hasPrepared reports whether the backend holds (or was sent) srv, marking
// it most recently used.
func (pc *pooledConn) hasPrepared(srv string) bool {
	pc.pmu.Lock()
	defer pc.pmu.Unlock()
	e, ok := pc.names[srv]
	if ok {
		pc.prepared.MoveToFront(e)
	}
	return ok
}

// addPrepared records srv as prepared and returns the least recently used
// name to close when the backend holds too many, or "".
func (pc *pooledConn) addPrepared(srv string) (evict string) {
	pc.pmu.Lock()
	defer pc.pmu.Unlock()
	pc.names[srv] = pc.prepared.PushFront(srv)
	if pc.prepared.Len() <= maxPreparedPerBackend {
		return ""
	}
	last := pc.prepared.Back()
	pc.prepared.Remove(last)
	evict = last.Value.(string)
	delete(pc.names, evict)
	return evict
}

// dropPrepared forgets srv (the server refused to prepare it).
func (pc *pooledConn) dropPrepared(srv string) {
	pc.pmu.Lock()
	defer pc.pmu.Unlock()
	if e, ok := pc.names[srv]; ok {
		pc.prepared.Remove(e)
		delete(pc.names, srv)
	}
}

// errPoolTimeout is the refusal of a client that waited pool.max_wait for a
// backend.
func errPoolTimeout(key poolKey, cfg config.Pool) *clientError {
	ce := newClientError(pgerrcode.TooManyConnections, "pool_timeout",
		"no backend connection of region %q became free within pool.max_wait (%s)", key.region, cfg.MaxWait)
	ce.Hint = fmt.Sprintf("all %d backend connections (pool.size) are busy: raise pool.size or pool.max_wait, or shorten transactions", cfg.Size)
	return ce
}

// backendPool is the pool of one (region, database, read-only).
type backendPool struct {
	key  poolKey
	cfg  config.Pool
	dial func(ctx context.Context) (*backendConn, error)
	log  *slog.Logger
	// connectTimeout bounds one dial.
	connectTimeout time.Duration

	mu      sync.Mutex
	idle    []*pooledConn // most recently used last
	all     map[*pooledConn]struct{}
	opening int       // dials in progress
	waiters []*waiter // longest waiting first
	nextID  uint64
	clients int       // sessions using the pool, for SHOW POOLS
	params  paramList // ParameterStatus of the first connection
	// baseline is params by lower-case name, built with params and only
	// read after (the sessions share it).
	baseline map[string]string
	closed   bool
	stop     chan struct{}
}

// paramList is a backend's ParameterStatus values, in the order reported.
type paramList [][2]string

// waiter is a client waiting for a backend connection.
type waiter struct {
	ch    chan *pooledConn // buffered: a handed-over connection never blocks checkin
	since time.Time
	timer *time.Timer // pool.max_wait; made at the first wait, then reset
}

func newBackendPool(key poolKey, cfg config.Pool, connectTimeout time.Duration, dial func(context.Context) (*backendConn, error), log *slog.Logger) *backendPool {
	p := &backendPool{key: key, cfg: cfg, dial: dial, connectTimeout: connectTimeout,
		log: log.With("region", key.region, "database", key.database, "read_only", key.readOnly),
		all: map[*pooledConn]struct{}{}, stop: make(chan struct{})}
	go p.maintain()
	return p
}

// connected reports whether a backend connection was ever opened (and so
// the ParameterStatus values for clients are known).
func (p *backendPool) connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.params != nil
}

// open counts the connections open or being opened (mu).
func (p *backendPool) open() int { return len(p.all) + p.opening }

// checkout returns an idle connection, opens a new one below pool.size, or
// waits up to pool.max_wait for one to be checked in; ctx ends the wait.
func (p *backendPool) checkout(ctx context.Context, holder *session) (*pooledConn, error) {
	if pc := p.checkoutIdle(holder); pc != nil {
		return pc, nil
	}
	return p.acquire(ctx, holder, &waiter{ch: make(chan *pooledConn, 1)}, nil)
}

// checkoutIdle returns an idle connection, or nil when none is (the fast
// path of a checkout: one lock, no allocation).
func (p *backendPool) checkoutIdle(holder *session) *pooledConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.popIdleLocked(holder)
}

// popIdleLocked takes the most recently used idle connection for holder,
// or returns nil (mu held).
func (p *backendPool) popIdleLocked(holder *session) *pooledConn {
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if time.Since(pc.lastUsed) >= idleCheckAfter && !idleConnAlive(pc.side.backend.conn) {
			// the server ended it while idle: never hand a client a dead backend
			p.log.Info("pool: idle backend connection was closed by the server; dropping it", "pid", pc.side.backend.pid)
			p.closeLocked(pc)
			continue
		}
		pc.holder = holder
		return pc
	}
	return nil
}

// errWaitCancelled ends a wait for a backend that a cancel request stopped.
var errWaitCancelled = errors.New("the wait for a backend connection was cancelled")

// acquire is checkout with the caller's waiter, whose channel and timer a
// session reuses from one wait to the next; a value on cancel ends the
// wait with errWaitCancelled.
func (p *backendPool) acquire(ctx context.Context, holder *session, w *waiter, cancel <-chan struct{}) (*pooledConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, shutdownError()
	}
	if pc := p.popIdleLocked(holder); pc != nil {
		p.mu.Unlock()
		return pc, nil
	}
	cfg := p.cfg // a reload may replace it (setConfig)
	if p.open() < cfg.Size {
		p.opening++
		p.mu.Unlock()
		pc, err := p.connect(ctx)
		p.mu.Lock()
		p.opening--
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.all[pc] = struct{}{}
		pc.holder = holder
		p.mu.Unlock()
		return pc, nil
	}
	w.since = time.Now()
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	if w.timer == nil {
		w.timer = time.NewTimer(cfg.MaxWait)
	} else {
		w.timer.Reset(cfg.MaxWait)
	}
	defer w.timer.Stop()
	var err error
	select {
	case pc := <-w.ch:
		p.setHolder(pc, holder)
		return pc, nil
	case <-w.timer.C:
		err = errPoolTimeout(p.key, cfg)
	case <-cancel:
		err = errWaitCancelled
	case <-ctx.Done():
		err = fmt.Errorf("waiting for a backend connection: %w", ctx.Err())
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
	}
	p.mu.Unlock()
	select {
	case pc := <-w.ch: // handed over just as the wait ended: give it back
		p.checkin(pc)
	default:
	}
	return nil, err
}

// setHolder records the session holding pc.
func (p *backendPool) setHolder(pc *pooledConn, s *session) {
	p.mu.Lock()
	pc.holder = s
	p.mu.Unlock()
}

// connect dials a new pooled connection.
func (p *backendPool) connect(ctx context.Context) (*pooledConn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.connectTimeout+time.Second)
	defer cancel()
	bc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	if p.params == nil {
		p.params = bc.paramList()
		p.baseline = make(map[string]string, len(p.params))
		for _, kv := range p.params {
			p.baseline[strings.ToLower(kv[0])] = kv[1]
		}
	}
	p.mu.Unlock()
	bc.params = nil
	return newPooledConn(p, bc, id), nil
}

// checkin gives a connection back: to the longest waiting client, or to the
// idle list. The caller has reset it (txmode.go) and no cancel is in flight.
func (p *backendPool) checkin(pc *pooledConn) {
	p.mu.Lock()
	if pc.retired && !p.closed {
		p.mu.Unlock()
		p.discard(pc) // a waiting client gets a new connection in its place
		return
	}
	defer p.mu.Unlock()
	pc.holder = nil
	pc.lastUsed = time.Now()
	if p.closed {
		p.closeLocked(pc)
		return
	}
	if p.open() > p.cfg.Size {
		// pool.size was lowered by a reload: shrink as connections come back
		p.closeLocked(pc)
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		w.ch <- pc
		return
	}
	p.idle = append(p.idle, pc)
}

// setConfig applies a reloaded pool configuration. A larger pool.size
// opens connections for the clients waiting now; a smaller one closes idle
// connections beyond it now and busy ones as they are checked in;
// pool.min_idle and pool.idle_timeout apply from the next maintenance
// tick, pool.max_wait from the next wait.
func (p *backendPool) setConfig(cfg config.Pool) {
	p.mu.Lock()
	p.cfg = cfg
	for len(p.idle) > 0 && p.open() > cfg.Size {
		pc := p.idle[0] // the least recently used
		p.idle = p.idle[1:]
		p.closeLocked(pc)
	}
	dials := 0
	for n := len(p.waiters); n > 0 && p.open() < cfg.Size && !p.closed; n-- {
		p.opening++
		dials++
	}
	p.mu.Unlock()
	for range dials {
		go p.refill()
	}
}

// discard closes a checked-out connection whose state is unknown or broken;
// a waiting client gets a new connection in its place.
func (p *backendPool) discard(pc *pooledConn) {
	p.mu.Lock()
	p.closeLocked(pc)
	refill := len(p.waiters) > 0 && !p.closed && p.open() < p.cfg.Size
	if refill {
		p.opening++
	}
	p.mu.Unlock()
	if refill {
		go p.refill()
	}
}

// refill opens a connection for a waiting client (a slot was freed).
func (p *backendPool) refill() {
	pc, err := p.connect(context.Background())
	p.mu.Lock()
	p.opening--
	if err != nil {
		p.mu.Unlock()
		p.log.Warn("pool: backend connection not opened", "error", err)
		return
	}
	p.all[pc] = struct{}{}
	p.mu.Unlock()
	p.checkin(pc)
}

func (p *backendPool) closeLocked(pc *pooledConn) {
	if _, ok := p.all[pc]; !ok {
		return
	}
	delete(p.all, pc)
	pc.holder = nil
	terminate(pc.side.backend)
}

// terminate ends a backend session cleanly (Terminate, then close).
func terminate(bc *backendConn) {
	_ = bc.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = bc.conn.Write([]byte{'X', 0, 0, 0, 4})
	_ = bc.conn.Close()
}

// maintain closes connections idle longer than pool.idle_timeout beyond
// pool.min_idle and opens connections up to pool.min_idle.
func (p *backendPool) maintain() {
	period := func(cfg config.Pool) time.Duration {
		return min(max(cfg.IdleTimeout/4, 10*time.Millisecond), 5*time.Second)
	}
	p.mu.Lock()
	every := period(p.cfg)
	p.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		p.mu.Lock()
		if e := period(p.cfg); e != every { // pool.idle_timeout reloaded
			every = e
			t.Reset(every)
		}
		now := time.Now()
		// idle is ordered by last use: the oldest are first
		for len(p.idle) > p.cfg.MinIdle && now.Sub(p.idle[0].lastUsed) >= p.cfg.IdleTimeout {
			pc := p.idle[0]
			p.idle = p.idle[1:]
			p.closeLocked(pc)
		}
		open := len(p.idle) < p.cfg.MinIdle && p.open() < p.cfg.Size && !p.closed
		if open {
			p.opening++
		}
		p.mu.Unlock()
		if open {
			p.refill()
		}
	}
}

// recycle closes the idle connections now and the checked-out ones when
// they are checked in (RECONNECT): new transactions get new connections.
func (p *backendPool) recycle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pc := range p.all {
		pc.retired = true
	}
	for _, pc := range p.idle {
		p.closeLocked(pc)
	}
	p.idle = nil
}

// close ends the pool: idle connections now, checked-out ones at checkin.
func (p *backendPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.stop)
	for _, pc := range p.idle {
		p.closeLocked(pc)
	}
	p.idle = nil
}

// poolStats is a pool's figures for SHOW POOLS.
type poolStats struct {
	key                            poolKey
	clients, waiting, active, idle int
	maxWait                        time.Duration
	servers                        []serverRow
}

// serverRow is one pooled connection for SHOW SERVERS.
type serverRow struct {
	id                uint64
	pid               uint32
	address, local    string
	created, lastUsed time.Time
	holder            string
}

func (p *backendPool) stats() poolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := poolStats{key: p.key, clients: p.clients, waiting: len(p.waiters), idle: len(p.idle)}
	st.active = len(p.all) - len(p.idle)
	if len(p.waiters) > 0 {
		st.maxWait = time.Since(p.waiters[0].since)
	}
	for pc := range p.all {
		row := serverRow{id: pc.id, pid: pc.side.backend.pid, address: pc.side.backend.address,
			local: pc.side.backend.conn.LocalAddr().String(), created: pc.created, lastUsed: pc.lastUsed}
		if pc.holder != nil {
			row.holder = pc.holder.id
		}
		st.servers = append(st.servers, row)
	}
	return st
}

// pool returns the pool of key, creating it.
func (s *Server) pool(key poolKey, reg *region, rt *runtimeConfig) *backendPool {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if p := s.pools[key]; p != nil {
		return p
	}
	dial := func(ctx context.Context) (*backendConn, error) {
		// the region's settings in force now: a reload (new credentials,
		// host) reaches the connections a pool opens from then on
		cur := s.runtime()
		r := cur.regions[key.region]
		if r == nil {
			return nil, newClientError(pgerrcode.InvalidAuthorizationSpecification, "unknown_region",
				"region %q is no longer configured", key.region)
		}
		bc, err := r.dialPooled(ctx, key.database, key.readOnly, cur.settings)
		s.opts.Metrics.BackendDialed(r.name, err)
		return bc, err
	}
	p := newBackendPool(key, rt.pool, reg.base.ConnectTimeout, dial, s.log)
	s.pools[key] = p
	return p
}

// configurePools applies a reloaded pool configuration to the pools there
// are and, in pool.mode: transaction with pool.min_idle, opens the pool of
// each region that names its database, so that its first clients find
// backends ready (the pools of other databases open with their first
// client).
func (s *Server) configurePools(rt *runtimeConfig) {
	s.poolMu.Lock()
	for _, p := range s.pools {
		p.setConfig(rt.pool)
	}
	s.poolMu.Unlock()
	if rt.pool.Mode != config.PoolTransaction || rt.pool.MinIdle == 0 {
		return
	}
	for _, reg := range rt.regions {
		if reg.database != "" {
			s.pool(poolKey{region: reg.name, database: reg.database}, reg, rt)
		}
	}
}

// closePools ends every pool (Shutdown).
func (s *Server) closePools() {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	for _, p := range s.pools {
		p.close()
	}
}

// PoolStats is one transaction-mode pool's state (pool.mode: transaction),
// for metrics: the figures SHOW POOLS shows.
type PoolStats struct {
	Region, Database string
	ReadOnly         bool
	// Clients are the sessions using the pool; Waiting those waiting for a
	// backend now, the longest for MaxWait.
	Clients, Waiting int
	MaxWait          time.Duration
	// Active backends are held by a client, Idle ones are not.
	Active, Idle int
}

// PoolStats returns the state of every transaction-mode pool.
func (s *Server) PoolStats() []PoolStats {
	var out []PoolStats
	for _, st := range (consoleSource{s}).poolStats() {
		out = append(out, PoolStats{Region: st.key.region, Database: st.key.database, ReadOnly: st.key.readOnly,
			Clients: st.clients, Waiting: st.waiting, MaxWait: st.maxWait, Active: st.active, Idle: st.idle})
	}
	return out
}
