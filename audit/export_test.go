package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

func TestExportVerifiesOfflineAndShowsTampering(t *testing.T) {
	r, _ := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	ctx := testCtx(t)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	rec := newTestRecorder(t, ctx, testAuditConfig(t, ModeStrict), regions, "i1")
	base := time.Now().Add(-time.Hour)
	for i := range 30 {
		ev := stmt("a1", "s", i)
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		if err := rec.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if err := rec.Record(ctx, stmt("a2", "s", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Seal(ctx, regions, key, "", nil); err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	n, err := Export(ctx, regions, ExportOptions{Account: "a1"}, &full)
	if err != nil || n != 30 {
		t.Fatalf("export: %d rows, %v", n, err)
	}
	if strings.Contains(full.String(), `"a2"`) {
		t.Fatal("export of a1 contains another tenant's events")
	}
	rep, err := VerifyExport(bytes.NewReader(full.Bytes()), pub)
	if err != nil || !rep.OK || rep.Regions[0].Rows != 30 || rep.Regions[0].Checkpoints != 1 {
		t.Fatalf("verify export: %+v %v", rep, err)
	}
	if _, err := VerifyExport(bytes.NewReader(full.Bytes()), nil); err == nil {
		t.Fatal("an export with checkpoints verified without a public key")
	}

	var part bytes.Buffer
	n, err = Export(ctx, regions, ExportOptions{Account: "a1", Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, &part)
	if err != nil || n != 10 {
		t.Fatalf("range export: %d rows, %v", n, err)
	}
	if rep, err := VerifyExport(&part, pub); err != nil || !rep.OK {
		t.Fatalf("verify range export: %+v %v", rep, err)
	}

	lines := strings.Split(strings.TrimSpace(full.String()), "\n")
	edited := strings.Replace(full.String(), "/* 7 */", "/* 8 */", 1)
	rep, err = VerifyExport(strings.NewReader(edited), pub)
	if err != nil || rep.OK || rep.Failures[0].Kind != FailContentMismatch || rep.Failures[0].Seq != 8 {
		t.Fatalf("edited export: %+v %v", rep, err)
	}
	// Dropping the last event: the signed checkpoint says there were 30.
	dropped := strings.Join(append(lines[:30:30], lines[31:]...), "\n")
	rep, err = VerifyExport(strings.NewReader(dropped), pub)
	if err != nil || rep.OK || rep.Failures[0].Kind != FailTruncated {
		t.Fatalf("export without its last row: %+v %v", rep, err)
	}
	// Dropping the first event: seq 1 is missing.
	noFirst := strings.Join(append(lines[:1:1], lines[2:]...), "\n")
	rep, err = VerifyExport(strings.NewReader(noFirst), pub)
	if err != nil || rep.OK || rep.Failures[0].Kind != FailSeqGap || rep.Failures[0].Seq != 1 {
		t.Fatalf("export without its first row: %+v %v", rep, err)
	}

	var csvOut bytes.Buffer
	if _, err := Export(ctx, regions, ExportOptions{Account: "a1", Format: "csv"}, &csvOut); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil || len(recs) != 1+30+1 || recs[0][0] != "record" || recs[31][0] != "checkpoint" {
		t.Fatalf("csv export: %d records, %v", len(recs), err)
	}
}

func TestExportAndVerifyOfAnUnknownAccount(t *testing.T) {
	r, _ := initRegion(t, "eu-west")
	regions := map[string]config.Region{"eu-west": r}
	var out bytes.Buffer
	if _, err := Export(testCtx(t), regions, ExportOptions{Account: "nobody"}, &out); err == nil {
		t.Fatal("export of an account with no chain succeeded")
	}
	if _, err := VerifyDB(testCtx(t), regions, VerifyOptions{Account: "nobody"}); err == nil {
		t.Fatal("verify of an account with no chain succeeded")
	}
}
