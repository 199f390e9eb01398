package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
)

// KnownAlgorithms are the JWS algorithms pgtenant can verify.
var KnownAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Validate checks the configuration for missing or contradictory values and
// returns an error naming the first key at fault.
func (c *Config) Validate() error {
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
	if err := c.Auth.validate(); err != nil {
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
	if c.Limits.StartupTimeout <= 0 {
		return errors.New("limits.startup_timeout: must be positive")
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
	if asym && len(a.PublicKeys) == 0 && a.JWKSFile == "" {
		return errors.New("auth.public_keys: an asymmetric algorithm is allowed but neither public_keys nor jwks_file is set")
	}
	if a.Leeway < 0 {
		return errors.New("auth.leeway: must not be negative")
	}
	for key, val := range map[string]string{"auth.tenant_claim": a.TenantClaim, "auth.region_claim": a.RegionClaim, "auth.subject_claim": a.SubjectClaim} {
		if val == "" {
			return fmt.Errorf("%s: must not be empty", key)
		}
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
