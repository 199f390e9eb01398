// Package tenantapi serves tenants and their compliance reviewers their own
// audit history and isolation attestation over HTTPS, authenticated by the
// same JWTs as connections and scoped to the token's tenant and region:
//
//	GET /v1/audit            the tenant's events (filters, cursor pages, JSON lines or CSV)
//	GET /v1/audit/export     the export file `pgtenant audit verify --file` checks offline
//	GET /v1/isolation-proof  each layer's status, the tenant's own row counts, system totals
//	GET /                    the compliance report page (public shell; data via the API)
//
// A request without a bearer token gets 401, a token whose role is not in
// tenant_api.roles 403. The account and region always come from the
// verified token, never from the request, so no parameter can reach another
// tenant's data. Every API read is itself recorded in the audit (kind api).
package tenantapi

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/tenancy"
)

// Authenticator verifies a bearer token.
type Authenticator interface {
	Authenticate(token string) (auth.Principal, error)
}

// Auditor records the API's own reads.
type Auditor interface {
	Record(ctx context.Context, ev tenancy.Event) error
}

// Inspector builds one region's isolation report (the operator's
// /isolation-proof uses the same builder).
type Inspector func(ctx context.Context, region string) isolation.Report

// Options are the API's collaborators; cmd/pgtenant wires the real ones.
type Options struct {
	Auth    Authenticator
	Roles   []string
	Regions map[string]config.Region
	Policy  config.Policy
	// PolicyVersion identifies the running policy in the attestation.
	PolicyVersion string
	// Attest inspects a region's layers; nil reports them unknown.
	Attest Inspector
	// Auditor records every read; nil records nothing (tests only).
	Auditor Auditor
	Log     *slog.Logger
}

// Handler is the API's http.Handler.
type Handler struct {
	o   Options
	mux *http.ServeMux
}

// New returns the API handler.
func New(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /v1/audit", h.authed(h.auditEvents))
	h.mux.HandleFunc("GET /v1/audit/export", h.authed(h.auditExport))
	h.mux.HandleFunc("GET /v1/isolation-proof", h.authed(h.isolationProof))
	h.mux.HandleFunc("GET /{$}", servePage)
	h.mux.Handle("GET /static/", staticFiles())
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

type authedFunc func(w http.ResponseWriter, r *http.Request, p auth.Principal) (outcome string)

// authed checks the bearer token and the role, runs f, and records the read.
func (h *Handler) authed(f authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgtenant"`)
			writeError(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer <jwt>)")
			return
		}
		p, err := h.o.Auth.Authenticate(token)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgtenant", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "the token was refused: "+strings.TrimPrefix(err.Error(), "pgtenant: "))
			return
		}
		if !slices.ContainsFunc(h.o.Roles, p.HasRole) {
			h.record(r, p, tenancy.VerdictDeny, "role_not_allowed", 0)
			writeError(w, http.StatusForbidden, fmt.Sprintf("role %q may not use the tenant API (allowed: %s)", p.Role(), strings.Join(h.o.Roles, ", ")))
			return
		}
		if _, ok := h.o.Regions[p.Region]; !ok {
			h.record(r, p, tenancy.VerdictDeny, "unknown_region", 0)
			writeError(w, http.StatusForbidden, fmt.Sprintf("region %q is not served here", p.Region))
			return
		}
		outcome := f(w, r, p)
		verdict := tenancy.VerdictAllow
		if outcome != "" {
			verdict = tenancy.VerdictDeny
		}
		h.record(r, p, verdict, outcome, 0)
	}
}

// record audits one API read in the tenant's own chain.
func (h *Handler) record(r *http.Request, p auth.Principal, verdict, reason string, rows int64) {
	if h.o.Auditor == nil {
		return
	}
	ev := tenancy.Event{Kind: tenancy.KindAPI, Time: time.Now(), AccountID: p.Account, Subject: p.Subject,
		ClientAddr: clientIP(r), Region: p.Region, Statement: r.Method + " " + r.URL.Path,
		Verdict: verdict, Reason: reason, Rows: rows, Role: p.Role(), Actor: p.Actor, Purpose: p.Purpose, Ticket: p.Ticket}
	// A read must not be lost: the event is recorded before the answer
	// completes, on a context that outlives a client that hung up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := h.o.Auditor.Record(ctx, ev); err != nil {
		h.o.Log.Warn("tenant api: audit of a read failed", "account_id", p.Account, "error", err)
	}
}

