package config

import (
	"time"
)

// Config is pgtenant's whole configuration. Field tags name the YAML keys of SPEC.md.
type Config struct {
	// Listen is the client-facing PostgreSQL address. Default 127.0.0.1:6432.
	Listen string `mapstructure:"listen"`
	// AdminListen is the HTTP address for /metrics, /healthz, /readyz and
	// /isolation-proof. Default 127.0.0.1:9187; empty disables the admin server.
	AdminListen string `mapstructure:"admin_listen"`
	// Log configures structured logging.
	Log Log `mapstructure:"log"`
	// TLS configures client-facing TLS.
	TLS TLS `mapstructure:"tls"`
	// Auth configures JWT verification.
	Auth Auth `mapstructure:"auth"`
	// Regions maps a data_region claim value to its backend.
	Regions map[string]Region `mapstructure:"regions"`
	// Policy configures statement enforcement.
	Policy Policy `mapstructure:"policy"`
	// Audit configures the audit trail.
	Audit Audit `mapstructure:"audit"`
	// Limits bounds what clients may consume.
	Limits Limits `mapstructure:"limits"`
}

// Log configures the process log.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `mapstructure:"level"`
	// Format is json or text. Default json.
	Format string `mapstructure:"format"`
}

// TLS configures the client-facing TLS endpoint.
type TLS struct {
	// CertFile is a PEM certificate chain; with KeyFile it enables TLS.
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the PEM private key for CertFile.
	KeyFile string `mapstructure:"key_file"`
	// Require rejects clients that do not negotiate TLS. Default false.
	Require bool `mapstructure:"require"`
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" }

// Auth configures how client tokens are verified.
type Auth struct {
	// HS256Secret is the shared HMAC secret (prefer HS256SecretEnv or HS256SecretFile).
	HS256Secret string `mapstructure:"hs256_secret"`
	// HS256SecretEnv names an environment variable holding the HMAC secret.
	HS256SecretEnv string `mapstructure:"hs256_secret_env"`
	// HS256SecretFile is a file holding the HMAC secret (trailing newline ignored).
	HS256SecretFile string `mapstructure:"hs256_secret_file"`
	// PublicKeys are PEM files with RSA, ECDSA or Ed25519 public keys.
	PublicKeys []string `mapstructure:"public_keys"`
	// JWKSFile is a JSON Web Key Set document; keys are chosen by kid.
	JWKSFile string `mapstructure:"jwks_file"`
	// Algorithms lists the accepted JWS algorithms. Default [HS256]; "none" is never accepted.
	Algorithms []string `mapstructure:"algorithms"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `mapstructure:"issuer"`
	// Audience, when set, must be among the token's aud claim values.
	Audience string `mapstructure:"audience"`
	// Leeway is the clock skew tolerated for exp, nbf and iat. Default 30s.
	Leeway time.Duration `mapstructure:"leeway"`
	// TenantClaim names the claim holding the account id. Default account_id.
	TenantClaim string `mapstructure:"tenant_claim"`
	// RegionClaim names the claim holding the data region. Default data_region.
	RegionClaim string `mapstructure:"region_claim"`
	// SubjectClaim names the claim identifying the caller. Default sub.
	SubjectClaim string `mapstructure:"subject_claim"`

	// Secret is the resolved HMAC secret (from HS256Secret, HS256SecretEnv or
	// HS256SecretFile); it is never read from the file directly.
	Secret []byte `mapstructure:"-"`
}

// Region is one region's backend PostgreSQL.
type Region struct {
	// Host is the backend host name or address (or a Unix socket directory). Required.
	Host string `mapstructure:"host"`
	// Port is the backend port. Default 5432.
	Port int `mapstructure:"port"`
	// User is the service role pgtenant logs in as. Required.
	User string `mapstructure:"user"`
	// Password is the service role's password (prefer PasswordEnv or PasswordFile).
	Password string `mapstructure:"password"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `mapstructure:"password_env"`
	// PasswordFile is a file holding the password.
	PasswordFile string `mapstructure:"password_file"`
	// Database, when set, overrides the database the client asks for.
	Database string `mapstructure:"database"`
	// SSLMode is disable, require, verify-ca or verify-full. Default disable.
	SSLMode string `mapstructure:"sslmode"`
	// SSLRootCert is the CA bundle for verify-ca and verify-full.
	SSLRootCert string `mapstructure:"sslrootcert"`
	// ConnectTimeout bounds a backend dial. Default 5s.
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
	// AuditDatabase is the database holding schema pgtenant_audit. Default
	// Database, or "postgres" when Database is empty.
	AuditDatabase string `mapstructure:"audit_database"`
	// AdminUser is the role `pgtenant audit init|seal|verify|export` log in
	// as: it must be able to create roles and schemas (init) and read the
	// audit tables. Default User. The proxy itself never uses it.
	AdminUser string `mapstructure:"admin_user"`
	// AdminPassword is AdminUser's password (prefer AdminPasswordEnv or AdminPasswordFile).
	AdminPassword string `mapstructure:"admin_password"`
	// AdminPasswordEnv names an environment variable holding AdminUser's password.
	AdminPasswordEnv string `mapstructure:"admin_password_env"`
	// AdminPasswordFile is a file holding AdminUser's password.
	AdminPasswordFile string `mapstructure:"admin_password_file"`
}

// AuditDB returns the database that holds the region's audit schema.
func (r Region) AuditDB() string {
	switch {
	case r.AuditDatabase != "":
		return r.AuditDatabase
	case r.Database != "":
		return r.Database
	}
	return "postgres"
}

// Policy configures statement enforcement (see POLICY.md).
type Policy struct {
	// TenantColumn is the column that holds the account id. Default account_id.
	TenantColumn string `mapstructure:"tenant_column"`
	// TenantSetting is the GUC pgtenant sets to the account id. Default app.current_account_id.
	TenantSetting string `mapstructure:"tenant_setting"`
	// Discover reads tenant tables (those having TenantColumn) from each region's catalog. Default true.
	Discover bool `mapstructure:"discover"`
	// TenantTables adds tenant tables as schema.table, or schema.table:column for another column name.
	TenantTables []string `mapstructure:"tenant_tables"`
	// GlobalTables lists shared tables any tenant may read unscoped (never write).
	GlobalTables []string `mapstructure:"global_tables"`
	// UnknownTables is deny (default) or allow (treated as global).
	UnknownTables string `mapstructure:"unknown_tables"`
	// AllowedSettings are settings a client may SET beyond the default list.
	AllowedSettings []string `mapstructure:"allowed_settings"`
	// AllowedFunctions are user-defined functions tenants may call, as schema.name.
	AllowedFunctions []string `mapstructure:"allowed_functions"`
	// MaxStatementBytes caps one statement's size before parsing. Default 1 MiB.
	MaxStatementBytes int `mapstructure:"max_statement_bytes"`
	// ForbiddenSchemas are schemas no tenant statement may touch. Default [pgtenant_audit].
	ForbiddenSchemas []string `mapstructure:"forbidden_schemas"`
	// SearchPath is the search_path pinned on every backend session. Default public.
	SearchPath string `mapstructure:"search_path"`
	// RequireRLS refuses to start when a tenant table lacks enabled and forced RLS. Default false.
	RequireRLS bool `mapstructure:"require_rls"`
	// CacheEntries bounds the statement analysis cache. Default 10000.
	CacheEntries int `mapstructure:"cache_entries"`
	// MaxConcurrentParses bounds simultaneous pg_query calls. Default GOMAXPROCS.
	MaxConcurrentParses int `mapstructure:"max_concurrent_parses"`
}

// Audit configures the audit trail (see SPEC.md, Audit).
type Audit struct {
	// Mode is spool (default), strict or async.
	Mode string `mapstructure:"mode"`
	// SpoolDir holds the local spool in spool mode. Default /var/lib/pgtenant/spool.
	SpoolDir string `mapstructure:"spool_dir"`
	// SpoolMaxBytes is the spool's high-water mark; past it statements get 57P03. Default 1 GiB.
	SpoolMaxBytes int64 `mapstructure:"spool_max_bytes"`
	// OutageTimeout is how long the regional audit database may stay
	// unwritable before spool mode refuses new statements (57P03). Default 10s.
	OutageTimeout time.Duration `mapstructure:"outage_timeout"`
	// QueueSize bounds the in-memory event queue. Default 65536.
	QueueSize int `mapstructure:"queue_size"`
	// SpoolFsync is group (a statement waits for the fsync of its group) or
	// interval (default: it waits for the write(2) of its record, and the
	// spool is fsync'd every SpoolFsyncInterval).
	SpoolFsync string `mapstructure:"spool_fsync"`
	// SpoolFsyncInterval is the fsync period of spool_fsync: interval. Default 10ms.
	SpoolFsyncInterval time.Duration `mapstructure:"spool_fsync_interval"`
	// RetentionDays is how long events are kept before audit purge (and
	// audit seal --every) redacts them. Default 2555 (7 years).
	RetentionDays int `mapstructure:"retention_days"`
	// RetentionOverrides sets RetentionDays per account.
	RetentionOverrides map[string]int `mapstructure:"retention_overrides"`
	// CheckpointDir is where `audit seal` also writes checkpoints, outside the database.
	CheckpointDir string `mapstructure:"checkpoint_dir"`
	// SealPublicKey is the Ed25519 public key (PEM file) checkpoints are verified with.
	SealPublicKey string `mapstructure:"seal_public_key"`
	// Statement is how statement text is recorded: normalized (default), full or fingerprint.
	Statement string `mapstructure:"statement"`
	// Init creates or upgrades the audit schema when serve starts. Default true.
	Init bool `mapstructure:"init"`
	// Disabled turns the audit trail off entirely (development only). Default false.
	Disabled bool `mapstructure:"disabled"`
}

// Limits bounds client resource use.
type Limits struct {
	// MaxConnections caps concurrent client connections; 0 means unlimited. Default 10000.
	MaxConnections int `mapstructure:"max_connections"`
	// MaxConnectionsPerTenant caps one account's concurrent connections; 0 means unlimited.
	MaxConnectionsPerTenant int `mapstructure:"max_connections_per_tenant"`
	// StartupTimeout bounds the time from accept to an authenticated session. Default 10s.
	StartupTimeout time.Duration `mapstructure:"startup_timeout"`
	// IdleTimeout closes a client idle outside a transaction this long; 0 disables. Default 0.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// MaxMessageBytes caps one client protocol message. Default 64 MiB.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`
	// ShutdownTimeout is how long serve lets sessions finish after SIGTERM. Default 30s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
}
