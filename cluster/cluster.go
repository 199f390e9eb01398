package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// ErrClosed is returned by methods of a Cluster after Close.
var ErrClosed = errors.New("cluster: closed")

// Cluster is a running (or stopped) throw-away PostgreSQL cluster.
type Cluster struct {
	Name      string // Config.Name
	Dir       string // the cluster's own directory, removed by Close
	DataDir   string // Dir/data (PGDATA)
	SocketDir string // directory of the Unix socket
	BinDir    string // where initdb/pg_ctl/postgres were found
	Port      int    // TCP port on 127.0.0.1
	Superuser string // "postgres"

	ServiceUser, ServicePassword, Database string

	settings    map[string]string
	owner       osUser
	logFile     string
	ownSockDir  bool   // SocketDir is outside Dir and must be removed too
	portReserve bool   // Port is reserved in this process
	killedShm   shmSeg // SysV segment left by Kill, removed by Close

	mu      sync.Mutex
	running bool
	closed  bool
}

// Addr returns the TCP address, "127.0.0.1:<port>".
func (c *Cluster) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.Port) }

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// Start creates and starts a cluster: initdb, configuration, pg_ctl start,
// then the service role and database. On error nothing is left behind.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	owner, err := serverUser()
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	c := &Cluster{
		Name: cfg.Name, BinDir: binDir, Superuser: Superuser,
		ServiceUser: cfg.ServiceUser, ServicePassword: cfg.ServicePassword, Database: cfg.Database,
		settings: maps.Clone(cfg.Settings), owner: owner,
	}
	if err := c.create(ctx, cfg); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cluster %s: %w", cfg.Name, err)
	}
	return c, nil
}

// create does the work of Start on c; the caller closes c on error.
func (c *Cluster) create(ctx context.Context, cfg Config) error {
	parent := cfg.Dir
	if parent == "" {
		parent = defaultParent()
	}
	reapStale(parent)
	dir, err := os.MkdirTemp(parent, dirPrefix+cfg.Name+"-")
	if err != nil {
		return fmt.Errorf("create cluster directory: %w", err)
	}
	c.Dir = dir
	if err := c.owner.own(dir); err != nil {
		return err
	}
	if err := c.owner.checkTraversable(dir); err != nil {
		return err
	}
	c.DataDir = filepath.Join(dir, "data")
	c.logFile = filepath.Join(dir, "postgresql.log")
	if err := c.makeSocketDir(); err != nil {
		return err
	}
	if err := writeOwner(dir, c.SocketDir); err != nil {
		return err
	}
	if err := c.makeDataDir(ctx); err != nil {
		return err
	}
	if err := writeHBA(c.DataDir, cfg.HBA, c.owner); err != nil {
		return err
	}
	if err := includeConf(c.DataDir); err != nil {
		return err
	}
	if err := c.startOnFreePort(ctx, cfg.Port); err != nil {
		return err
	}
	return c.bootstrap(ctx)
}

// makeSocketDir uses Dir/sock unless the socket path would exceed the
// ~107-byte limit of Unix socket names; then a short private temp dir.
func (c *Cluster) makeSocketDir() error {
	sock := filepath.Join(c.Dir, "sock")
	if len(sock)+len("/.s.PGSQL.65535") > 100 {
		d, err := os.MkdirTemp("", "pgsock-")
		if err != nil {
			return fmt.Errorf("create socket directory: %w", err)
		}
		c.SocketDir, c.ownSockDir = d, true
		return c.owner.own(d)
	}
	if err := os.Mkdir(sock, 0o700); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	c.SocketDir = sock
	return c.owner.own(sock)
}
