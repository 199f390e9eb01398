package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pgtenant/pgtenant/audit"
)

var reportScreenshot = flag.String("report-screenshot", "", "write the report page's screenshot to this PNG file (docs/tenant-report.png)")

// browser starts headless Chromium from Debian for t, or skips (fails in CI)
// when it is not installed.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (scripts/deps.sh test installs it)")
		}
		t.Skip("chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 2000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// TestReportPageInBrowser loads the compliance report in real Chromium as an
// auditor would: token in, layers, timeline, denials and the in-browser chain
// verification out; then a tampered export is shown as failing.
func TestReportPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t)
	env, srv, _ := tenantAPIEnv(t)
	token := roleToken(t, "42", "auditor", nil)
	// A support session: its rows are hash version 3 (actor, purpose,
	// ticket), which the page must recompute and list.
	support := connect(t, env.DSNWithToken(roleToken(t, "42", "", map[string]any{
		"act": map[string]any{"sub": "agent@support.example"}, "purpose": "check invoice totals", "ticket": "SUP-77"})))
	if _, err := support.Exec(ctxT(t), "SELECT count(*) FROM orders WHERE account_id = 42"); err != nil {
		t.Fatalf("support read: %v", err)
	}
	awaitAPI(t, srv, "/v1/audit?verdict=deny", token, `"verdict":"deny"`)
	awaitAPI(t, srv, "/v1/audit?kind=statement", token, `"actor":"agent@support.example"`)
	// The operator seals a tree checkpoint with a key the proxy never holds;
	// the reviewer has its public half from the operator's publication.
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Seal(ctxT(t), env.Config.Regions, key, "", nil); err != nil {
		t.Fatalf("seal: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))

	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID(id)))
		if err != nil {
			t.Fatalf("browser: text of #%s: %v", id, err)
		}
		return strings.TrimSpace(v)
	}
	count := func(css string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+"`"+css+"`"+`).length`))
		if err != nil {
			t.Fatalf("browser: count %s: %v", css, err)
		}
		return n
	}
	// waitJS polls a predicate in the page for up to 30 s.
	waitJS := func(pred string) {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := chromedp.Run(pctx, chromedp.Poll[bool](pred)); err != nil {
			t.Fatalf("browser: waiting for %s: %v", pred, err)
		}
	}
	do(chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.SendKeys(chromedp.ID("sealkey"), pubPEM),
		chromedp.Click(chromedp.ID("load")))
	waitJS(`document.getElementById("verify").textContent !== "not run" || document.getElementById("status").textContent.startsWith("could not")`)
	verify, overall, account := text("verify"), text("overall"), text("account")
	layerRows, denialRows, bars := count("#layers tbody tr"), count("#denials tbody tr"), count("#timeline rect")
	if !strings.HasPrefix(verify, "verified:") || !strings.Contains(verify, "every content hash recomputed") ||
		!strings.Contains(verify, "signature verified") || !strings.Contains(verify, "proven included") {
		t.Fatalf("in-browser verification = %q", verify)
	}
	if account != "42" || overall == "" || layerRows != 5 || denialRows == 0 || bars == 0 {
		t.Fatalf("page shows account %q overall %q, %d layer rows, %d denials, %d bars", account, overall, layerRows, denialRows, bars)
	}
	if sup := text("support"); !strings.Contains(sup, "agent@support.example") || !strings.Contains(sup, "check invoice totals") {
		t.Fatalf("the support sessions table shows %q", sup)
	}
	// The page's contentHash against audit/README.md's test vectors
	// (version 1 and version 3), computed by the Python verifier.
	for _, v := range []struct{ extra, want string }{
		{`hash_version: 1`, "76b44f39382f120403d8d4a92232d4232f6d32915b6cf49329328112a260c0ea"},
		{`hash_version: 3, role: "support", actor: "alice@vendor.example", purpose: "debug invoice export", ticket: "SUP-7", rewritten: true`,
			"6d9b3d3749a6481607c8abc398769b5899477daae6475f53bd7e3cc08e1a8ec2"},
	} {
		js := `window.__vec = undefined; contentHash({event_id: "01890a5d-ac96-774b-bcce-b302099a8057", chain_id: "acct-42",
			account_id: "acct-42", region: "eu-west", ts: "2026-01-02T03:04:05.123456Z", kind: "statement",
			subject: "user@example.com", client_user: "app", client_addr: "10.0.0.7", session_id: "s-1",
			proxy_instance: "proxy-a", statement: "SELECT * FROM orders WHERE account_id = $1", tables: ["public.orders"],
			verdict: "allow", reason: null, sqlstate: null, rows: null, duration_us: null, ` + v.extra + `})
			.then((h) => { window.__vec = bytesToHex(h); }, (err) => { window.__vec = "error: " + err; }); ""`
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](js)); err != nil {
			t.Fatalf("browser: test vector: %v", err)
		}
		waitJS(`window.__vec !== undefined`)
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.__vec`))
		if err != nil || got != v.want {
			t.Fatalf("report.js contentHash of the README vector (%s) = %q %v, want %s", v.extra, got, err, v.want)
		}
	}
	if *reportScreenshot != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*reportScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A tampered export: one statement changed, hashes left as they were.
	_, export := apiGet(t, srv, "/v1/audit/export", token)
	tampered := strings.Replace(export, `"verdict":"deny"`, `"verdict":"allow"`, 1)
	if tampered == export {
		t.Fatal("the export holds no denial to tamper with")
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.jsonl"), filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(good, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, want string }{{good, "verified:"}, {bad, "FAILED:"}} {
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("fileverify").textContent = ""`)); err != nil {
			t.Fatal(err)
		}
		do(chromedp.SetUploadFiles(chromedp.ID("exportfile"), []string{c.file}))
		waitJS(`document.getElementById("fileverify").textContent !== ""`)
		if got := text("fileverify"); !strings.HasPrefix(got, c.want) {
			t.Fatalf("%s: page says %q, want %s", filepath.Base(c.file), got, c.want)
		}
	}
}
