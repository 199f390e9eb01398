package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/pgtenant/pgtenant/cluster"
)

// sharedDirs collects the directories of shared clusters; TestMain checks
// that Main's logic removed them after the tests.
var (
	sharedDirsMu sync.Mutex
	sharedDirs   []string
)

func TestMain(m *testing.M) {
	code := run(m)
	sharedDirsMu.Lock()
	for _, d := range sharedDirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "FAIL: shared cluster dir %s survived Main (stat err %v)\n", d, err)
			code = 1
		}
	}
	sharedDirsMu.Unlock()
	os.Exit(code)
}

func recordShared(c *cluster.Cluster) {
	sharedDirsMu.Lock()
	defer sharedDirsMu.Unlock()
	sharedDirs = append(sharedDirs, c.Dir)
}

func TestSharedIsOnePerName(t *testing.T) {
	var wg sync.WaitGroup
	got := make([]*cluster.Cluster, 4)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = Shared(t, "one")
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, c := range got[1:] {
		if c != got[0] {
			t.Fatalf("concurrent Shared(one) returned different clusters: %p %p", got[0], c)
		}
	}
	other := Shared(t, "two")
	if other == got[0] || other.Port == got[0].Port || other.Name != "two" {
		t.Errorf("Shared(two) = %s, Shared(one) = %s", other, got[0])
	}
	recordShared(got[0])
	recordShared(other)
	var n int
	if err := Conn(t, other.ServiceDSN()).QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Errorf("query shared cluster: %d %v", n, err)
	}
}

func TestStartAndConnAreCleanedUp(t *testing.T) {
	var c *cluster.Cluster
	var connClosed func() bool
	t.Run("inner", func(t *testing.T) {
		c = Start(t, cluster.Config{Name: "inner", Database: "db1"})
		conn := Conn(t, c.ServiceDSN())
		var db string
		if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil || db != "db1" {
			t.Fatalf("current_database = %q, %v", db, err)
		}
		connClosed = conn.IsClosed
	})
	if c == nil {
		t.FailNow()
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster dir %s survived the test (stat err %v)", c.Dir, err)
	}
	if !connClosed() {
		t.Error("connection not closed after the test")
	}
	live.Lock()
	n := len(live.m)
	live.Unlock()
	if n != 0 {
		t.Errorf("%d clusters still tracked after cleanup", n)
	}
}

// fatalTB records Fatalf instead of failing the real test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// callFatal runs fn with a fatalTB in its own goroutine and returns what
// it passed to Fatalf ("" if it returned normally).
func callFatal(t *testing.T, fn func(tb testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestSharedWithoutMainFails(t *testing.T) {
	shared.Lock()
	shared.inMain = false
	shared.Unlock()
	defer func() {
		shared.Lock()
		shared.inMain = true
		shared.Unlock()
	}()
	msg := callFatal(t, func(tb testing.TB) { Shared(tb, "nomain") })
	if !strings.Contains(msg, "pgtest.Main") {
		t.Errorf("Shared without Main: Fatalf(%q), want a hint to use pgtest.Main", msg)
	}
}

func TestStartAndConnReportErrors(t *testing.T) {
	if msg := callFatal(t, func(tb testing.TB) { Start(tb, cluster.Config{Name: "bad name"}) }); !strings.Contains(msg, "name") {
		t.Errorf("Start with a bad name: Fatalf(%q)", msg)
	}
	if msg := callFatal(t, func(tb testing.TB) { Conn(tb, "postgres://nobody@127.0.0.1:1/x?connect_timeout=2") }); !strings.Contains(msg, "connect") {
		t.Errorf("Conn to a closed port: Fatalf(%q)", msg)
	}
}
