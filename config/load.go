package config

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes every environment override: PGTENANT_ + the key path
// upper-cased with _ for . (PGTENANT_LISTEN, PGTENANT_AUDIT_MODE).
const EnvPrefix = "PGTENANT"

// defaults lists every scalar key with its default, so that each one can be
// overridden from the environment even when the file does not mention it.
var defaults = map[string]any{
	"listen":                              "127.0.0.1:6432",
	"admin_listen":                        "127.0.0.1:9187",
	"log.level":                           "info",
	"log.format":                          "json",
	"tls.cert_file":                       "",
	"tls.key_file":                        "",
	"tls.require":                         false,
	"auth.hs256_secret":                   "",
	"auth.hs256_secret_env":               "",
	"auth.hs256_secret_file":              "",
	"auth.public_keys":                    []string{},
	"auth.jwks_file":                      "",
	"auth.algorithms":                     []string{"HS256"},
	"auth.issuer":                         "",
	"auth.audience":                       "",
	"auth.leeway":                         30 * time.Second,
	"auth.tenant_claim":                   "account_id",
	"auth.region_claim":                   "data_region",
	"auth.subject_claim":                  "sub",
	"policy.tenant_column":                "account_id",
	"policy.tenant_setting":               "app.current_account_id",
	"policy.discover":                     true,
	"policy.tenant_tables":                []string{},
	"policy.global_tables":                []string{},
	"policy.unknown_tables":               "deny",
	"policy.allowed_settings":             []string{},
	"policy.allowed_functions":            []string{},
	"policy.max_statement_bytes":          1 << 20,
	"policy.forbidden_schemas":            []string{"pgtenant_audit"},
	"policy.search_path":                  "public",
	"policy.require_rls":                  false,
	"policy.cache_entries":                10000,
	"policy.max_concurrent_parses":        0,
	"audit.mode":                          "spool",
	"audit.spool_dir":                     "/var/lib/pgtenant/spool",
	"audit.spool_max_bytes":               int64(1 << 30),
	"audit.queue_size":                    65536,
	"audit.outage_timeout":                10 * time.Second,
	"audit.checkpoint_dir":                "",
	"audit.seal_public_key":               "",
	"audit.statement":                     "normalized",
	"audit.init":                          true,
	"audit.disabled":                      false,
	"admin.roles":                         []string{},
	"limits.max_connections":              10000,
	"limits.max_connections_per_tenant":   0,
	"limits.startup_timeout":              10 * time.Second,
	"limits.idle_timeout":                 time.Duration(0),
	"limits.max_message_bytes":            64 << 20,
	"limits.shutdown_timeout":             30 * time.Second,
	"limits.shared_store":                 "",
	"limits.tenant.statements_per_second": 0.0,
	"limits.tenant.burst":                 0,
	"limits.tenant.concurrent_statements": 0,
	"limits.tenant.statement_timeout":     time.Duration(0),
	"auth.role_claim":                     "role",
	"auth.actor_claim":                    "act",
	"auth.jwks_url":                       "",
	"auth.oidc_discovery":                 false,
	"auth.jwks_refresh":                   15 * time.Minute,
	"auth.jwks_refetch_interval":          30 * time.Second,
	"access.read_only_roles":              []string{"viewer", "auditor"},
	"access.support.purpose_claim":        "purpose",
	"access.support.ticket_claim":         "ticket",
	"access.support.max_ttl":              24 * time.Hour,
	"access.support.read_only":            true,
	"tenant_api.listen":                   "",
	"tenant_api.roles":                    []string{"owner", "admin", "auditor", "viewer"},
	"policy.unscoped":                     "deny",
	"pool.mode":                           PoolSession,
	"pool.size":                           20,
	"pool.min_idle":                       0,
	"pool.idle_timeout":                   10 * time.Minute,
	"pool.max_wait":                       5 * time.Second,
	"audit.spool_fsync":                   "interval",
	"audit.spool_fsync_interval":          10 * time.Millisecond,
	"audit.retention_days":                2555,
}

