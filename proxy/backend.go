package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/regiondb"
)

// subjectSetting is set to the token's subject beside the tenant setting, so
// database-side triggers and logs can see who acted.
const subjectSetting = "app.current_subject"

// region is one configured backend, with its connection settings parsed once.
type region struct {
	name     string
	database string // pinned database, or "" to use the client's
	base     *pgconn.Config
}

func newRegion(name string, rc config.Region) (*region, error) {
	cc, err := regiondb.ConnConfig(name, rc, regiondb.Login{User: rc.User, Password: rc.Password})
	if err != nil {
		return nil, err
	}
	base := &cc.Config
	base.RuntimeParams = map[string]string{}
	return &region{name: name, database: rc.Database, base: base}, nil
}

// backendConn is an authenticated backend session with the tenant context set,
// taken over from pgconn so that pgtenant relays its bytes.
type backendConn struct {
	conn      net.Conn
	pid       uint32
	secretKey []byte
	params    map[string]string // ParameterStatus values reported at startup
	network   string            // for CancelRequest
	address   string
}

// sessionSettings are what every backend session is pinned to.
type sessionSettings struct {
	tenantSetting string
	searchPath    string
}

// pins returns the settings every backend session of p is pinned to, by
// lower-case name: sent as startup parameters, and re-applied whenever the
// session's settings are reset (RESET ALL). This is the one list of pins; a
// read-only principal (auth.Principal.ReadOnly) is pinned to
// default_transaction_read_only = on, so PostgreSQL itself refuses its
// writes even if a statement slipped past the policy.
func (ss sessionSettings) pins(p auth.Principal) map[string]string {
	pins := map[string]string{"standard_conforming_strings": "on", "search_path": ss.searchPath,
		strings.ToLower(ss.tenantSetting): p.Account, subjectSetting: p.Subject}
	if p.ReadOnly {
		pins["default_transaction_read_only"] = "on"
	}
	return pins
}

// dial logs in to the region as its service role, pins the session settings,
// sets the tenant context with bound parameters and hijacks the connection.
func (r *region) dial(ctx context.Context, req *startupRequest, p auth.Principal, ss sessionSettings) (*backendConn, error) {
	cfg := r.base.Copy()
	cfg.Database = req.Database
	if r.database != "" {
		cfg.Database = r.database
	}
	cfg.RuntimeParams = maps.Clone(req.Params)
	// The pins and the tenant context are startup parameters: they are then
	// the session's reset values, so a RESET ALL puts them back, atomically.
	pins := ss.pins(p)
	for name := range cfg.RuntimeParams {
		if _, pinned := pins[strings.ToLower(name)]; pinned {
			delete(cfg.RuntimeParams, name) // a client's spelling of a pin never competes with it
		}
	}
	maps.Copy(cfg.RuntimeParams, pins)
	if _, ok := cfg.RuntimeParams["client_encoding"]; !ok {
		cfg.RuntimeParams["client_encoding"] = "UTF8"
	}
	return r.connect(ctx, cfg, func(pc *pgconn.PgConn) error {
		res := pc.ExecParams(ctx,
			"SELECT pg_catalog.set_config($1, $2, false), pg_catalog.set_config($3, $4, false)",
			[][]byte{[]byte(ss.tenantSetting), []byte(p.Account), []byte(subjectSetting), []byte(p.Subject)},
			nil, nil, nil).Read()
		if res.Err != nil {
			return fmt.Errorf("region %s: set tenant context: %w", r.name, res.Err)
		}
		return nil
	})
}

// dialPooled opens a backend connection for a transaction-mode pool: the
// service role with pgtenant's pins and no tenant, and the statement that
// sets a transaction's context (ctxStatement) prepared.
func (r *region) dialPooled(ctx context.Context, database string, readOnly bool, ss sessionSettings) (*backendConn, error) {
	cfg := r.base.Copy()
	cfg.Database = database
	cfg.RuntimeParams = map[string]string{"client_encoding": "UTF8"}
	for name, value := range ss.pins(auth.Principal{ReadOnly: readOnly}) {
		if name == strings.ToLower(ss.tenantSetting) || name == subjectSetting {
			continue // never a session-level tenant: it is set in each transaction
		}
		cfg.RuntimeParams[name] = value
	}
	return r.connect(ctx, cfg, func(pc *pgconn.PgConn) error {
		if _, err := pc.Prepare(ctx, ctxStatement, ctxQuery, nil); err != nil {
			return fmt.Errorf("region %s: prepare the transaction context statement: %w", r.name, err)
		}
		if _, err := pc.Exec(ctx, ctxPrepareSQL).ReadAll(); err != nil {
			return fmt.Errorf("region %s: prepare the transaction context statements: %w", r.name, err)
		}
		return nil
	})
}

// connect logs in with cfg, runs setup and hijacks the connection.
func (r *region) connect(ctx context.Context, cfg *pgconn.Config, setup func(*pgconn.PgConn) error) (*backendConn, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, dialError(r.name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = pc.Close(context.Background())
		}
	}()
	if err := setup(pc); err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		return nil, fmt.Errorf("region %s: sync: %w", r.name, err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		return nil, fmt.Errorf("region %s: hijack: %w", r.name, err)
	}
	ok = true
	addr := hj.Conn.RemoteAddr()
	bc := &backendConn{conn: hj.Conn, pid: hj.PID, secretKey: hj.SecretKey, params: hj.ParameterStatuses}
	if addr.Network() == "unix" || addr.String() == "" {
		bc.network, bc.address = pgconn.NetworkAddress(cfg.Host, cfg.Port)
	} else {
		bc.network, bc.address = addr.Network(), addr.String()
	}
	return bc, nil
}

// dialError tells a client why its region could not be reached: PostgreSQL's
// own error when the backend answered (e.g. an unknown database), 08006 when it
// could not be reached or refused the service login.
func dialError(region string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !strings.HasPrefix(pe.Code, "28") {
		return &clientError{Code: pe.Code, Reason: "backend_error", Message: pe.Message, Hint: pe.Hint, Err: err}
	}
	ce := newClientError(pgerrcode.ConnectionFailure, "region_unreachable", "region %q is unreachable", region)
	ce.Err = err
	return ce
}

// paramList returns the ParameterStatus values reported at startup, sorted
// by name.
func (bc *backendConn) paramList() paramList {
	out := make(paramList, 0, len(bc.params))
	for _, name := range slices.Sorted(maps.Keys(bc.params)) {
		out = append(out, [2]string{name, bc.params[name]})
	}
	return out
}
