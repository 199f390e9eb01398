package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDemoCommand runs `pgtenant demo` as a user would: it must print
// working psql connection strings for two tenants in two regions and clean
// up on Ctrl-C.
func TestDemoCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters and the binary")
	}
	cmd := exec.Command(binary(t), "demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	urls := make(chan []string, 1)
	go func() {
		var found []string
		re := regexp.MustCompile(`psql '([^']+)'`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found = append(found, m[1])
			}
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				urls <- found
				return
			}
		}
		close(urls)
	}()
	var found []string
	select {
	case found = <-urls:
	case <-time.After(90 * time.Second):
		t.Fatal("demo did not become ready")
	}
	if len(found) != 2 {
		t.Fatalf("demo printed %d connection strings, want 2", len(found))
	}
	ctx := ctxT(t)
	for i, want := range []string{"42", "7"} {
		conn, err := pgx.Connect(ctx, found[i])
		if err != nil {
			t.Fatalf("printed connection string %d does not work: %v", i, err)
		}
		var account string
		var tenants int
		if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_account_id'), (SELECT count(DISTINCT account_id) FROM orders WHERE account_id = "+want+")").Scan(&account, &tenants); err != nil {
			t.Fatal(err)
		}
		if account != want || tenants != 1 {
			t.Errorf("connection %d: account %q, tenants seen %d", i, account, tenants)
		}
		conn.Close(context.Background())
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exit after Ctrl-C: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("demo did not stop on Ctrl-C")
	}
}
