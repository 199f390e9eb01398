package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
)

// Environment variables the generated pgtenant config reads its secrets from.
const (
	envJWTSecret  = "BENCH_JWT_SECRET"
	envPGPassword = "BENCH_PG_PASSWORD"
	benchRegion   = "bench"
)

// buildPgtenant builds ./cmd/pgtenant of the module the harness runs in
// into dir and returns the binary's path.
func buildPgtenant(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "pgtenant")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgtenant")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/pgtenant: %w: %s", err, lastLines(string(out), 10))
	}
	return bin, nil
}

// moduleRoot returns the directory of the pgtenant module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (run the harness from the pgtenant repository, or pass --pgtenant-bin)", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the pgtenant module: run from the repository or pass --pgtenant-bin")
	}
	b, err := os.ReadFile(gomod)
	if err != nil || !strings.Contains(string(b), "module github.com/pgtenant/pgtenant\n") {
		return "", fmt.Errorf("%s is not the pgtenant module: run from the repository or pass --pgtenant-bin", gomod)
	}
	return filepath.Dir(gomod), nil
}

// pgtenantConfig is the generated configuration for one audit mode (noaudit:
// audit.disabled; spool-group: spool with a per-group fsync; transaction:
// audit.disabled and pool.mode transaction with pool.size poolSize): the
// product's defaults (policy on, audit init at start) with a local listen
// port, the bench cluster as the only region and the superuser for audit
// init, writing its audit into auditDB (auditDatabase: each audited target
// has its own). Secrets come from the environment, never from the file.
func pgtenantConfig(port, adminPort int, mode, spoolDir, auditDB string, c *cluster.Cluster, maxConns, poolSize int) map[string]any {
	audit := map[string]any{"mode": mode, "spool_dir": spoolDir}
	switch mode {
	case "noaudit", "transaction":
		audit = map[string]any{"disabled": true, "mode": "async"}
	case "spool-group":
		audit["mode"], audit["spool_fsync"] = "spool", "group"
	}
	region := map[string]any{
		"host": "127.0.0.1", "port": c.Port, "user": c.ServiceUser, "password_env": envPGPassword,
		"database": c.Database, "sslmode": "disable", "admin_user": cluster.Superuser,
	}
	if auditDB != "" {
		region["audit_database"] = auditDB
	}
	cfg := map[string]any{
		"listen":       "127.0.0.1:" + strconv.Itoa(port),
		"admin_listen": "127.0.0.1:" + strconv.Itoa(adminPort), // /metrics: the audit's in-run latencies (scrape.go)
		"log":          map[string]any{"level": "warn", "format": "text"},
		"auth":         map[string]any{"hs256_secret_env": envJWTSecret},
		"regions":      map[string]any{benchRegion: region},
		"audit":        audit,
		"limits":       map[string]any{"max_connections": maxConns, "startup_timeout": "60s", "shutdown_timeout": "10s"},
	}
	if mode == "transaction" {
		// The pool's other keys keep their defaults (min_idle 0, idle_timeout
		// 10m, max_wait 5s), as PgBouncer's do.
		cfg["pool"] = map[string]any{"mode": "transaction", "size": poolSize}
	}
	return cfg
}

// pgtenantProc is a running `pgtenant serve`.
type pgtenantProc struct {
	*process
	port      int
	adminPort int
	mode      string
	token     string
}

// metricsURL is where its admin listener serves /metrics.
func (t *pgtenantProc) metricsURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(t.adminPort) + "/metrics"
}

// newJWTSecret returns a random HS256 secret for this run.
func newJWTSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("jwt secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// auditDatabase is the database an audited pgtenant target writes its
// audit into: one per target, as if each were the only proxy of its region.
// Sharing one would make the first audited target the region's integrator
// for all (one integrator per region): the others' events would go through
// ingest batches and be chained by a process that is not measured, so no
// target would be measured as it runs when deployed alone. "" for targets
// without an audit.
func auditDatabase(target string) string {
	if !isAudited(target) {
		return ""
	}
	return "audit_" + strings.ReplaceAll(strings.TrimPrefix(target, "pgtenant-"), "-", "_")
}

// auditDatabases returns the audit databases of targets, one per audited
// target.
func auditDatabases(targets []string) []string {
	var dbs []string
	for _, name := range targets {
		if db := auditDatabase(name); db != "" {
			dbs = append(dbs, db)
		}
	}
	return dbs
}

// createDatabase creates db in c unless it exists (a target restarted after
// a failed run keeps its audit).
func createDatabase(ctx context.Context, c *cluster.Cluster, db string) error {
	conn, err := pgx.Connect(ctx, c.SuperuserDSN("postgres"))
	if err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db).Scan(&exists); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	return nil
}

