package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// KnownAlgorithms are the JWS algorithms pgtenant can verify.
var KnownAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Validate checks the configuration for missing or contradictory values and
// returns an error naming the first key at fault.
func (c *Config) Validate() error { return c.validate(true) }

// validate is Validate, with the auth section checked only when auth is set.
func (c *Config) validate(auth bool) error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return fmt.Errorf("admin_listen: %q is not host:port", c.AdminListen)
		}
	}
	if err := oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("log.format", c.Log.Format, "json", "text"); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file must be set together")
	}
	if c.TLS.Require && !c.TLS.Enabled() {
		return errors.New("tls.require: needs tls.cert_file and tls.key_file")
	}
	if auth {
		if err := c.Auth.validate(); err != nil {
			return err
		}
	}
	if err := c.Access.validate(); err != nil {
		return err
	}
	if len(c.Regions) == 0 {
		return errors.New("regions: at least one region is required")
	}
	for _, name := range c.RegionNames() {
		if err := c.Regions[name].validate("regions." + name); err != nil {
			return err
		}
	}
	if err := c.Policy.validate(); err != nil {
		return err
	}
	if err := c.Pool.validate(); err != nil {
		return err
	}
	if err := oneOf("audit.mode", c.Audit.Mode, "spool", "strict", "async"); err != nil {
		return err
	}
	if err := oneOf("audit.statement", c.Audit.Statement, "normalized", "full", "fingerprint"); err != nil {
		return err
	}
	if c.Audit.Mode == "spool" && c.Audit.SpoolDir == "" && !c.Audit.Disabled {
		return errors.New("audit.spool_dir: required in spool mode")
	}
	if c.Audit.SpoolMaxBytes <= 0 {
		return fmt.Errorf("audit.spool_max_bytes: %d must be positive", c.Audit.SpoolMaxBytes)
	}
	if err := oneOf("audit.spool_fsync", c.Audit.SpoolFsync, "group", "interval"); err != nil {
		return err
	}
	if c.Audit.RetentionDays <= 0 {
		return fmt.Errorf("audit.retention_days: %d must be positive", c.Audit.RetentionDays)
	}
	for account, days := range c.Audit.RetentionOverrides {
		if days <= 0 {
			return fmt.Errorf("audit.retention_overrides.%s: %d must be positive", account, days)
		}
	}
	if c.Audit.SpoolFsyncInterval <= 0 {
		return errors.New("audit.spool_fsync_interval: must be positive")
	}
	if c.Audit.QueueSize <= 0 {
		return fmt.Errorf("audit.queue_size: %d must be positive", c.Audit.QueueSize)
	}
	if c.Audit.OutageTimeout <= 0 {
		return errors.New("audit.outage_timeout: must be positive")
	}
	if c.Limits.MaxMessageBytes < 1024 {
		return fmt.Errorf("limits.max_message_bytes: %d is below the minimum 1024", c.Limits.MaxMessageBytes)
	}
	if err := c.TenantAPI.validate(c.TLS); err != nil {
		return err
	}
	if c.Limits.StartupTimeout <= 0 {
		return errors.New("limits.startup_timeout: must be positive")
	}
	if err := c.Limits.Tenant.validate("limits.tenant"); err != nil {
		return err
	}
	for acc, b := range c.Limits.Tenant.Overrides {
		if err := b.validate("limits.tenant.overrides." + acc); err != nil {
			return err
		}
	}
	if s := c.Limits.SharedStore; s != "" && !strings.HasPrefix(s, "redis://") && !strings.HasPrefix(s, "rediss://") {
		return fmt.Errorf("limits.shared_store: %q is not a redis:// or rediss:// URL", s)
	}
	return nil
}

func (b BudgetLimits) validate(key string) error {
	switch {
	case b.StatementsPerSecond < 0:
		return fmt.Errorf("%s.statements_per_second: %g must not be negative", key, b.StatementsPerSecond)
	case b.Burst < 0:
		return fmt.Errorf("%s.burst: %d must not be negative", key, b.Burst)
	case b.Burst > 0 && b.StatementsPerSecond == 0:
		return fmt.Errorf("%s.burst: set statements_per_second too (a burst alone limits nothing)", key)
	case b.ConcurrentStatements < 0:
		return fmt.Errorf("%s.concurrent_statements: %d must not be negative", key, b.ConcurrentStatements)
	case b.StatementTimeout < 0:
		return fmt.Errorf("%s.statement_timeout: must not be negative", key)
	}
	return nil
}

