package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/console"
	"github.com/pgtenant/pgtenant/tenancy"
)

// handle serves one client connection from accept to the end of its
// startup. An established session then runs on goroutines of its own (see
// session.start) and this one ends, so the deep stack the startup grew (TLS,
// JWT, the backend login) is not kept for the session's lifetime.
func (s *Server) handle(conn net.Conn) {
	n := s.clients.Add(1)
	s.opts.Metrics.ClientAccepted()
	closeConn := func() {
		s.opts.Metrics.ClientClosed()
		s.clients.Add(-1)
		_ = conn.Close()
	}
	handedOff := false
	defer func() {
		if !handedOff {
			closeConn()
		}
	}()
	rt := s.runtime()
	addr := clientIP(conn)
	connID := newSessionID()
	log := s.log.With("conn_id", connID, "client_addr", addr)

	if lim := rt.limits.MaxConnections; lim > 0 && n > int64(lim) {
		s.reject(conn, nil, log, addr, auth.Principal{}, newClientError(pgerrcode.TooManyConnections, "too_many_connections", "too many connections (limit %d)", lim))
		return
	}
	_ = conn.SetDeadline(time.Now().Add(rt.limits.StartupTimeout))
	st, err := s.readStartup(conn)
	if err != nil {
		if !errors.Is(err, errCancelHandled) {
			s.reject(conn, nil, log, addr, auth.Principal{}, err)
		}
		return
	}
	ss, err := s.authenticate(st, rt, connID, addr)
	if errors.Is(err, errConsole) {
		if refusal := s.consoleRefusal(ss); refusal != nil {
			s.reject(st.conn, ss.cw, log, addr, ss.principal, refusal)
			return
		}
		s.serveConsole(ss)
		return
	}
	if err != nil {
		var w *connWriter
		if ss != nil {
			w = ss.cw
		}
		var p auth.Principal
		if ss != nil {
			p = ss.principal
		}
		s.reject(st.conn, w, log, addr, p, err)
		return
	}
	if err := s.track(ss); err != nil {
		s.reject(st.conn, ss.cw, ss.logger(), addr, ss.principal, err)
		ss.close()
		return
	}
	ss.key = s.cancels.issue(ss)
	end := func() {
		s.cancels.revoke(ss.key)
		s.untrack(ss)
		ss.close()
	}
	if err := ss.sendStartupReply(); err != nil {
		ss.logger().Debug("startup reply failed", "error", err)
		end()
		return
	}
	_ = st.conn.SetDeadline(time.Time{})
	ss.logger().Info("connection opened", "user", ss.user, "database", st.req.Database,
		"role", ss.principal.Role(), "actor", ss.principal.Actor, "read_only", ss.principal.ReadOnly)
	connect := ss.event(tenancy.KindConnect)
	connect.Verdict = tenancy.VerdictAllow
	ss.recordAsync(connect)
	handedOff = true
	s.wg.Add(1)
	ss.start(func() {
		// the session's context ended with it: the disconnect gets its own, bounded
		ss.recordWithin(context.Background(), ss.event(tenancy.KindDisconnect))
		ss.logger().Info("connection closed")
		end()
		closeConn()
		s.wg.Done()
	})
}

// authenticate negotiates the protocol, takes the token, verifies it, picks
// the region and dials its backend. On error the returned session (if any)
// carries the client writer to report the error on.
func (s *Server) authenticate(st *clientStart, rt *runtimeConfig, connID, addr string) (*session, error) {
	ss := &session{
		srv: s, rt: rt, id: newSessionID(), connID: connID, client: st.conn, user: st.req.User, addr: addr,
		database: st.req.Database, appName: st.req.Params["application_name"], tls: st.tls, started: time.Now(),
		cr: &msgReader{r: newConnReader(st.conn), maxLen: maxPasswordLen},
		cw: newConnWriter(st.conn),
	}
	if err := negotiate(ss.cw, st); err != nil {
		return ss, err
	}
	if rt.requireTLS && !st.tls {
		return ss, newClientError(pgerrcode.InvalidAuthorizationSpecification, "tls_required", "TLS is required: connect with sslmode=require or stronger")
	}
	token := st.req.Token
	if token == "" {
		pw, err := readPassword(ss.cr, ss.cw)
		if err != nil {
			return nil, err
		}
		token = pw
	}
	if token == "" {
		return ss, &auth.Error{Reason: "missing_token"}
	}
	p, err := rt.auth.Authenticate(token)
	if err != nil {
		if wait := s.backoff.failed(addr); wait > 0 {
			sleepUntilDeadline(wait, rt.limits.StartupTimeout)
		}
		return ss, err
	}
	s.backoff.succeeded(addr)
	ss.principal = p
	ss.expiresAt = p.ExpiresAt
	if st.req.Database == console.Database {
		return ss, errConsole
	}
	ss.tc = s.counters(p.Account)
	reg, ok := rt.regions[p.Region]
	if !ok {
		return ss, newClientError(pgerrcode.InvalidAuthorizationSpecification, "unknown_region", "region %q named by the token is not configured", truncate(p.Region, 64))
	}
	ss.region = reg
	if rt.pool.Transaction() {
		return ss, s.authenticatePooled(ss, st.req, rt, reg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reg.base.ConnectTimeout+time.Second)
	defer cancel()
	bc, err := reg.dial(ctx, st.req, p, rt.settings)
	s.opts.Metrics.BackendDialed(reg.name, err)
	if err != nil {
		return ss, err
	}
	ss.attach(bc, rt.checkers(p))
	return ss, nil
}

// reject reports a failed connection attempt to the client (FATAL), the log,
// the metrics and the audit.
func (s *Server) reject(conn net.Conn, w *connWriter, log *slog.Logger, addr string, p auth.Principal, err error) {
	if isClosedErr(err) {
		log.Debug("client left during startup", "error", err)
		return
	}
	ce := toClientError(err)
	if errors.Is(err, errProtocol) {
		ce = newClientError(pgerrcode.ProtocolViolation, "protocol", "invalid startup: %v", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		ce = newClientError(pgerrcode.ProtocolViolation, "startup_timeout", "startup did not complete in time")
	}
	s.opts.Metrics.ClientRejected(ce.Reason)
	log.Info("connection rejected", "reason", ce.Reason, "sqlstate", ce.Code, "error", ce.Err)
	if w == nil {
		w = newConnWriter(conn)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = encode(w, ce.errorResponse("FATAL"))
	_ = w.Flush()
	s.recordReject(addr, p, ce)
}

// recordReject audits a refused connection; the account and region are
// known only when the token was valid (e.g. the region was unreachable).
func (s *Server) recordReject(addr string, p auth.Principal, ce *clientError) {
	if !s.auditing() {
		return
	}
	ev := tenancy.Event{Kind: tenancy.KindReject, Time: time.Now(), ClientAddr: addr, Verdict: tenancy.VerdictDeny,
		AccountID: p.Account, Subject: p.Subject, Region: p.Region, Reason: ce.Reason, SQLState: ce.Code, Rows: -1,
		Role: p.Role(), Actor: p.Actor, Purpose: p.Purpose, Ticket: p.Ticket}
	if _, known := s.runtime().regions[p.Region]; !known {
		ev.AccountID, ev.Region = "", ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditWait)
	defer cancel()
	if err := s.opts.Auditor.Record(ctx, ev); err != nil {
		s.log.Warn("audit event not recorded", "kind", ev.Kind, "error", err)
	}
}

// clientIP returns the peer's IP address, or "" for a Unix socket.
func clientIP(conn net.Conn) string {
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	return ""
}
