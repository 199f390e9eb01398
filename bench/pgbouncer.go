package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/cluster"
)

// ErrNoPgBouncer reports that the pgbouncer binary is not installed.
var ErrNoPgBouncer = errors.New("pgbouncer not found on PATH (Debian: apt-get install pgbouncer; scripts/deps.sh installs it)")

// findPgBouncer returns the pgbouncer binary (Debian installs it in /usr/sbin).
func findPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", ErrNoPgBouncer
}

// pgbouncerVersion returns the first line of `pgbouncer --version`.
func pgbouncerVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(first)
}

// pgbouncer is a running PgBouncer in front of the cluster.
type pgbouncer struct {
	*process
	port int
	mode string // session | transaction
}

// scramSecret reads the service role's stored SCRAM verifier: PgBouncer
// authenticates clients with it and, as it then holds the client's SCRAM
// keys, logs in to the server with them too (no plain password on disk).
func scramSecret(ctx context.Context, c *cluster.Cluster) (string, error) {
	conn, err := pgx.Connect(ctx, c.SuperuserDSN(c.Database))
	if err != nil {
		return "", fmt.Errorf("read SCRAM secret: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var secret string
	if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", c.ServiceUser).Scan(&secret); err != nil {
		return "", fmt.Errorf("read SCRAM secret of %s: %w", c.ServiceUser, err)
	}
	if !strings.HasPrefix(secret, "SCRAM-SHA-256$") {
		return "", fmt.Errorf("role %s has no SCRAM-SHA-256 secret", c.ServiceUser)
	}
	return secret, nil
}

// authFileLine is one auth_file entry: "user" "secret", each quoted with
// embedded double quotes doubled, as PgBouncer reads them.
func authFileLine(user, secret string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	return q(user) + " " + q(secret) + "\n"
}

// pgbouncerIni is PgBouncer's configuration. The server connection sets
// the tenant setting once when it is opened (connect_query), as an
// application on PgBouncer would have to: every client of a run is the
// same tenant. server_reset_query only deallocates prepared statements, so
// a reused server connection keeps the tenant setting (session mode;
// transaction mode never resets). In session mode every client holds a
// server connection, so the pool is as large as the largest run; in
// transaction mode it is poolSize, the size pgtenant-transaction gets too.
func pgbouncerIni(dir string, port int, mode string, c *cluster.Cluster, tenant int64, maxClients, poolSize int) string {
	pool := maxClients
	if mode == "transaction" {
		pool = poolSize
	}
	return fmt.Sprintf(`[databases]
%[1]s = host=127.0.0.1 port=%[2]d dbname=%[1]s connect_query='SET %[3]s = %[4]d'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[5]d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %[6]s
pool_mode = %[7]s
server_reset_query = DEALLOCATE ALL
max_client_conn = %[8]d
default_pool_size = %[9]d
min_pool_size = 0
reserve_pool_size = 0
max_db_connections = 0
ignore_startup_parameters = extra_float_digits
logfile = %[10]s
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
`, c.Database, c.Port, TenantSetting, tenant, port, filepath.Join(dir, "userlist.txt"), mode,
		maxClients+100, pool, filepath.Join(dir, "pgbouncer.log"))
}

// startPgBouncer writes the configuration into a fresh directory under
// workDir (owned by the postgres OS user when we are root: PgBouncer
// refuses to run as root) and starts PgBouncer in the foreground.
func startPgBouncer(ctx context.Context, bin, workDir, mode string, c *cluster.Cluster, o *Options) (*pgbouncer, error) {
	cred, uid, gid, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(workDir, "pgbouncer-"+mode+"-")
	if err != nil {
		return nil, fmt.Errorf("pgbouncer: %w", err)
	}
	secret, err := scramSecret(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("pgbouncer: %w", err)
	}
	return startOnFreePorts(func() (*pgbouncer, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		files := map[string]string{
			"userlist.txt":  authFileLine(c.ServiceUser, secret),
			"pgbouncer.ini": pgbouncerIni(dir, port, mode, c, o.Tenant, o.maxClients(), o.PoolSize),
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				return nil, fmt.Errorf("pgbouncer: %w", err)
			}
		}
		if cred != nil {
			for _, p := range []string{dir, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.ini")} {
				if err := os.Chown(p, uid, gid); err != nil {
					return nil, fmt.Errorf("pgbouncer: chown %s: %w", p, err)
				}
			}
		}
		cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
		cmd.Dir = dir
		p, err := startProcess("pgbouncer-"+mode, cmd, filepath.Join(dir, "stderr.log"), cred)
		if err != nil {
			return nil, err
		}
		b := &pgbouncer{process: p, port: port, mode: mode}
		ep := b.endpoint(c)
		if err := p.waitReady(ctx, 30*time.Second, func(ctx context.Context) error { return probe(ctx, ep) }); err != nil {
			_ = p.stop(5 * time.Second)
			return nil, err
		}
		return b, nil
	})
}

// endpoint is how pgbench reaches the cluster through this PgBouncer.
func (b *pgbouncer) endpoint(c *cluster.Cluster) Endpoint {
	return Endpoint{Host: "127.0.0.1", Port: b.port, User: c.ServiceUser, Database: c.Database, Password: c.ServicePassword}
}

// probe connects to ep and checks that the tenant context is in place.
func probe(ctx context.Context, ep Endpoint) error {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		ep.Host, ep.Port, ep.User, ep.Database))
	if err != nil {
		return err
	}
	cfg.Password = ep.Password
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if ep.Options != "" {
		cfg.RuntimeParams["options"] = ep.Options
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	var tenant string
	if err := conn.QueryRow(ctx, "SELECT current_setting('"+TenantSetting+"', true)").Scan(&tenant); err != nil {
		return fmt.Errorf("read tenant setting: %w", err)
	}
	if tenant == "" {
		return errors.New("tenant setting is empty on the server connection")
	}
	if _, err := strconv.ParseInt(tenant, 10, 64); err != nil {
		return fmt.Errorf("tenant setting %q is not an account id", tenant)
	}
	return nil
}
