package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/admin"
	"github.com/pgtenant/pgtenant/cluster"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/metrics"
	"github.com/pgtenant/pgtenant/test/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// start serves s on 127.0.0.1:0 and returns its base URL; the server is
// shut down (and must return) at cleanup.
func start(t *testing.T, o admin.Options) string {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.New(o).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("admin server did not shut down")
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestHealthzAndMetrics(t *testing.T) {
	m := metrics.New(metrics.Options{Regions: []string{"eu-west"}, NoRuntimeCollectors: true})
	m.ClientAccepted()
	base := start(t, admin.Options{Metrics: m.Handler()})
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "pgtenant_client_connections 1\n") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if code, _ := get(t, base+"/nope"); code != http.StatusNotFound {
		t.Fatalf("/nope: %d", code)
	}
	resp, err := http.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d", resp.StatusCode)
	}
}

type readyBody struct {
	Ready  bool `json:"ready"`
	Checks []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	} `json:"checks"`
}

func TestReadyzFlipsWithChecks(t *testing.T) {
	var euDown, auditDown atomic.Bool
	var probes atomic.Int32
	var lastUp atomic.Bool
	base := start(t, admin.Options{
		RegionChecks: map[string]admin.CheckFunc{
			"eu-west": func(context.Context) error {
				if euDown.Load() {
					return errors.New("connection refused")
				}
				return nil
			},
			"us-east": func(context.Context) error { return nil },
		},
		AuditCheck: func(context.Context) error {
			if auditDown.Load() {
				return errors.New("spool full")
			}
			return nil
		},
		OnRegionProbe: func(region string, up bool) {
			if region == "eu-west" {
				probes.Add(1)
				lastUp.Store(up)
			}
		},
	})
	read := func(wantCode int) readyBody {
		t.Helper()
		code, body := get(t, base+"/readyz")
		if code != wantCode {
			t.Fatalf("/readyz: %d, want %d: %s", code, wantCode, body)
		}
		var rb readyBody
		if err := json.Unmarshal([]byte(body), &rb); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		return rb
	}
	if rb := read(http.StatusOK); !rb.Ready || len(rb.Checks) != 3 {
		t.Fatalf("all up: %+v", rb)
	}
	euDown.Store(true)
	rb := read(http.StatusServiceUnavailable)
	if rb.Ready || rb.Checks[1].Name != "region:eu-west" || rb.Checks[1].OK || rb.Checks[1].Error != "connection refused" || !rb.Checks[2].OK {
		t.Fatalf("eu-west down: %+v", rb)
	}
	if lastUp.Load() || probes.Load() != 2 {
		t.Fatalf("OnRegionProbe: %d probes, last up %v", probes.Load(), lastUp.Load())
	}
	euDown.Store(false)
	auditDown.Store(true)
	rb = read(http.StatusServiceUnavailable)
	if rb.Checks[0].Name != "audit" || rb.Checks[0].OK || rb.Checks[0].Error != "spool full" || !rb.Checks[1].OK {
		t.Fatalf("audit down: %+v", rb)
	}
	auditDown.Store(false)
	read(http.StatusOK)
}

func TestReadyzBoundsHungAndPanickingChecks(t *testing.T) {
	base := start(t, admin.Options{
		CheckTimeout: 100 * time.Millisecond,
		RegionChecks: map[string]admin.CheckFunc{
			"hung":  func(context.Context) error { select {} },
			"panic": func(context.Context) error { panic("boom") },
		},
	})
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline exceeded") || !strings.Contains(body, "check panicked") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
}

func TestRegionCheckAgainstRealCluster(t *testing.T) {
	c := pgtest.Shared(t, "admin")
	good := regionOf(c)
	bad := good
	bad.Password = "wrong-password"
	base := start(t, admin.Options{RegionChecks: admin.RegionChecks(map[string]config.Region{"eu-west": good})})
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with a reachable region: %d %s", code, body)
	}
	base = start(t, admin.Options{RegionChecks: admin.RegionChecks(map[string]config.Region{"eu-west": bad})})
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "region eu-west unreachable") {
		t.Fatalf("/readyz with a wrong password: %d %s", code, body)
	}
	if strings.Contains(body, "wrong-password") {
		t.Fatalf("/readyz leaks the password: %s", body)
	}
}

func regionOf(c *cluster.Cluster) config.Region {
	return config.Region{Host: "127.0.0.1", Port: c.Port, User: c.ServiceUser, Password: c.ServicePassword,
		Database: c.Database, SSLMode: "disable", ConnectTimeout: 5 * time.Second}
}

