package isolation

import "time"

// Report is the isolation attestation of one region.
type Report struct {
	// Region is the configured region name.
	Region string `json:"region"`
	// Status is the worst status of the layers below.
	Status string `json:"status"`
	// Error says why the region could not be inspected (Status is then unknown).
	Error string `json:"error,omitempty"`
	// CheckedAt is when the catalog was read.
	CheckedAt time.Time `json:"checked_at"`
	// Database and ServiceRole identify what was inspected.
	Database      string `json:"database"`
	AuditDatabase string `json:"audit_database"`
	ServiceRole   string `json:"service_role"`
	// ServerVersion is the backend's server_version.
	ServerVersion string `json:"server_version,omitempty"`

	Parser     ParserLayer `json:"parser_enforcement"`
	RLS        RLSLayer    `json:"row_level_security"`
	Role       RoleLayer   `json:"service_role_privileges"`
	Audit      AuditLayer  `json:"audit_append_only"`
	ChainHeads *ChainHeads `json:"chain_heads,omitempty"`
	// ChainHeadsError says why ChainHeads could not be read.
	ChainHeadsError  string        `json:"chain_heads_error,omitempty"`
	LastVerification *Verification `json:"last_verification,omitempty"`
}

// ParserLayer is the proxy's own statement enforcement.
type ParserLayer struct {
	Status        string `json:"status"`
	PolicyVersion string `json:"policy_version,omitempty"`
}

// RLSLayer is row-level security on the tenant tables.
type RLSLayer struct {
	Status        string        `json:"status"`
	TenantSetting string        `json:"tenant_setting"`
	Tables        []TableReport `json:"tables"`
	Problems      []string      `json:"problems,omitempty"`
	// Findings lists the RLS footguns found (footguns.go); a leak among them
	// also appears in its table's (or the layer's) problems.
	Findings []Finding `json:"findings"`
}

// TableReport is one tenant table's RLS state.
type TableReport struct {
	Table        string   `json:"table"`
	TenantColumn string   `json:"tenant_column"`
	Status       string   `json:"status"`
	RLSEnabled   bool     `json:"rls_enabled"`
	RLSForced    bool     `json:"rls_forced"`
	Owner        string   `json:"owner,omitempty"`
	Policies     []string `json:"policies"`
	Problems     []string `json:"problems,omitempty"`

	ownedByRole bool // the service role is a member of Owner
}

// RoleLayer is the service role's ability to bypass RLS.
type RoleLayer struct {
	Status     string   `json:"status"`
	Role       string   `json:"role"`
	Superuser  bool     `json:"superuser"`
	BypassRLS  bool     `json:"bypassrls"`
	OwnsTables []string `json:"owns_tables,omitempty"`
	Problems   []string `json:"problems,omitempty"`
}

// AuditLayer is the append-only protection of pgtenant_audit.events (its
// fields) and of the rows awaiting integration (Pending); Status and
// Problems cover both.
type AuditLayer struct {
	AuditTable
	// Pending is pgtenant_audit.ingest_batches (schema version 7 on): the
	// batches writers append and the integrator chains, append-only like
	// the rest until then.
	Pending *AuditTable `json:"pending,omitempty"`
}

// AuditTable is the append-only protection of one audit table.
type AuditTable struct {
	Status   string          `json:"status"`
	Table    string          `json:"table"`
	Owner    string          `json:"owner,omitempty"`
	Triggers []TriggerReport `json:"triggers,omitempty"`
	Problems []string        `json:"problems,omitempty"`
}

// TriggerReport is one trigger on the audit table.
type TriggerReport struct {
	Name     string   `json:"name"`
	Events   []string `json:"events"`
	Enabled  string   `json:"enabled"` // always | origin | replica | disabled
	Function string   `json:"function"`
	Raises   bool     `json:"raises"`
}

// ChainHeads summarises a region's audit chains.
type ChainHeads struct {
	Chains     int64      `json:"chains"`
	Entries    int64      `json:"entries"`
	LastAppend *time.Time `json:"last_append,omitempty"`
}

// Verification is the outcome of the last audit chain verification.
type Verification struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"` // e.g. intact | tampered | error
	Detail string    `json:"detail,omitempty"`
}