// RegionNames returns the configured region names, sorted.
func (c *Config) RegionNames() []string {
	names := make([]string, 0, len(c.Regions))
	for n := range c.Regions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (a Auth) validate() error {
	if len(a.Algorithms) == 0 {
		return errors.New("auth.algorithms: at least one algorithm is required")
	}
	hmac, asym := false, false
	for _, alg := range a.Algorithms {
		if strings.EqualFold(alg, "none") {
			return errors.New("auth.algorithms: 'none' is never allowed")
		}
		if !slices.Contains(KnownAlgorithms, alg) {
			return fmt.Errorf("auth.algorithms: unknown algorithm %q (known: %s)", alg, strings.Join(KnownAlgorithms, ", "))
		}
		if strings.HasPrefix(alg, "HS") {
			hmac = true
		} else {
			asym = true
		}
	}
	if hmac && len(a.Secret) == 0 {
		return errors.New("auth.hs256_secret: an HMAC algorithm is allowed but no secret is set (hs256_secret, hs256_secret_env or hs256_secret_file)")
	}
	if hmac && len(a.Secret) < 32 {
		return fmt.Errorf("auth.hs256_secret: %d bytes is too short; use at least 32", len(a.Secret))
	}
	if asym && len(a.PublicKeys) == 0 && a.JWKSFile == "" && a.JWKSURL == "" && a.Issuer == "" {
		return errors.New("auth.public_keys: an asymmetric algorithm is allowed but no key source is set (public_keys, jwks_file, jwks_url, or issuer for OIDC discovery)")
	}
	if a.OIDCDiscovery && a.Issuer == "" {
		return errors.New("auth.oidc_discovery: needs auth.issuer")
	}
	if a.OIDCDiscovery && a.JWKSURL != "" {
		return errors.New("auth.oidc_discovery: set either oidc_discovery or jwks_url, not both")
	}
	if a.JWKSURL != "" {
		if err := CheckFetchURL(a.JWKSURL); err != nil {
			return fmt.Errorf("auth.jwks_url: %w", err)
		}
	}
	if a.Issuer != "" && a.DiscoveryEnabled() {
		if err := CheckFetchURL(a.Issuer); err != nil {
			return fmt.Errorf("auth.issuer: for OIDC discovery, %w", err)
		}
	}
	if a.JWKSRefresh < time.Minute && a.RemoteKeys() {
		return fmt.Errorf("auth.jwks_refresh: %s is below the minimum 1m", a.JWKSRefresh)
	}
	if a.JWKSRefetchInterval < time.Second && a.RemoteKeys() {
		return fmt.Errorf("auth.jwks_refetch_interval: %s is below the minimum 1s", a.JWKSRefetchInterval)
	}
	if a.Leeway < 0 {
		return errors.New("auth.leeway: must not be negative")
	}
	for key, val := range map[string]string{"auth.tenant_claim": a.TenantClaim, "auth.region_claim": a.RegionClaim, "auth.subject_claim": a.SubjectClaim,
		"auth.role_claim": a.RoleClaim, "auth.actor_claim": a.ActorClaim} {
		if val == "" {
			return fmt.Errorf("%s: must not be empty", key)
		}
	}
	return nil
}

// DiscoveryEnabled reports whether the keys come from OIDC discovery on
// Issuer: when configured so, or when an asymmetric algorithm is allowed and
// Issuer is the only key source.
func (a Auth) DiscoveryEnabled() bool {
	if a.Issuer == "" {
		return false
	}
	if a.OIDCDiscovery {
		return true
	}
	if len(a.PublicKeys) > 0 || a.JWKSFile != "" || a.JWKSURL != "" {
		return false
	}
	return slices.ContainsFunc(a.Algorithms, func(alg string) bool { return !strings.HasPrefix(alg, "HS") })
}

// RemoteKeys reports whether keys are fetched over HTTP (jwks_url or discovery).
func (a Auth) RemoteKeys() bool { return a.JWKSURL != "" || a.DiscoveryEnabled() }

// CheckFetchURL accepts an https URL, or an http URL whose host is a
// loopback address or localhost: keys fetched in clear text over a network
// could be replaced by anyone on the path.
func CheckFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%q must be an absolute https URL without user information", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q uses plain http, allowed only for loopback hosts; use https", raw)
	}
	return fmt.Errorf("%q must use https", raw)
}