func TestIsolationProofAgainstRealCluster(t *testing.T) {
	c := pgtest.Shared(t, "admin")
	ctx := context.Background()
	exec := func(db, sql string) {
		t.Helper()
		if err := c.Exec(ctx, db, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(c.Database, `
CREATE TABLE public.invoices (id bigint PRIMARY KEY, account_id bigint NOT NULL);
ALTER TABLE public.invoices ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON public.invoices USING (account_id = current_setting('app.current_account_id')::bigint);
GRANT SELECT, INSERT ON public.invoices TO `+c.ServiceUser+`;
CREATE SCHEMA pgtenant_audit;
CREATE TABLE pgtenant_audit.events (chain_id text, seq bigint, ts timestamptz);
CREATE FUNCTION pgtenant_audit.forbid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'append-only'; END $$;
CREATE TRIGGER no_change BEFORE UPDATE OR DELETE ON pgtenant_audit.events FOR EACH ROW EXECUTE FUNCTION pgtenant_audit.forbid();
CREATE TRIGGER no_truncate BEFORE TRUNCATE ON pgtenant_audit.events EXECUTE FUNCTION pgtenant_audit.forbid();
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_change;
ALTER TABLE pgtenant_audit.events ENABLE ALWAYS TRIGGER no_truncate;
`)
	t.Cleanup(func() {
		_ = c.Exec(ctx, "postgres", "ALTER ROLE "+c.ServiceUser+" NOSUPERUSER")
		_ = c.Exec(ctx, c.Database, "DROP TABLE public.invoices; DROP SCHEMA pgtenant_audit CASCADE")
	})
	verified := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	base := start(t, admin.Options{
		Regions: map[string]config.Region{
			"eu-west": regionOf(c),
			"us-east": {Host: "127.0.0.1", Port: 1, User: "app", Database: "app", ConnectTimeout: time.Second},
		},
		Proof: isolation.Options{
			Policy: config.Default().Policy, ParserActive: true, PolicyVersion: "v1.2.3",
			LastVerification: func(region string) (isolation.Verification, bool) {
				return isolation.Verification{Time: verified, Result: "intact"}, region == "eu-west"
			},
		},
	})
	proof := func() (admin.Proof, map[string]isolation.Report) {
		t.Helper()
		code, body := get(t, base+"/isolation-proof")
		if code != http.StatusOK {
			t.Fatalf("/isolation-proof: %d %s", code, body)
		}
		var p admin.Proof
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		byName := map[string]isolation.Report{}
		for _, r := range p.Regions {
			byName[r.Region] = r
		}
		return p, byName
	}

	// Not forced: the RLS layer is missing.
	p, regions := proof()
	eu := regions["eu-west"]
	if p.ParserEnforcement != isolation.Active || p.PolicyVersion != "v1.2.3" || p.Legend[isolation.DeployedInert] == "" {
		t.Fatalf("proxy fields: %+v", p)
	}
	if len(eu.RLS.Tables) != 1 || eu.RLS.Tables[0].Table != "public.invoices" || eu.RLS.Tables[0].Status != isolation.Missing || eu.RLS.Status != isolation.Missing {
		t.Fatalf("eu-west rls before FORCE: %+v", eu.RLS)
	}
	if eu.Audit.Status != isolation.Active || eu.Role.Status != isolation.Active {
		t.Fatalf("eu-west audit %+v role %+v", eu.Audit, eu.Role)
	}
	if eu.LastVerification == nil || !eu.LastVerification.Time.Equal(verified) || eu.LastVerification.Result != "intact" {
		t.Fatalf("last verification %+v", eu.LastVerification)
	}
	if us := regions["us-east"]; us.Status != isolation.Unknown || us.Error == "" || us.LastVerification != nil {
		t.Fatalf("us-east (unreachable): %+v", us)
	}

	// Forced: active.
	exec(c.Database, "ALTER TABLE public.invoices FORCE ROW LEVEL SECURITY")
	_, regions = proof()
	if eu := regions["eu-west"]; eu.Status != isolation.Active || eu.RLS.Tables[0].Status != isolation.Active {
		t.Fatalf("eu-west after FORCE: %+v", eu)
	}

	// Superuser service role: the role layer is missing, RLS is inert.
	exec("postgres", "ALTER ROLE "+c.ServiceUser+" SUPERUSER")
	p, regions = proof()
	eu = regions["eu-west"]
	if eu.Role.Status != isolation.Missing || eu.RLS.Status != isolation.DeployedInert || eu.Status != isolation.Missing || p.Status != isolation.Unknown {
		t.Fatalf("superuser: overall %s, eu-west %+v", p.Status, eu)
	}
	exec("postgres", "ALTER ROLE "+c.ServiceUser+" NOSUPERUSER")
	if _, regions = proof(); regions["eu-west"].Status != isolation.Active {
		t.Fatalf("after NOSUPERUSER: %+v", regions["eu-west"])
	}
}

func TestRunRefusesBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = admin.New(admin.Options{Addr: ln.Addr().String()}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "admin: listen") {
		t.Fatalf("Run on a busy address: %v", err)
	}
}

func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	o := admin.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		RegionChecks: map[string]admin.CheckFunc{"slow": func(ctx context.Context) error {
			close(entered)
			<-release
			return nil
		}},
		CheckTimeout: time.Minute,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- admin.New(o).Serve(ctx, ln) }()
	codec := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/readyz")
		if err != nil {
			codec <- -1
			return
		}
		resp.Body.Close()
		codec <- resp.StatusCode
	}()
	<-entered
	cancel()
	// Shutdown has begun; the in-flight request must still complete.
	close(release)
	if code := <-codec; code != http.StatusOK {
		t.Fatalf("in-flight request got %d", code)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}
