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
	// Admin configures the admin console (database "pgtenant" on listen).
	Admin Admin `mapstructure:"admin"`
	// Access configures read-only roles and support (break-glass) sessions.
	Access Access `mapstructure:"access"`
	// TenantAPI serves tenants their own audit history and isolation proof.
	TenantAPI TenantAPI `mapstructure:"tenant_api"`
	// Pool configures how client sessions share backend connections.
	Pool Pool `mapstructure:"pool"`
}

// Pool modes (Pool.Mode).
const (
	// PoolSession gives every client a backend connection of its own for
	// its whole session; the tenant setting is a session setting.
	PoolSession = "session"
	// PoolTransaction multiplexes clients onto a bounded pool of backend
	// connections per (region, database): a client holds a backend for one
	// transaction, and the tenant setting is set transaction-locally in
	// every transaction.
	PoolTransaction = "transaction"
)

// Pool configures backend pooling per (region, database).
type Pool struct {
	// Mode is session or transaction. Default session.
	Mode string `mapstructure:"mode"`
	// Size caps the backend connections of one (region, database) pool in
	// transaction mode (count). Default 20.
	Size int `mapstructure:"size"`
	// MinIdle is how many idle backend connections a pool keeps open
	// however long they stay idle (count). Default 0.
	MinIdle int `mapstructure:"min_idle"`
	// IdleTimeout closes a backend connection idle longer than this, beyond
	// min_idle (duration). Default 10m.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// MaxWait is how long a client waits for a backend connection before
	// its statement is refused with SQLSTATE 53300 (duration). Default 5s.
	MaxWait time.Duration `mapstructure:"max_wait"`
}

// Transaction reports whether clients share backends per transaction.
func (p Pool) Transaction() bool { return p.Mode == PoolTransaction }

// TenantAPI configures the tenants' HTTPS API and compliance report page.
type TenantAPI struct {
	// Listen is host:port of the API; empty (the default) turns it off. It is
	// served over HTTPS with tls.cert_file; plain HTTP only on a loopback address.
	Listen string `mapstructure:"listen"`
	// Roles are the role-claim values allowed to call the API. Default
	// [owner, admin, auditor, viewer]. A token without a listed role gets 403.
	Roles []string `mapstructure:"roles"`
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
	// RoleClaim names the claim holding the caller's role: a string, or an
	// array of strings (Entra ID roles, Cognito groups). Default role.
	RoleClaim string `mapstructure:"role_claim"`
	// ActorClaim names the RFC 8693 actor claim that marks a support session:
	// an object whose sub names the acting person (or that person's id as a
	// string). Default act.
	ActorClaim string `mapstructure:"actor_claim"`
	// JWKSURL is a JWKS endpoint the keys are fetched from (https; plain http
	// only for loopback hosts), cached, refreshed every JWKSRefresh and
	// refetched when a token names an unknown kid.
	JWKSURL string `mapstructure:"jwks_url"`
	// OIDCDiscovery fetches the JWKS URL from Issuer's
	// /.well-known/openid-configuration. Default false; discovery also happens
	// when Issuer is set, an asymmetric algorithm is allowed and no other key
	// source (public_keys, jwks_file, jwks_url) is configured.
	OIDCDiscovery bool `mapstructure:"oidc_discovery"`
	// JWKSRefresh is how often fetched keys are refreshed in the background. Default 15m.
	JWKSRefresh time.Duration `mapstructure:"jwks_refresh"`
	// JWKSRefetchInterval is the least time between two refetches caused by
	// tokens naming an unknown kid (a rotation). Default 30s.
	JWKSRefetchInterval time.Duration `mapstructure:"jwks_refetch_interval"`

	// Secret is the resolved HMAC secret (from HS256Secret, HS256SecretEnv or
	// HS256SecretFile); it is never read from the file directly.
	Secret []byte `mapstructure:"-"`
}

// Access configures what a verified caller may do beyond its tenant scope.
type Access struct {
	// ReadOnlyRoles are roles whose sessions are read-only, both in the policy
	// and at the backend (default_transaction_read_only pinned on). Default
	// [viewer, auditor]. A token without a role claim keeps full access.
	ReadOnlyRoles []string `mapstructure:"read_only_roles"`
	// Support configures support (break-glass) sessions.
	Support Support `mapstructure:"support"`
}

// Support configures support sessions: tokens that carry the actor claim.
type Support struct {
	// PurposeClaim names the claim stating why the session exists; required
	// in a support token. Default purpose.
	PurposeClaim string `mapstructure:"purpose_claim"`
	// TicketClaim names the claim holding the ticket reference; when the
	// token lacks it, the purpose is recorded as the ticket. Default ticket.
	TicketClaim string `mapstructure:"ticket_claim"`
	// MaxTTL is the longest lifetime (exp - iat) a support token may have. Default 24h.
	MaxTTL time.Duration `mapstructure:"max_ttl"`
	// ReadOnly makes support sessions read-only. Default true.
	ReadOnly bool `mapstructure:"read_only"`
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
	// Unscoped is deny (default: a tenant table used without a pin is
	// refused) or rewrite (pgtenant adds the caller's pin; see policy/rewrite.go).
	Unscoped string `mapstructure:"unscoped"`
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
	// Tenant is every tenant's statement budget (rate, concurrency, timeout).
	Tenant TenantBudget `mapstructure:"tenant"`
	// SharedStore is a Redis URL (redis:// or rediss://) through which proxy
	// instances share tenant budgets; empty keeps them per instance. Default "".
	SharedStore string `mapstructure:"shared_store"`
}

// TenantBudget is the default per-tenant budget with per-account overrides.
// Zero disables a limit. Refusals carry SQLSTATE class 53 and a hint.
type TenantBudget struct {
	BudgetLimits `mapstructure:",squash"`
	// Overrides replaces the default budget for the accounts it names (account id -> budget).
	Overrides map[string]BudgetLimits `mapstructure:"overrides"`
}

// BudgetLimits is one tenant's budget.
type BudgetLimits struct {
	// StatementsPerSecond is the sustained rate of statements a tenant may start
	// (a token bucket); 0 means unlimited. Default 0.
	StatementsPerSecond float64 `mapstructure:"statements_per_second"`
	// Burst is the bucket size: statements that may start at once above the
	// rate. Default 0, meaning the rate rounded up.
	Burst int `mapstructure:"burst"`
	// ConcurrentStatements caps a tenant's statements running at the same time
	// across its sessions; 0 means unlimited. Default 0.
	ConcurrentStatements int `mapstructure:"concurrent_statements"`
	// StatementTimeout cancels a tenant's statement that runs longer; 0 disables. Default 0.
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
}

// Admin configures the admin console: a client connecting to the database
// "pgtenant" on listen with a token whose role is listed here gets
// PgBouncer-style SHOW and control commands.
type Admin struct {
	// Roles are the role-claim values (auth.role_claim) allowed into the
	// console. Default [] (the console is off).
	Roles []string `mapstructure:"roles"`
}
