package proxy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"

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
	cfg.RuntimeParams["standard_conforming_strings"] = "on"
	cfg.RuntimeParams["search_path"] = ss.searchPath
	cfg.RuntimeParams[ss.tenantSetting] = p.Account
	cfg.RuntimeParams[subjectSetting] = p.Subject
	if _, ok := cfg.RuntimeParams["client_encoding"]; !ok {
		cfg.RuntimeParams["client_encoding"] = "UTF8"
	}
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
	res := pc.ExecParams(ctx,
		"SELECT pg_catalog.set_config($1, $2, false), pg_catalog.set_config($3, $4, false)",
		[][]byte{[]byte(ss.tenantSetting), []byte(p.Account), []byte(subjectSetting), []byte(p.Subject)},
		nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("region %s: set tenant context: %w", r.name, res.Err)
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
	ce := newClientError(codeConnectionFailure, "region_unreachable", "region %q is unreachable", region)
	ce.Err = err
	return ce
}
