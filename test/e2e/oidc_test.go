package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/config"
)

// The OpenID provider of the identity tests is zitadel/oidc's example OP, a
// real provider built from the Go module proxy (the same module zitadel's
// certified OP library ships). It issues RS256 ID tokens for users from a
// JSON file, publishes discovery metadata and a JWKS, and draws a new
// signing key (a new kid) at every start: restarting it rotates the key.
const oidcOPModule = "github.com/zitadel/oidc/v3/example/server@v3.52.0"

var oidcOPBuild struct {
	once sync.Once
	path string
	err  error
}

// oidcOPBinary returns the example OP's binary, building it with go install
// into the user cache directory on first use (scripts/deps.sh does the same
// ahead of time).
func oidcOPBinary(t *testing.T) string {
	t.Helper()
	oidcOPBuild.once.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			oidcOPBuild.err = err
			return
		}
		dir := filepath.Join(cache, "pgtenant-test", "zitadel-oidc-v3.52.0")
		oidcOPBuild.path = filepath.Join(dir, "server")
		if _, err := os.Stat(oidcOPBuild.path); err == nil {
			return
		}
		cmd := exec.Command("go", "install", oidcOPModule)
		cmd.Dir = os.TempDir() // outside this module: go install pkg@version
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			oidcOPBuild.err = fmt.Errorf("go install %s: %v\n%s", oidcOPModule, err, out)
		}
	})
	if oidcOPBuild.err != nil {
		t.Fatalf("OIDC provider: %v", oidcOPBuild.err)
	}
	return oidcOPBuild.path
}

// oidcOP is a running example OP on a fixed loopback port.
type oidcOP struct {
	bin, users string
	port       int
	issuer     string
	cmd        *exec.Cmd
}

// The provider's users. pgtenant reads the tenant, region and role from
// configurable claims; this provider lets a user file set only the standard
// profile claims, so the test maps them: given_name -> account,
// family_name -> region, phone_number -> role (a real deployment maps its
// provider's custom claims the same way, see the README).
const oidcUsers = `{
 "u-viewer": {"ID": "u-viewer", "Username": "vera", "Password": "vera-pw", "FirstName": "42", "LastName": "access", "Phone": "viewer", "PreferredLanguage": "en"},
 "u-owner":  {"ID": "u-owner",  "Username": "otto", "Password": "otto-pw", "FirstName": "42", "LastName": "access", "Phone": "",       "PreferredLanguage": "en"}
}`

func startOIDCOP(t *testing.T) *oidcOP {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real OpenID provider")
	}
	op := &oidcOP{bin: oidcOPBinary(t), users: filepath.Join(t.TempDir(), "users.json")}
	if err := os.WriteFile(op.users, []byte(oidcUsers), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	op.port = ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	op.issuer = fmt.Sprintf("http://localhost:%d/", op.port)
	t.Cleanup(op.stop)
	op.start(t)
	return op
}

func (op *oidcOP) start(t *testing.T) {
	t.Helper()
	op.cmd = exec.Command(op.bin)
	op.cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", op.port), "USERS_FILE="+op.users)
	if err := op.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(op.issuer + ".well-known/openid-configuration")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("OIDC provider did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (op *oidcOP) stop() {
	if op.cmd == nil || op.cmd.Process == nil {
		return
	}
	_ = op.cmd.Process.Kill()
	_ = op.cmd.Wait()
	op.cmd = nil
}

// idToken signs user in through the provider's login form (implicit flow,
// response_type=id_token, so the ID token carries the profile claims) and
// returns the ID token it issues.
func (op *oidcOP) idToken(t *testing.T, user, password string) string {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {"web"}, "redirect_uri": {"http://localhost:9999/auth/callback"},
		"response_type": {"id_token"}, "scope": {"openid profile phone"}, "nonce": {"n-" + user}, "state": {"s"}}
	loc := op.redirect(t, client, http.MethodGet, op.issuer+"auth?"+q.Encode(), nil)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"id": {u.Query().Get("authRequestID")}, "username": {user}, "password": {password}}
	loc = op.redirect(t, client, http.MethodPost, op.issuer+"login/username", form)
	loc = op.redirect(t, client, http.MethodGet, op.resolve(loc), nil)
	u, err = url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	frag, err := url.ParseQuery(u.Fragment)
	if err != nil || frag.Get("id_token") == "" {
		t.Fatalf("no id_token in the provider's redirect %q", loc)
	}
	return frag.Get("id_token")
}

