package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/cluster"
)

// startTimeout bounds starting one cluster (initdb + start + bootstrap).
const startTimeout = 2 * time.Minute

// Start starts a cluster for t and closes it (removing its directory) in
// t.Cleanup. It skips t only when no PostgreSQL binaries are installed.
func Start(t testing.TB, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	skipWithoutBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: start cluster: %v", err)
	}
	track(c)
	t.Cleanup(func() {
		untrack(c)
		if err := c.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// live holds the clusters of Start not yet cleaned up, so that Main can
// close them when the test binary is interrupted.
var live = struct {
	sync.Mutex
	m map[*cluster.Cluster]bool
}{m: map[*cluster.Cluster]bool{}}

func track(c *cluster.Cluster) {
	live.Lock()
	defer live.Unlock()
	live.m[c] = true
}

func untrack(c *cluster.Cluster) {
	live.Lock()
	defer live.Unlock()
	delete(live.m, c)
}

// skipWithoutBinaries skips t when no PostgreSQL server binaries exist.
func skipWithoutBinaries(t testing.TB) {
	t.Helper()
	if _, err := cluster.BinDir(); err != nil {
		if errors.Is(err, cluster.ErrNoBinaries) {
			t.Skipf("pgtest: %v", err)
		}
		t.Fatalf("pgtest: %v", err)
	}
}

// shared holds the clusters of Shared, keyed by name, until Main closes them.
var shared = struct {
	sync.Mutex
	inMain   bool
	clusters map[string]*sharedCluster
}{clusters: map[string]*sharedCluster{}}

// sharedCluster is started once; later callers wait for the first start.
type sharedCluster struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

// Shared returns the test binary's cluster called name, starting it on first
// use (concurrent callers wait for it). Main closes it after all tests; a
// test binary whose TestMain does not call Main fails here rather than leak
// a running server.
func Shared(t testing.TB, name string) *cluster.Cluster {
	t.Helper()
	skipWithoutBinaries(t)
	shared.Lock()
	if !shared.inMain {
		shared.Unlock()
		t.Fatalf("pgtest: Shared(%q) needs `func TestMain(m *testing.M) { pgtest.Main(m) }` in this package", name)
	}
	sc, ok := shared.clusters[name]
	if !ok {
		sc = &sharedCluster{}
		shared.clusters[name] = sc
	}
	shared.Unlock()
	sc.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		sc.c, sc.err = cluster.Start(ctx, cluster.Config{Name: name})
	})
	if sc.err != nil {
		t.Fatalf("pgtest: start shared cluster %q: %v", name, sc.err)
	}
	return sc.c
}

// Main runs the tests, closes the shared clusters and exits with the tests'
// status (or 1 if a cluster fails to close). Call it from TestMain. On
// SIGINT or SIGTERM it closes every cluster of pgtest and exits at once.
func Main(m *testing.M) {
	os.Exit(run(m))
}

// MainCleanup is Main that also runs cleanup after the tests and the shared
// clusters are done (e.g. to remove a binary the tests built), before exiting.
func MainCleanup(m *testing.M, cleanup func()) {
	code := run(m)
	cleanup()
	os.Exit(code)
}

// run is Main without os.Exit.
func run(m interface{ Run() int }) int {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "pgtest: %v: closing clusters\n", sig)
			closeAll()
			os.Exit(128 + int(sig.(syscall.Signal)))
		case <-done:
		}
	}()
	code := m.Run()
	signal.Stop(sigs)
	close(done)
	if err := closeShared(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// closeAll closes the shared clusters and those of running tests.
func closeAll() {
	live.Lock()
	cs := make([]*cluster.Cluster, 0, len(live.m))
	for c := range live.m {
		cs = append(cs, c)
	}
	live.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	_ = closeShared()
}

// closeShared closes and forgets every shared cluster.
func closeShared() error {
	shared.Lock()
	defer shared.Unlock()
	var errs []error
	for name, sc := range shared.clusters {
		if sc.c != nil {
			if err := sc.c.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		delete(shared.clusters, name)
	}
	return errors.Join(errs...)
}

// Conn connects to dsn and closes the connection in t.Cleanup.
func Conn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	})
	return conn
}