// Default returns the configuration with every default applied and no regions.
func Default() *Config {
	cfg, err := decode(newViper())
	if err != nil {
		panic(fmt.Sprintf("config: defaults do not decode: %v", err))
	}
	return cfg
}

// Load reads the YAML file at path, applies defaults and PGTENANT_* environment
// overrides, resolves secrets and validates the result. Errors name the key at fault.
func Load(path string) (*Config, error) {
	cfg, err := read(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.resolveSecrets(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// read reads and decodes the YAML file at path with defaults and PGTENANT_*
// overrides applied and unknown keys rejected; it resolves and validates nothing.
func read(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := checkKeys(path, b); err != nil {
		return nil, err
	}
	v := newViper()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

func newViper() *viper.Viper {
	v := viper.New()
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	return v
}

func decode(v *viper.Viper) (*Config, error) {
	var cfg Config
	err := v.UnmarshalExact(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	if err != nil {
		return nil, unknownKeyError(err)
	}
	if cfg.Policy.MaxConcurrentParses <= 0 {
		cfg.Policy.MaxConcurrentParses = runtime.GOMAXPROCS(0)
	}
	for name, r := range cfg.Regions {
		if r.Port == 0 {
			r.Port = 5432
		}
		if r.SSLMode == "" {
			r.SSLMode = "disable"
		}
		if r.ConnectTimeout == 0 {
			r.ConnectTimeout = 5 * time.Second
		}
		cfg.Regions[name] = r
	}
	return &cfg, nil
}

// unknownKeyError shortens mapstructure's report of unused keys to one line.
func unknownKeyError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "has invalid keys: "); i >= 0 {
		keys := strings.TrimSpace(msg[i+len("has invalid keys: "):])
		return fmt.Errorf("unknown key(s): %s", strings.SplitN(keys, "\n", 2)[0])
	}
	return errors.New(strings.ReplaceAll(msg, "\n", "; "))
}

// resolveSecrets fills Auth.Secret and each Region.Password from their
// inline, *_env or *_file forms.
func (c *Config) resolveSecrets() error {
	hmacSecret, err := resolveSecret("auth.hs256_secret", c.Auth.HS256Secret, c.Auth.HS256SecretEnv, c.Auth.HS256SecretFile)
	if err != nil {
		return err
	}
	c.Auth.Secret = []byte(hmacSecret)
	for name, r := range c.Regions {
		pw, err := resolveSecret("regions."+name+".password", r.Password, r.PasswordEnv, r.PasswordFile)
		if err != nil {
			return err
		}
		r.Password = pw
		if r.AdminPassword != "" || r.AdminPasswordEnv != "" || r.AdminPasswordFile != "" {
			apw, err := resolveSecret("regions."+name+".admin_password", r.AdminPassword, r.AdminPasswordEnv, r.AdminPasswordFile)
			if err != nil {
				return err
			}
			r.AdminPassword = apw
		}
		c.Regions[name] = r
	}
	return nil
}

// resolveSecret returns the value given inline, from the environment variable named
// by env, or from file, whichever is set; it is an error to set more than one
// or to name a variable or file that is missing.
func resolveSecret(key, inline, env, file string) (string, error) {
	set := 0
	for _, s := range []string{inline, env, file} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return "", fmt.Errorf("%s: set only one of %[1]s, %[1]s_env and %[1]s_file", key)
	}
	switch {
	case env != "":
		val, ok := os.LookupEnv(env)
		if !ok || val == "" {
			return "", fmt.Errorf("%s_env: environment variable %s is not set", key, env)
		}
		return val, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_file: %w", key, err)
		}
		val := strings.TrimRight(string(b), "\r\n")
		if val == "" {
			return "", fmt.Errorf("%s_file: %s is empty", key, file)
		}
		return val, nil
	}
	return inline, nil
}
