package policy

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgerrcode"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
)

// Engine decides statements for every session of one proxy. It is safe for
// concurrent use; Sessions are not.
type Engine struct {
	cfg             config.Policy
	parser          *parser.Parser
	base            *Catalog
	forbidden       map[string]bool
	allowedFuncs    map[string]bool
	allowedSettings map[string]bool
	searchPath      []string

	mu       sync.RWMutex
	catalogs map[string]*Catalog

	cache *cache
	// rw caches rewrite templates (policy.unscoped: rewrite; rewrite.go).
	rw *clockMap[*parser.Template] // rewrite templates (nil: nothing to rewrite)
	// txPooling: backends are shared per transaction (pool.mode:
	// transaction), so session state that would outlive the transaction is
	// refused (pooling.go).
	txPooling bool
}

// EngineOption adjusts an Engine built by NewEngine.
type EngineOption func(*Engine)

// NewEngine builds an engine from the policy configuration: the configured
// tenant and global tables form every region's base catalog.
func NewEngine(cfg config.Policy, opts ...EngineOption) (*Engine, error) {
	if cfg.TenantColumn == "" {
		cfg.TenantColumn = "account_id"
	}
	if cfg.TenantSetting == "" {
		cfg.TenantSetting = "app.current_account_id"
	}
	if cfg.SearchPath == "" {
		cfg.SearchPath = "public"
	}
	if cfg.MaxStatementBytes <= 0 {
		cfg.MaxStatementBytes = 1 << 20
	}
	if cfg.CacheEntries < 0 {
		return nil, errors.New("policy.cache_entries: must not be negative")
	}
	p, err := parser.New(cfg.MaxStatementBytes, cfg.MaxConcurrentParses)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	base, err := configCatalog(cfg)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, parser: p, base: base,
		forbidden:       map[string]bool{},
		allowedFuncs:    map[string]bool{},
		allowedSettings: map[string]bool{},
		searchPath:      base.SearchPath,
		catalogs:        map[string]*Catalog{},
		cache:           newCache(cfg.CacheEntries),
		rw:              newClockMap[*parser.Template](cfg.CacheEntries),
	}
	for _, s := range cfg.ForbiddenSchemas {
		e.forbidden[s] = true
	}
	for _, f := range cfg.AllowedFunctions {
		e.allowedFuncs[f] = true
	}
	for _, s := range cfg.AllowedSettings {
		e.allowedSettings[strings.ToLower(s)] = true
	}
	for _, o := range opts {
		o(e)
	}
	return e, nil
}

// BaseCatalog returns a copy of the catalog the configuration alone defines,
// to be extended (schema files, discovery) and installed with SetCatalog.
func (e *Engine) BaseCatalog() *Catalog { return e.base.Clone() }

// TenantColumn is the configured tenant column name.
func (e *Engine) TenantColumn() string { return e.cfg.TenantColumn }

// SetCatalog installs the catalog of a region (replacing any previous one).
// The configured tables are merged in; cached analyses of the old catalog are
// no longer used.
func (e *Engine) SetCatalog(region string, c *Catalog) {
	merged := e.base.Clone()
	if c != nil {
		if len(c.SearchPath) > 0 {
			merged.SearchPath = c.SearchPath
		}
		merged.Database, merged.NoRoleSchema = c.Database, c.NoRoleSchema
		for _, t := range c.Tables {
			cp := *t
			merged.Add(&cp)
		}
	}
	e.mu.Lock()
	e.catalogs[region] = merged
	e.mu.Unlock()
}

func (e *Engine) catalog(region string) *Catalog {
	e.mu.RLock()
	c := e.catalogs[region]
	e.mu.RUnlock()
	if c == nil {
		return e.base
	}
	return c
}

// NewSession returns the statement checker of one client session.
func (e *Engine) NewSession(p auth.Principal) *Session {
	return &Session{e: e, p: p, cat: e.catalog(p.Region), acc: newAccount(p.Account), prepared: map[string]*prepared{}}
}

// CacheStats returns the analysis cache's hit and miss counts.
func (e *Engine) CacheStats() (hits, misses uint64) {
	return e.cache.hits.Load(), e.cache.misses.Load()
}

// analysis is the cached, tenant-independent result for one statement text.
type analysis struct {
	deny  *Denial // for the whole text (guard or parse failure)
	stmts []*StmtAnalysis
	// slots are the literal positions read as tenant values at execution:
	// the only literals whose text may differ between texts sharing this
	// analysis (see cache).
	slots []int
	// normalized is the text with every literal replaced by $n: identical
	// for every text of the same shape.
	normalized string
	// noCache marks analyses that depend on a constant the scanner did not
	// see as a literal token.
	noCache bool
}

// analyzeText guards, parses (or finds in the cache) and analyses sql.
func (e *Engine) analyzeText(cat *Catalog, sql string) (*analysis, *parser.Scanned) {
	sc, err := e.parser.Guard(sql)
	if err != nil {
		d := &Denial{Reason: "too_complex", SQLState: pgerrcode.StatementTooComplex, Message: "pgtenant: " + err.Error(),
			Hint: "split the statement or simplify the expression"}
		if errors.Is(err, parser.ErrTooLong) {
			d.Reason = "too_long"
		}
		if errors.Is(err, parser.ErrSyntax) {
			d = deny("parse_error", err.Error(), "send valid UTF-8 SQL")
		}
		return &analysis{deny: d}, &parser.Scanned{}
	}
	if an := e.cache.get(cat, sql, sc); an != nil {
		return an, sc
	}
	an := e.analyzeScanned(cat, sql, sc)
	an.normalized = sc.Normalize(sql)
	if len(sql) <= maxCachedBytes && !an.noCache {
		e.cache.put(cat, sql, sc, an)
	}
	return an, sc
}

const maxCachedBytes = 64 << 10

func (e *Engine) analyzeScanned(cat *Catalog, sql string, sc *parser.Scanned) (an *analysis) {
	defer func() {
		if r := recover(); r != nil {
			// fail closed: an analyser bug denies the statement, never crashes the proxy
			an = &analysis{noCache: true, deny: deny("internal", "statement could not be analysed", "report this statement to the operators")}
		}
	}()
	sum, err := e.parser.ParseScanned(sql)
	if err != nil {
		return &analysis{noCache: true, deny: deny("parse_error", "statement could not be parsed: "+firstLine(err.Error()),
			"pgtenant only forwards statements it can parse")}
	}
	an = &analysis{}
	for _, st := range sum.Statements {
		an.stmts = append(an.stmts, e.analyze(cat, sc, st))
		for _, loc := range allFixed(st) {
			if sc.LitAt(loc) < 0 {
				an.noCache = true
			}
		}
	}
	an.slots = slotLits(an.stmts)
	return an
}

func allFixed(st *parser.Statement) []int {
	if st == nil {
		return nil
	}
	out := append([]int(nil), st.Fixed...)
	return append(out, allFixed(st.Inner)...)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Catalog returns a copy of the region's current catalog (the configured one
// when the region has none yet), to extend and install with SetCatalog.
func (e *Engine) Catalog(region string) *Catalog { return e.catalog(region).Clone() }
