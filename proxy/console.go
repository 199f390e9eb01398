package proxy

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/budget"
	"github.com/pgtenant/pgtenant/console"
	"github.com/pgtenant/pgtenant/tenancy"
)

// errConsole marks a startup for the admin console database.
var errConsole = errors.New("admin console")

// tenantCounters are one tenant's figures since the proxy started.
type tenantCounters struct {
	statements, denials atomic.Int64
}

// counters returns account's counters, creating them.
func (s *Server) counters(account string) *tenantCounters {
	if c, ok := s.tenantStats.Load(account); ok {
		return c.(*tenantCounters)
	}
	c, _ := s.tenantStats.LoadOrStore(account, &tenantCounters{})
	return c.(*tenantCounters)
}

// decided reports a decision to the metrics and the tenant's counters.
func (s *session) decided(d tenancy.Decision) {
	s.srv.opts.Metrics.StatementDecided(verdict(d), d.Reason)
	if s.tc == nil {
		return
	}
	if d.Allow {
		s.tc.statements.Add(1)
	} else {
		s.tc.denials.Add(1)
	}
}

// serveConsole answers a console client whose token has an admin role.
func (s *Server) serveConsole(ss *session) {
	w := ss.cw
	_ = ss.client.SetDeadline(time.Time{})
	var key [4]byte
	_ = encode(w, &pgproto3.AuthenticationOk{})
	for _, ps := range [][2]string{{"server_version", "15.0 (pgtenant console)"}, {"client_encoding", "UTF8"},
		{"server_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"standard_conforming_strings", "on"}, {"integer_datetimes", "on"}} {
		_ = encode(w, &pgproto3.ParameterStatus{Name: ps[0], Value: ps[1]})
	}
	_ = encode(w, &pgproto3.BackendKeyData{ProcessID: 0, SecretKey: key[:]})
	_ = encode(w, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := w.Flush(); err != nil {
		return
	}
	ss.logger().Info("admin console session", "subject", ss.principal.Subject, "roles", ss.principal.Role())
	if err := console.Serve(ss.client, consoleSource{s}, 30*time.Minute); err != nil && !isClosedErr(err) {
		ss.logger().Debug("admin console session ended", "error", err)
	}
}

// consoleRefusal is why a console login is refused, or nil.
func (s *Server) consoleRefusal(ss *session) *clientError {
	roles := s.runtime().adminRoles
	if len(roles) == 0 {
		return newClientError(pgerrcode.InvalidCatalogName, "console_off",
			"database %q is pgtenant's admin console, which is off: list the roles allowed in admin.roles", console.Database)
	}
	for _, r := range roles {
		if ss.principal.HasRole(r) {
			return nil
		}
	}
	return newClientError(pgerrcode.InvalidAuthorizationSpecification, "console_role",
		"the admin console needs a token whose role is in admin.roles")
}

// consoleSource implements console.Source over the running proxy.
type consoleSource struct{ s *Server }

var _ console.Source = consoleSource{}

// sessions lists the running sessions (not those already ending), oldest first.
func (c consoleSource) sessions() []*session {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	out := make([]*session, 0, len(c.s.sessions))
	for ss := range c.s.sessions {
		if !ss.ending.Load() {
			out = append(out, ss)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out
}

func state(ss *session) string {
	if ss.idle.Load() {
		return "idle"
	}
	return "active"
}

func hostPort(addr string) (*string, *string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return console.S(addr), nil
	}
	return console.S(h), console.S(p)
}

// Clients lists client connections with PgBouncer's SHOW CLIENTS columns
// where they apply, plus the session id (for KILL), account and region.
func (c consoleSource) Clients() console.Table {
	t := console.Table{Columns: []string{"type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
		"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
		"application_name", "prepared_statements", "id", "account_id", "region"}}
	for _, ss := range c.sessions() {
		addr, port := hostPort(ss.client.RemoteAddr().String())
		laddr, lport := hostPort(ss.client.LocalAddr().String())
		t.Rows = append(t.Rows, []*string{console.S("C"), console.S(ss.user), console.S(ss.database), console.S(state(ss)),
			addr, port, laddr, lport, console.T(ss.started), console.T(time.Unix(0, ss.idleSince.Load())), console.I(0), console.I(0),
			console.I(0), console.S(ss.id), console.S(ss.id), console.I(int64(ss.remotePID())), console.S(tlsWord(ss.tls)),
			console.S(ss.appName), console.I(0), console.S(ss.id), console.S(ss.principal.Account), console.S(ss.region.name)})
	}
	return t
}

func tlsWord(on bool) string {
	if on {
		return "TLS"
	}
	return ""
}

// remotePID is the pid of the backend serving the session now (0 for a
// pooled session between transactions).
func (s *session) remotePID() uint32 {
	if s.tx == nil {
		return s.backend.pid
	}
	s.tx.mu.Lock()
	defer s.tx.mu.Unlock()
	if s.tx.pc == nil {
		return 0
	}
	return s.tx.pc.side.backend.pid
}

// pooled reports whether the proxy pools backends per transaction.
func (c consoleSource) pooled() bool { return c.s.runtime().pool.Transaction() }

// poolStats returns every transaction-mode pool's figures, in key order.
func (c consoleSource) poolStats() []poolStats {
	c.s.poolMu.Lock()
	pools := make([]*backendPool, 0, len(c.s.pools))
	for _, p := range c.s.pools {
		pools = append(pools, p)
	}
	c.s.poolMu.Unlock()
	out := make([]poolStats, 0, len(pools))
	for _, p := range pools {
		out = append(out, p.stats())
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].key) < fmt.Sprint(out[j].key) })
	return out
}

