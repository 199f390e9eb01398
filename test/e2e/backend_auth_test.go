package e2e

import (
	"strings"
	"testing"

	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/test/pgtest"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// The service role may authenticate to the region with md5 as well as
// SCRAM-SHA-256 (the default clusters use SCRAM).
func TestBackendMD5Login(t *testing.T) {
	c := pgtest.Start(t, cluster.Config{Name: "md5", HBA: []string{"host all legacy 127.0.0.1/32 md5"}})
	ctx := ctxT(t)
	if err := c.Exec(ctx, c.Database, `SET password_encryption = 'md5';
		CREATE ROLE legacy LOGIN PASSWORD 'legacy-pw' NOSUPERUSER NOBYPASSRLS;
		GRANT CONNECT ON DATABASE app TO legacy;`); err != nil {
		t.Fatal(err)
	}
	env := proxytest.Start(t, proxytest.Options{Configure: func(cfg *config.Config) {
		cfg.Regions["ap-south"] = config.Region{Host: "127.0.0.1", Port: c.Port, User: "legacy", Password: "legacy-pw",
			Database: c.Database, SSLMode: "disable", ConnectTimeout: cfg.Regions["eu-west"].ConnectTimeout}
	}})
	conn := connect(t, env.DSN(t, "42", "ap-south"))
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != "legacy" {
		t.Errorf("logged in as %q, want the region's service role legacy", user)
	}
	// The role has only an md5 verifier, so the login above was md5.
	admin := connect(t, c.SuperuserDSN(c.Database))
	var verifier string
	if err := admin.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'legacy'").Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(verifier, "md5") {
		t.Fatalf("the legacy role's password is stored as %.8s..., not md5: the test would not exercise md5", verifier)
	}
}