// IsLoopbackHost reports whether host is localhost or a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c Access) validate() error {
	for _, r := range c.ReadOnlyRoles {
		if r == "" {
			return errors.New("access.read_only_roles: a role must not be empty")
		}
	}
	if c.Support.PurposeClaim == "" {
		return errors.New("access.support.purpose_claim: must not be empty")
	}
	if c.Support.TicketClaim == "" {
		return errors.New("access.support.ticket_claim: must not be empty")
	}
	if c.Support.MaxTTL <= 0 {
		return errors.New("access.support.max_ttl: must be positive")
	}
	return nil
}

func (r Region) validate(key string) error {
	if r.Host == "" {
		return fmt.Errorf("%s.host: required", key)
	}
	if r.Port <= 0 || r.Port > 65535 {
		return fmt.Errorf("%s.port: %d is out of range", key, r.Port)
	}
	if r.User == "" {
		return fmt.Errorf("%s.user: required", key)
	}
	return oneOf(key+".sslmode", r.SSLMode, "disable", "require", "verify-ca", "verify-full")
}

func (p Policy) validate() error {
	if p.TenantColumn == "" {
		return errors.New("policy.tenant_column: must not be empty")
	}
	if p.TenantSetting == "" || !strings.Contains(p.TenantSetting, ".") {
		return fmt.Errorf("policy.tenant_setting: %q must be a custom setting such as app.current_account_id", p.TenantSetting)
	}
	if err := oneOf("policy.unscoped", p.Unscoped, "deny", "rewrite"); err != nil {
		return err
	}
	if err := oneOf("policy.unknown_tables", p.UnknownTables, "deny", "allow"); err != nil {
		return err
	}
	if p.MaxStatementBytes < 1024 {
		return fmt.Errorf("policy.max_statement_bytes: %d is below the minimum 1024", p.MaxStatementBytes)
	}
	if p.SearchPath == "" {
		return errors.New("policy.search_path: must not be empty")
	}
	return nil
}

func oneOf(key, val string, allowed ...string) error {
	if slices.Contains(allowed, val) {
		return nil
	}
	return fmt.Errorf("%s: %q is not one of %s", key, val, strings.Join(allowed, ", "))
}

func (t TenantAPI) validate(tls TLS) error {
	if t.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(t.Listen)
	if err != nil {
		return fmt.Errorf("tenant_api.listen: %q is not host:port", t.Listen)
	}
	if !tls.Enabled() && !IsLoopbackHost(host) {
		return fmt.Errorf("tenant_api.listen: %s is not a loopback address, so the API needs HTTPS: set tls.cert_file and tls.key_file (tokens must not cross a network in clear)", t.Listen)
	}
	if len(t.Roles) == 0 {
		return errors.New("tenant_api.roles: at least one role is required")
	}
	return nil
}

func (p Pool) validate() error {
	if err := oneOf("pool.mode", p.Mode, PoolSession, PoolTransaction); err != nil {
		return err
	}
	if p.Size < 1 {
		return fmt.Errorf("pool.size: %d must be at least 1", p.Size)
	}
	if p.MinIdle < 0 || p.MinIdle > p.Size {
		return fmt.Errorf("pool.min_idle: %d must be between 0 and pool.size (%d)", p.MinIdle, p.Size)
	}
	if p.IdleTimeout <= 0 {
		return fmt.Errorf("pool.idle_timeout: %s must be positive", p.IdleTimeout)
	}
	if p.MaxWait <= 0 {
		return fmt.Errorf("pool.max_wait: %s must be positive", p.MaxWait)
	}
	return nil
}