func (op *oidcOP) resolve(loc string) string {
	if strings.HasPrefix(loc, "/") {
		return strings.TrimSuffix(op.issuer, "/") + loc
	}
	return loc
}

// redirect sends one request and returns the Location it redirects to.
func (op *oidcOP) redirect(t *testing.T, client *http.Client, method, target string, form url.Values) string {
	t.Helper()
	var resp *http.Response
	var err error
	if form != nil {
		resp, err = client.PostForm(target, form)
	} else {
		req, _ := http.NewRequest(method, target, nil)
		resp, err = client.Do(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("%s %s: status %d, want a redirect", method, target, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// kid returns the key id in a token's header.
func kid(t *testing.T, token string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	seg, _, _ := strings.Cut(token, ".")
	b, err := decodeSegment(seg)
	if err != nil || json.Unmarshal(b, &h) != nil {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}

// Tokens from a real OpenID provider: keys found by OIDC discovery from
// auth.issuer, roles from a mapped claim, a key rotation picked up through
// the unknown-kid refetch, and connections still authenticated while the
// provider is down (fail-static), while the rotated-out key stays refused.
func TestOIDCProviderTokens(t *testing.T) {
	op := startOIDCOP(t)
	env, _ := accessEnvWith(t, true, func(cfg *config.Config) {
		cfg.Auth.Algorithms = []string{"RS256"}
		cfg.Auth.Issuer, cfg.Auth.Audience = op.issuer, "web"
		cfg.Auth.TenantClaim, cfg.Auth.RegionClaim, cfg.Auth.RoleClaim = "given_name", "family_name", "phone_number"
		cfg.Auth.JWKSRefresh, cfg.Auth.JWKSRefetchInterval = time.Hour, time.Second // rotation only through the unknown-kid refetch
	})
	ctx := ctxT(t)

	viewer := op.idToken(t, "vera", "vera-pw")
	conn := connect(t, env.DSNWithToken(viewer))
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders WHERE account_id = 42").Scan(&n); err != nil {
		t.Fatalf("viewer read: %v", err)
	}
	if _, err := conn.Exec(ctx, "UPDATE orders SET note = 'x' WHERE account_id = 42"); pgCode(err) != "42501" {
		t.Errorf("viewer write: err = %v; want 42501", err)
	}
	owner := op.idToken(t, "otto", "otto-pw")
	oconn := connect(t, env.DSNWithToken(owner))
	if _, err := oconn.Exec(ctx, "UPDATE orders SET note = note WHERE account_id = 42"); err != nil {
		t.Errorf("a token without a role lost write access: %v", err)
	}

	// rotation: the restarted provider signs with a new key
	op.stop()
	op.start(t)
	time.Sleep(1100 * time.Millisecond) // one refetch interval since the last fetch
	rotated := op.idToken(t, "vera", "vera-pw")
	if kid(t, rotated) == kid(t, viewer) {
		t.Fatal("the provider did not rotate its key")
	}
	connect(t, env.DSNWithToken(rotated))

	// outage: the provider is gone. A token naming the rotated-out kid forces
	// a refetch, which fails; that token is refused (its key was revoked by
	// the rotation) and the last good keys keep authenticating.
	op.stop()
	time.Sleep(1100 * time.Millisecond) // one refetch interval
	_, err := connectErr(ctx, env.DSNWithToken(viewer))
	if pgCode(err) != "28000" {
		t.Errorf("token signed with the rotated-out key: err = %v; want 28000", err)
	}
	for i := 0; i < 3; i++ {
		c := connect(t, env.DSNWithToken(rotated))
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
			t.Fatalf("during the outage: %v", err)
		}
	}
}

func decodeSegment(seg string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(seg) }

// connectErr connects and closes at once, returning the connection error.
func connectErr(ctx context.Context, dsn string) (bool, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false, err
	}
	return true, conn.Close(ctx)
}