var serverColumns = []string{"type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
	"connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link", "remote_pid", "tls",
	"application_name", "prepared_statements", "region"}

// pooledServers lists the pooled backend connections: active ones are held
// by the client in link.
func (c consoleSource) pooledServers() console.Table {
	t := console.Table{Columns: serverColumns}
	for _, st := range c.poolStats() {
		user := ""
		if r := c.s.runtime().regions[st.key.region]; r != nil {
			user = r.base.User
		}
		sort.Slice(st.servers, func(i, j int) bool { return st.servers[i].id < st.servers[j].id })
		for _, sv := range st.servers {
			state, link := "idle", (*string)(nil)
			if sv.holder != "" {
				state, link = "active", console.S(sv.holder)
			}
			addr, port := hostPort(sv.address)
			laddr, lport := hostPort(sv.local)
			t.Rows = append(t.Rows, []*string{console.S("S"), console.S(user), console.S(st.key.database), console.S(state),
				addr, port, laddr, lport, console.T(sv.created), console.T(sv.lastUsed), console.I(0), console.I(0), console.I(0),
				console.S(fmt.Sprintf("%s/%s/%d", st.key.region, st.key.database, sv.id)), link, console.I(int64(sv.pid)),
				console.S(""), console.S(""), console.I(0), console.S(st.key.region)})
		}
	}
	return t
}

// pooledPools has one row per transaction-mode pool.
func (c consoleSource) pooledPools() console.Table {
	t := console.Table{Columns: poolColumns}
	for _, st := range c.poolStats() {
		user := ""
		if r := c.s.runtime().regions[st.key.region]; r != nil {
			user = r.base.User
		}
		db := st.key.database
		if st.key.readOnly {
			db += " (read-only)"
		}
		t.Rows = append(t.Rows, []*string{console.S(db), console.S(user), console.I(int64(st.clients - st.waiting)),
			console.I(int64(st.waiting)), console.I(int64(st.active)), console.I(int64(st.idle)), console.I(0), console.I(0),
			console.I(0), console.I(int64(st.maxWait / time.Second)), console.I(int64((st.maxWait % time.Second) / time.Microsecond)),
			console.S("transaction"), console.S(st.key.region)})
	}
	return t
}

var poolColumns = []string{"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used",
	"sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode", "region"}

// Servers lists backend connections: one per client in session mode, the
// pools' connections in transaction mode.
func (c consoleSource) Servers() console.Table {
	if c.pooled() {
		return c.pooledServers()
	}
	t := console.Table{Columns: serverColumns}
	for _, ss := range c.sessions() {
		addr, port := hostPort(ss.backend.address)
		laddr, lport := hostPort(ss.backend.conn.LocalAddr().String())
		t.Rows = append(t.Rows, []*string{console.S("S"), console.S(ss.region.base.User), console.S(ss.database),
			console.S(state(ss)), addr, port, laddr, lport, console.T(ss.started), console.T(time.Unix(0, ss.idleSince.Load())),
			console.I(0), console.I(0), console.I(0), console.S(ss.id + "-s"), console.S(ss.id), console.I(int64(ss.backend.pid)),
			console.S(""), console.S("pgtenant"), console.I(0), console.S(ss.region.name)})
	}
	return t
}