// startPgtenant writes the config for mode and runs `pgtenant serve
// --config`, then waits until a tenant can connect through it.
func startPgtenant(ctx context.Context, bin, workDir, mode, secret string, c *cluster.Cluster, o *Options) (*pgtenantProc, error) {
	auditDB := auditDatabase("pgtenant-" + mode)
	if auditDB != "" {
		if err := createDatabase(ctx, c, auditDB); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(workDir, "pgtenant-"+mode+"-")
	if err != nil {
		return nil, fmt.Errorf("pgtenant: %w", err)
	}
	tok, err := auth.Mint(auth.MintOptions{Secret: []byte(secret), Account: strconv.FormatInt(o.Tenant, 10),
		Region: benchRegion, Subject: "pgtenant-bench", TTL: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("pgtenant token: %w", err)
	}
	return startOnFreePorts(func() (*pgtenantProc, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		adminPort, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := pgtenantConfig(port, adminPort, mode, filepath.Join(dir, "spool"), auditDB, c, o.IdleConns+o.maxClients()+100, o.PoolSize)
		b, err := json.MarshalIndent(cfg, "", "  ") // JSON is YAML
		if err != nil {
			return nil, fmt.Errorf("pgtenant config: %w", err)
		}
		cfgPath := filepath.Join(dir, "pgtenant.yaml")
		if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
			return nil, fmt.Errorf("pgtenant config: %w", err)
		}
		cmd := exec.Command(bin, "serve", "--config", cfgPath)
		cmd.Dir = dir
		cmd.Env = append(withoutPG(os.Environ()), envJWTSecret+"="+secret, envPGPassword+"="+c.ServicePassword)
		p, err := startProcess("pgtenant-"+mode, cmd, filepath.Join(dir, "pgtenant.log"), nil)
		if err != nil {
			return nil, err
		}
		t := &pgtenantProc{process: p, port: port, adminPort: adminPort, mode: mode, token: tok}
		ep := t.endpoint(c)
		if err := p.waitReady(ctx, 90*time.Second, func(ctx context.Context) error { return probe(ctx, ep) }); err != nil {
			_ = p.stop(5 * time.Second)
			return nil, err
		}
		return t, nil
	})
}

// endpoint is how pgbench reaches the cluster through pgtenant: the token
// is the password, the user name is only recorded.
func (t *pgtenantProc) endpoint(c *cluster.Cluster) Endpoint {
	return Endpoint{Host: "127.0.0.1", Port: t.port, User: "bench", Database: c.Database, Password: t.token}
}

// policyEnforced reports whether pgtenant refuses an unscoped read of a
// tenant table (SQLSTATE 42501, "pgtenant:"), i.e. whether the statement
// policy is active in serve; false means only RLS scoped the rows.
func (t *pgtenantProc) policyEnforced(ctx context.Context, c *cluster.Cluster) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	ep := t.endpoint(c)
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable password=%s",
		ep.Host, ep.Port, ep.User, ep.Database, ep.Password))
	if err != nil {
		return false, fmt.Errorf("connect through %s: %w", t.name, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	_, err = conn.Exec(ctx, "SELECT count(*) FROM accounts").ReadAll()
	var pgErr *pgconn.PgError
	switch {
	case ctx.Err() != nil:
		return false, fmt.Errorf("unscoped probe through %s: %w: no answer within %s", t.name, ErrHung, probeTimeout)
	case err == nil:
		return false, nil
	case errors.As(err, &pgErr) && pgErr.Code == "42501" && strings.HasPrefix(pgErr.Message, "pgtenant:"):
		return true, nil
	}
	return false, fmt.Errorf("unscoped probe through %s: %w", t.name, err)
}

// probeTimeout bounds one probe statement.
const probeTimeout = 30 * time.Second

// withoutPG drops PG* variables so they cannot redirect the child.
func withoutPG(env []string) []string {
	var out []string
	for _, kv := range env {
		// libpq's variables (PGHOST, PGUSER, ...) would redirect the
		// children; pgtenant's own (PGTENANT_PPROF_ADDR for profiling a
		// run) pass through.
		if !strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "PGTENANT_") {
			out = append(out, kv)
		}
	}
	return out
}
