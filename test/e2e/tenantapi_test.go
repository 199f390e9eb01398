package e2e

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/tenantapi"
	"github.com/pgtenant/pgtenant/test/proxytest"
)

// tenantAPIEnv runs the proxy with a real audit in eu-west, has tenants 42
// and 7 make some accesses (allowed and denied), and serves the tenant API
// over the same configuration and audit.
func tenantAPIEnv(t *testing.T) (*proxytest.Env, *httptest.Server, *cluster.Cluster) {
	t.Helper()
	env, rec, c := auditEnvOn(t, "tenant-api", "strict", "normalized")
	ctx := context.Background()
	for _, acc := range []string{"42", "7"} {
		conn := connect(t, env.DSN(t, acc, "eu-west"))
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM orders WHERE account_id = "+acc); err != nil {
			t.Fatalf("a pinned read as %s: %v", acc, err)
		}
		if _, err := conn.Exec(ctx, "SELECT count(*) FROM orders"); err == nil {
			t.Fatal("an unscoped read was allowed")
		}
		conn.Close(ctx)
	}
	v, err := auth.NewVerifier(env.Config.Auth)
	if err != nil {
		t.Fatal(err)
	}
	h := tenantapi.New(tenantapi.Options{
		Auth: v, Roles: env.Config.TenantAPI.Roles, Regions: env.Config.Regions, Policy: env.Config.Policy,
		PolicyVersion: "test",
		Attest: func(ctx context.Context, region string) isolation.Report {
			return isolation.Inspect(ctx, region, env.Config.Regions[region], isolation.Options{ParserActive: true, Policy: env.Config.Policy})
		},
		Auditor: rec,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return env, srv, c
}

// awaitAPI polls path as token until the body contains want (events reach
// the chain asynchronously), or fails after 15 s.
func awaitAPI(t *testing.T, srv *httptest.Server, path, token, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, body := apiGet(t, srv, path, token)
		if resp.StatusCode == http.StatusOK && strings.Contains(body, want) {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no %q after 15s: %d %s", path, want, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func apiGet(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func roleToken(t *testing.T, account, role string, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{"account_id": account, "data_region": "eu-west", "sub": "user-" + account,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	if role != "" {
		claims["role"] = role
	}
	for k, v := range extra {
		claims[k] = v
	}
	return proxytest.SignedToken(t, claims)
}

func TestTenantAPIScoping(t *testing.T) {
	_, srv, c := tenantAPIEnv(t)
	// Each tenant's events are integrated into its own chain in their own
	// round, so one tenant's being readable says nothing of the other's.
	awaitAPI(t, srv, "/v1/audit?verdict=deny", roleToken(t, "42", "viewer", nil), `"verdict":"deny"`)
	awaitAPI(t, srv, "/v1/audit?verdict=deny", roleToken(t, "7", "viewer", nil), `"verdict":"deny"`)

	t.Run("no token is 401", func(t *testing.T) {
		for _, p := range []string{"/v1/audit", "/v1/audit/export", "/v1/isolation-proof"} {
			resp, _ := apiGet(t, srv, p, "")
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s without a token: %d, want 401 with WWW-Authenticate", p, resp.StatusCode)
			}
		}
	})
	t.Run("forged, expired and wrong-key tokens are 401", func(t *testing.T) {
		good := roleToken(t, "42", "auditor", nil)
		parts := strings.Split(good, ".")
		forgedClaims := roleToken(t, "7", "owner", nil)
		forged := parts[0] + "." + strings.Split(forgedClaims, ".")[1] + "." + parts[2]
		expired := roleToken(t, "42", "auditor", map[string]any{"exp": time.Now().Add(-time.Hour).Unix()})
		for name, tok := range map[string]string{"forged payload": forged, "expired": expired, "garbage": "abc.def.ghi"} {
			if resp, _ := apiGet(t, srv, "/v1/audit", tok); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, resp.StatusCode)
			}
		}
	})
	t.Run("expired and over-long support tokens are 401", func(t *testing.T) {
		now := time.Now()
		support := func(iat, exp time.Time) string {
			return roleToken(t, "42", "auditor", map[string]any{"act": map[string]any{"sub": "agent@support.example"},
				"purpose": "INC-1234", "iat": iat.Unix(), "exp": exp.Unix()})
		}
		if resp, body := apiGet(t, srv, "/v1/audit", support(now.Add(-time.Minute), now.Add(time.Hour))); resp.StatusCode != http.StatusOK {
			t.Fatalf("a valid support token: %d %s", resp.StatusCode, body)
		}
		for name, tok := range map[string]string{
			"expired":      support(now.Add(-3*time.Hour), now.Add(-2*time.Hour)),
			"over max_ttl": support(now.Add(-time.Hour), now.Add(24*time.Hour)),
			"no purpose":   roleToken(t, "42", "auditor", map[string]any{"act": map[string]any{"sub": "agent@support.example"}}),
		} {
			if resp, _ := apiGet(t, srv, "/v1/audit", tok); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("support token %s: %d, want 401", name, resp.StatusCode)
			}
		}
	})
	t.Run("another tenant's token sees its own chain only", func(t *testing.T) {
		_, body := apiGet(t, srv, "/v1/audit?limit=10000", roleToken(t, "7", "owner", nil))
		if strings.Contains(body, `"chain_id":"42"`) || !strings.Contains(body, `"chain_id":"7"`) {
			t.Fatalf("tenant 7's audit: %s", body)
		}
	})
	t.Run("role not listed or missing is 403", func(t *testing.T) {
		for _, role := range []string{"", "support-bot", "OWNER"} {
			resp, body := apiGet(t, srv, "/v1/audit", roleToken(t, "42", role, nil))
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("role %q: %d %s, want 403", role, resp.StatusCode, body)
			}
		}
	})
	t.Run("events are the token's tenant's only, whatever the query says", func(t *testing.T) {
		tok := roleToken(t, "42", "viewer", nil)
		for _, q := range []string{"", "?account_id=7", "?chain_id=7", "?subject=user-7", "?kind=statement&verdict=deny"} {
			resp, body := apiGet(t, srv, "/v1/audit"+q, tok)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%q: %d %s", q, resp.StatusCode, body)
			}
			for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
				if line == "" {
					continue
				}
				var e audit.RowJSON
				if err := json.Unmarshal([]byte(line), &e); err != nil {
					t.Fatalf("%q: bad line %q: %v", q, line, err)
				}
				if e.ChainID != "42" || (e.AccountID != nil && *e.AccountID != "42") {
					t.Fatalf("%q: tenant 42 was shown chain %s / account %v", q, e.ChainID, e.AccountID)
				}
			}
		}
		_, denied := apiGet(t, srv, "/v1/audit?kind=statement&verdict=deny", tok)
		if !strings.Contains(denied, `"verdict":"deny"`) || strings.Contains(denied, `"verdict":"allow"`) {
			t.Fatalf("verdict filter: %s", denied)
		}
	})
	t.Run("cursor pages cover the chain once, in order", func(t *testing.T) {
		tok := roleToken(t, "42", "auditor", nil)
		var seqs []int64
		path := "/v1/audit?limit=2"
		for range 100 {
			resp, body := apiGet(t, srv, path, tok)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
			}
			sc := bufio.NewScanner(strings.NewReader(body))
			for sc.Scan() {
				var e audit.RowJSON
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				seqs = append(seqs, e.Seq)
			}
			next := resp.Header.Get("X-Next-Cursor")
			if next == "" {
				break
			}
			path = "/v1/audit?limit=2&cursor=" + next
		}
		if len(seqs) < 3 {
			t.Fatalf("only %d events for tenant 42", len(seqs))
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Fatalf("pages gave seqs %v, want 1..n once each", seqs)
			}
		}
	})
	t.Run("csv", func(t *testing.T) {
		resp, body := apiGet(t, srv, "/v1/audit?format=csv", roleToken(t, "42", "viewer", nil))
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
			t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if err != nil || len(recs) < 2 || recs[0][0] != "seq" || strings.Join(recs[0][len(recs[0])-5:], ",") != "role,actor,purpose,ticket,rewritten" {
			t.Fatalf("csv: %v %q", err, body)
		}
	})
	t.Run("bad parameters are 400", func(t *testing.T) {
		tok := roleToken(t, "42", "viewer", nil)
		for _, q := range []string{"?limit=0", "?limit=100000", "?cursor=-1", "?since=yesterday", "?format=xml", "?verdict=maybe"} {
			if resp, _ := apiGet(t, srv, "/v1/audit"+q, tok); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", q, resp.StatusCode)
			}
		}
	})
	t.Run("the export verifies offline and holds only the tenant's chain", func(t *testing.T) {
		resp, body := apiGet(t, srv, "/v1/audit/export", roleToken(t, "42", "auditor", nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if strings.Contains(body, `"chain_id":"7"`) {
			t.Fatal("tenant 42's export holds tenant 7's chain")
		}
		rep, err := audit.VerifyExport(strings.NewReader(body), nil)
		if err != nil {
			t.Fatalf("verify export: %v", err)
		}
		if !rep.OK {
			t.Fatalf("export of tenant 42 does not verify: %+v", rep)
		}
	})
	t.Run("isolation proof counts the tenant's own rows", func(t *testing.T) {
		resp, body := apiGet(t, srv, "/v1/isolation-proof", roleToken(t, "7", "owner", nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var a tenantapi.Attestation
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatal(err)
		}
		if a.Account != "7" || a.Region != "eu-west" || a.Layers.Parser != isolation.Active || len(a.YourData) == 0 {
			t.Fatalf("attestation = %+v", a)
		}
		if len(a.Errors) > 0 {
			t.Fatalf("attestation errors: %v", a.Errors)
		}
		// The demo seeds rows for 42 and 7: tenant 7's count must equal
		// the rows a direct, superuser count finds for 7 alone.
		for _, d := range a.YourData {
			if d.Table != "public.orders" {
				continue
			}
			var want int64
			if err := connect(t, c.SuperuserDSN(c.Database)).QueryRow(ctxT(t), "SELECT count(*) FROM public.orders WHERE account_id = 7").Scan(&want); err != nil {
				t.Fatal(err)
			}
			if want == 0 || d.Rows != want {
				t.Fatalf("your_data for orders = %d, want tenant 7's %d (> 0)", d.Rows, want)
			}
		}
	})
	t.Run("every read is audited as kind api", func(t *testing.T) {
		tok := roleToken(t, "42", "viewer", nil)
		body := awaitAPI(t, srv, "/v1/audit?kind=api", tok, "GET /v1/audit")
		if !strings.Contains(body, `"kind":"api"`) || strings.Contains(body, `"kind":"statement"`) {
			t.Fatalf("kind filter: %s", body)
		}
		awaitAPI(t, srv, "/v1/audit?kind=api&verdict=deny", tok, "role_not_allowed")
	})
}