// Pools has one row per (region database, service role) in session mode,
// one per pool in transaction mode.
func (c consoleSource) Pools() console.Table {
	if c.pooled() {
		return c.pooledPools()
	}
	type key struct{ region, db, user string }
	type counts struct{ active, idle int64 }
	agg := map[key]*counts{}
	for _, ss := range c.sessions() {
		k := key{ss.region.name, ss.database, ss.region.base.User}
		if agg[k] == nil {
			agg[k] = &counts{}
		}
		if ss.idle.Load() {
			agg[k].idle++
		} else {
			agg[k].active++
		}
	}
	keys := make([]key, 0, len(agg))
	for k := range agg {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	t := console.Table{Columns: poolColumns}
	for _, k := range keys {
		n := agg[k]
		// In session mode a client holds its backend: both are active.
		t.Rows = append(t.Rows, []*string{console.S(k.db), console.S(k.user), console.I(n.active + n.idle), console.I(0),
			console.I(n.active + n.idle), console.I(0), console.I(0), console.I(0), console.I(0), console.I(0), console.I(0),
			console.S("session"), console.S(k.region)})
	}
	return t
}

// Stats totals statements and denials over every tenant.
func (c consoleSource) Stats() console.Table {
	var stmts, denials int64
	c.s.tenantStats.Range(func(_, v any) bool {
		tc := v.(*tenantCounters)
		stmts += tc.statements.Load()
		denials += tc.denials.Load()
		return true
	})
	return console.Table{Columns: []string{"database", "total_query_count", "total_denied_count", "clients"},
		Rows: [][]*string{{console.S("*"), console.I(stmts), console.I(denials), console.I(c.s.clients.Load())}}}
}

// Tenants holds the per-tenant figures that cannot be Prometheus labels.
func (c consoleSource) Tenants() console.Table {
	t := console.Table{Columns: []string{"account_id", "connections", "statements", "denials", "budget_running",
		"budget_admitted", "budget_refused_rate", "budget_refused_concurrency", "budget_timed_out",
		"statements_per_second", "concurrent_statements", "statement_timeout"}}
	accounts := map[string]bool{}
	c.s.tenantStats.Range(func(k, _ any) bool { accounts[k.(string)] = true; return true })
	c.s.mu.Lock()
	conns := map[string]int{}
	for acc, n := range c.s.perTenant {
		conns[acc] = n
		accounts[acc] = true
	}
	c.s.mu.Unlock()
	budgets := map[string]budget.TenantStats{}
	if bs, ok := c.s.opts.Budgets.(interface{ Stats() []budget.TenantStats }); ok {
		for _, st := range bs.Stats() {
			budgets[st.Account] = st
			accounts[st.Account] = true
		}
	}
	list := make([]string, 0, len(accounts))
	for a := range accounts {
		list = append(list, a)
	}
	sort.Strings(list)
	for _, acc := range list {
		tc := c.s.counters(acc)
		b := budgets[acc]
		var lim budget.Limits
		if c.s.opts.Budgets != nil {
			lim = c.s.opts.Budgets.For(acc)
		}
		t.Rows = append(t.Rows, []*string{console.S(acc), console.I(int64(conns[acc])), console.I(tc.statements.Load()),
			console.I(tc.denials.Load()), console.I(b.Running), console.I(b.Admitted), console.I(b.RefusedRate),
			console.I(b.RefusedConcurrency), console.I(b.TimedOut), console.S(strconv.FormatFloat(lim.StatementsPerSecond, 'g', -1, 64)),
			console.I(int64(lim.ConcurrentStatements)), console.S(lim.StatementTimeout.String())})
	}
	return t
}

// Config shows the settings in force that carry no secret.
func (c consoleSource) Config() console.Table {
	cfg := c.s.opts.Config
	rows := [][2]string{
		{"listen", cfg.Listen}, {"admin_listen", cfg.AdminListen}, {"pool.mode", cfg.Pool.Mode},
		{"pool.size", strconv.Itoa(cfg.Pool.Size)}, {"pool.min_idle", strconv.Itoa(cfg.Pool.MinIdle)},
		{"pool.idle_timeout", cfg.Pool.IdleTimeout.String()}, {"pool.max_wait", cfg.Pool.MaxWait.String()},
		{"audit.mode", cfg.Audit.Mode}, {"audit.disabled", strconv.FormatBool(cfg.Audit.Disabled)},
		{"policy.tenant_column", cfg.Policy.TenantColumn}, {"policy.tenant_setting", cfg.Policy.TenantSetting},
		{"limits.max_connections", strconv.Itoa(cfg.Limits.MaxConnections)},
		{"limits.max_connections_per_tenant", strconv.Itoa(cfg.Limits.MaxConnectionsPerTenant)},
		{"limits.tenant.statements_per_second", strconv.FormatFloat(cfg.Limits.Tenant.StatementsPerSecond, 'g', -1, 64)},
		{"limits.tenant.concurrent_statements", strconv.Itoa(cfg.Limits.Tenant.ConcurrentStatements)},
		{"limits.tenant.statement_timeout", cfg.Limits.Tenant.StatementTimeout.String()},
	}
	t := console.Table{Columns: []string{"key", "value", "changeable"}}
	for _, r := range rows {
		t.Rows = append(t.Rows, []*string{console.S(r[0]), console.S(r[1]), console.S("no")})
	}
	return t
}

// Version names the build.
func (c consoleSource) Version() string {
	if c.s.opts.Version != "" {
		return "pgtenant " + c.s.opts.Version
	}
	return "pgtenant"
}

// Pause holds new statements of every session until Resume, and returns
// once no statement is running (or after 30 s, with an error naming how
// many still run).
func (c consoleSource) Pause() error {
	c.s.pause.hold()
	deadline := time.Now().Add(30 * time.Second)
	for {
		busy := 0
		for _, ss := range c.sessions() {
			if !ss.idle.Load() {
				busy++
			}
		}
		if busy == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("paused, but %d session(s) are still inside a transaction or statement", busy)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Resume lets held statements go.
func (c consoleSource) Resume() error {
	c.s.pause.release()
	return nil
}

// Reconnect gets every client fresh backends. In session mode (a backend
// connection lives as long as its client) it ends every session at its
// next idle point, so clients reconnect; in transaction mode, as
// PgBouncer's RECONNECT, it closes the pools' idle connections now and the
// others when their transaction ends, and clients stay connected.
func (c consoleSource) Reconnect() error {
	if c.pooled() {
		c.s.poolMu.Lock()
		defer c.s.poolMu.Unlock()
		for _, p := range c.s.pools {
			p.recycle()
		}
		return nil
	}
	for _, ss := range c.sessions() {
		ss.drain()
	}
	return nil
}

// Kill ends one client session now.
func (c consoleSource) Kill(id string) error {
	for _, ss := range c.sessions() {
		if ss.id == id {
			ss.fatal(newClientError(pgerrcode.AdminShutdown, "killed", "terminating connection: killed from the admin console"))
			ss.close()
			return nil
		}
	}
	return fmt.Errorf("no client %q (see SHOW CLIENTS, column id)", id)
}

// Reload re-reads the configuration through the hook serve installed.
func (c consoleSource) Reload() error {
	if c.s.opts.Reload == nil {
		return errors.New("reload is not available in this process")
	}
	return c.s.opts.Reload()
}

// pauseGate holds new statements while the console has paused the proxy.
// The check on every new transaction is one atomic load.
type pauseGate struct {
	mu     sync.Mutex                    // serialises hold and release
	paused atomic.Pointer[chan struct{}] // closed by release; nil when not paused
}

func (g *pauseGate) hold() {
	g.mu.Lock()
	if g.paused.Load() == nil {
		ch := make(chan struct{})
		g.paused.Store(&ch)
	}
	g.mu.Unlock()
}

func (g *pauseGate) release() {
	g.mu.Lock()
	if ch := g.paused.Swap(nil); ch != nil {
		close(*ch)
	}
	g.mu.Unlock()
}

// wait blocks while the proxy is paused, or until done ends.
func (g *pauseGate) wait(done <-chan struct{}) {
	ch := g.paused.Load()
	if ch == nil {
		return
	}
	select {
	case <-*ch:
	case <-done:
	}
}