func (h *Handler) auditEvents(w http.ResponseWriter, r *http.Request, p auth.Principal) string {
	q, format, err := parseQuery(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "bad_request"
	}
	q.Account = p.Account // never from the request
	page, err := audit.Read(r.Context(), p.Region, h.o.Regions[p.Region], q)
	if err != nil {
		h.o.Log.Warn("tenant api: audit read failed", "account_id", p.Account, "region", p.Region, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the audit could not be read; retry shortly")
		return "unavailable"
	}
	if page.Next > 0 {
		w.Header().Set("X-Next-Cursor", strconv.FormatInt(page.Next, 10))
		next := *r.URL
		v := next.Query()
		v.Set("cursor", strconv.FormatInt(page.Next, 10))
		next.RawQuery = v.Encode()
		w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", next.RequestURI()))
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		_ = cw.Write(csvHeader)
		for _, e := range page.Events {
			_ = cw.Write(csvRow(e))
		}
		cw.Flush()
		return ""
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i := range page.Events {
		if err := enc.Encode(page.Events[i]); err != nil {
			return ""
		}
	}
	return ""
}

func (h *Handler) auditExport(w http.ResponseWriter, r *http.Request, p auth.Principal) string {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		writeError(w, http.StatusBadRequest, "format: jsonl or csv")
		return "bad_request"
	}
	opts := audit.ExportOptions{Account: p.Account, Region: p.Region, Format: format}
	var err error
	if opts.Since, err = timeParam(r, "since"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "bad_request"
	}
	if opts.Until, err = timeParam(r, "until"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "bad_request"
	}
	// Export streams as it reads, so an error after the first bytes can only
	// cut the body short: such a file then fails verification instead of
	// passing as complete.
	ext := ".jsonl"
	if format == "csv" {
		ext = ".csv"
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="pgtenant-audit-%s-%s%s"`, safeName(p.Account), safeName(p.Region), ext))
	if _, err := audit.Export(r.Context(), h.o.Regions, opts, w); err != nil {
		h.o.Log.Warn("tenant api: export failed", "account_id", p.Account, "region", p.Region, "error", err)
		return "unavailable"
	}
	return ""
}

// Attestation is the tenant's isolation proof.
type Attestation struct {
	GeneratedAt   time.Time               `json:"generated_at"`
	Account       string                  `json:"account_id"`
	Region        string                  `json:"region"`
	PolicyVersion string                  `json:"policy_version,omitempty"`
	Status        string                  `json:"status"`
	Layers        Layers                  `json:"layers"`
	YourData      []isolation.TenantTable `json:"your_data"`
	SystemTotals  []isolation.SystemTable `json:"system_totals"`
	Errors        []string                `json:"errors,omitempty"`
}

// Layers is each isolation layer's status for the tenant's region.
type Layers struct {
	Parser      string                  `json:"parser"`
	RLS         string                  `json:"rls"`
	RLSTables   []isolation.TableReport `json:"rls_tables"`
	ServiceRole string                  `json:"service_role"`
	Audit       string                  `json:"audit_append_only"`
	// Region is active when the tenant's traffic goes only to its own region.
	Region string `json:"region"`
}

func (h *Handler) isolationProof(w http.ResponseWriter, r *http.Request, p auth.Principal) string {
	a := Attestation{GeneratedAt: time.Now().UTC(), Account: p.Account, Region: p.Region,
		PolicyVersion: h.o.PolicyVersion, YourData: []isolation.TenantTable{}, SystemTotals: []isolation.SystemTable{}}
	a.Layers = Layers{Parser: isolation.Unknown, RLS: isolation.Unknown, ServiceRole: isolation.Unknown,
		Audit: isolation.Unknown, Region: isolation.Active}
	if h.o.Attest != nil {
		rep := h.o.Attest(r.Context(), p.Region)
		a.Layers.Parser, a.Layers.RLS, a.Layers.RLSTables = rep.Parser.Status, rep.RLS.Status, rep.RLS.Tables
		a.Layers.ServiceRole, a.Layers.Audit = rep.Role.Status, rep.Audit.Status
		if rep.Error != "" {
			a.Errors = append(a.Errors, "layers: "+rep.Error)
		}
	}
	d, err := isolation.CountTenantData(r.Context(), p.Region, h.o.Regions[p.Region], h.o.Policy, p.Account, 10*time.Second)
	if err != nil {
		h.o.Log.Warn("tenant api: counting tenant data failed", "account_id", p.Account, "region", p.Region, "error", err)
		a.Errors = append(a.Errors, "your_data: the region could not be read")
	} else {
		a.YourData, a.SystemTotals = d.YourData, d.SystemTotals
	}
	a.Status = isolation.Worst(a.Layers.Parser, a.Layers.RLS, a.Layers.ServiceRole, a.Layers.Audit, a.Layers.Region)
	if err != nil {
		a.Status = isolation.Worst(a.Status, isolation.Unknown)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a)
	return ""
}

// parseQuery reads /v1/audit's filters.
func parseQuery(r *http.Request) (audit.Query, string, error) {
	v := r.URL.Query()
	q := audit.Query{Kind: v.Get("kind"), Verdict: v.Get("verdict"), Subject: v.Get("subject"), Limit: 1000}
	var err error
	if q.Since, err = timeParam(r, "since"); err != nil {
		return q, "", err
	}
	if q.Until, err = timeParam(r, "until"); err != nil {
		return q, "", err
	}
	if c := v.Get("cursor"); c != "" {
		if q.After, err = strconv.ParseInt(c, 10, 64); err != nil || q.After < 0 {
			return q, "", errors.New("cursor: not a cursor this API returned")
		}
	}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 1 || q.Limit > audit.MaxQueryLimit {
			return q, "", fmt.Errorf("limit: a whole number from 1 to %d", audit.MaxQueryLimit)
		}
	}
	if q.Verdict != "" && q.Verdict != tenancy.VerdictAllow && q.Verdict != tenancy.VerdictDeny {
		return q, "", errors.New("verdict: allow or deny")
	}
	format := v.Get("format")
	if format == "" && strings.Contains(r.Header.Get("Accept"), "text/csv") {
		format = "csv"
	}
	switch format {
	case "", "jsonl":
		format = "jsonl"
	case "csv":
	default:
		return q, "", errors.New("format: jsonl or csv")
	}
	return q, format, nil
}

func timeParam(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s: %q is not an RFC 3339 time or a date (2006-01-02)", name, s)
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func clientIP(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// safeName keeps a file name to letters, digits, '-' and '_'.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, s)
}

var csvHeader = []string{"seq", "event_id", "ts", "kind", "subject", "client_addr", "session_id", "statement",
	"tables", "verdict", "reason", "sqlstate", "rows", "duration_us", "entry_hash", "role", "actor", "purpose", "ticket", "rewritten"}

func csvRow(e audit.RowJSON) []string {
	rewritten := ""
	if e.Rewritten != nil {
		rewritten = strconv.FormatBool(*e.Rewritten)
	}
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	n := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	return []string{strconv.FormatInt(e.Seq, 10), e.EventID, e.TS, e.Kind, s(e.Subject), s(e.ClientAddr), s(e.SessionID),
		s(e.Statement), strings.Join(e.Tables, ";"), s(e.Verdict), s(e.Reason), s(e.SQLState), n(e.Rows), n(e.DurationUS), e.EntryHash,
		s(e.Role), s(e.Actor), s(e.Purpose), s(e.Ticket), rewritten}
}
