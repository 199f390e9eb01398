package audit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// The independent Python verifier (audit/verifier) agrees with this
// package on a real export: merged statement rows, a purged prefix with
// its purge record, checkpoints and inclusion proofs; and it reports an
// edited field and a bad proof.
func TestPythonVerifierAgrees(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed")
	}
	r, _ := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	_, key := sealKey(t)
	now := time.Now()
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeAsync), regions, "py")
	for i := range 12 {
		ev := stmt("acct-7", "s", i)
		ev.Ref = uint64(i + 1)
		ev.ClientAddr = []string{"10.0.0.7", "2001:db8::1", ""}[i%3]
		if i < 4 {
			ev.Time = now.Add(-72 * time.Hour)
		}
		if err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
		res := ev
		res.Kind, res.Verdict, res.Rows, res.DurationUS = tenancy.KindResult, "", int64(i), 10
		if err := rec.Record(ctx, res); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Purge(ctx, regions, config.Audit{RetentionDays: 1}, key, now, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	if _, err := Export(ctx, regions, ExportOptions{Account: "acct-7"}, &buf); err != nil {
		t.Fatal(err)
	}
	export := buf.String()
	if !strings.Contains(export, `"purged":true`) || !strings.Contains(export, `"proof":[`) || !strings.Contains(export, `"type":"purge"`) {
		t.Fatalf("the export lacks a purged row, a proof or a purge record:\n%s", export)
	}
	run := func(body string) (string, int) {
		p := filepath.Join(t.TempDir(), "export.jsonl")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "verifier/pgtenant_audit_verify.py", p).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	if out, code := run(export); code != 0 {
		t.Fatalf("python verifier on an intact export: exit %d\n%s\n%s", code, out, export)
	}
	if out, code := run(strings.Replace(export, "/* 9 */", "/* 8 */", 1)); code != 1 || !strings.Contains(out, ": content_mismatch") {
		t.Fatalf("python verifier on an edited export: exit %d\n%s", code, out)
	}
	i := strings.Index(export, `"proof":["`) + len(`"proof":["`)
	c := "A"
	if export[i] == 'A' {
		c = "B"
	}
	if out, code := run(export[:i] + c + export[i+1:]); code != 1 || !strings.Contains(out, "tree_mismatch") {
		t.Fatalf("python verifier with a bad proof: exit %d\n%s", code, out)
	}
	out, err := exec.Command(py, "verifier/pgtenant_audit_verify.py", "--vectors").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "76b44f39382f120403d8d4a92232d4232f6d32915b6cf49329328112a260c0ea") {
		t.Fatalf("python test vectors: %v\n%s", err, out)
	}
}
