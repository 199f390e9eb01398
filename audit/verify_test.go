package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/tenancy"
)

// memChain builds a sealed chain of n rows in memory.
func memChain(t testing.TB, region, chain string, n int) []*Row {
	t.Helper()
	prev := GenesisHash(region, chain)
	rows := make([]*Row, n)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		ev := tenancy.Event{Kind: tenancy.KindStatement, Time: base.Add(time.Duration(i) * 1001 * time.Nanosecond), AccountID: chain,
			Statement: fmt.Sprintf("SELECT %d", i), Verdict: tenancy.VerdictAllow}
		if chain == NoTenantChain {
			ev.AccountID = ""
		}
		r, err := NewRow(ev, region, "test", StatementNormalized)
		if err != nil {
			t.Fatal(err)
		}
		r.Seal(int64(i+1), prev)
		prev = r.EntryHash
		rows[i] = r
	}
	return rows
}

func verifyMem(rows []*Row, region, chain string, headSeq int64, head []byte, cps []Checkpoint, pub ed25519.PublicKey) *Failure {
	v := newChainVerifier(region, chain)
	for _, c := range cps {
		v.want(c.Size)
	}
	for _, r := range rows {
		v.add(r)
	}
	v.checkHead(headSeq, head)
	v.checkCheckpoints(cps, pub, "test")
	return v.first()
}

func TestVerifierDetectsInMemoryTampering(t *testing.T) {
	pub, key := sealKey(t)
	const n = 10
	fresh := func() []*Row { return memChain(t, "eu-west", "a1", n) }
	good := fresh()
	headSeq, head := int64(n), good[n-1].EntryHash
	cp := Checkpoint{ChainID: "a1", Region: "eu-west", Size: n, Head: head, TS: time.Now()}
	cp.Sign(key)
	if f := verifyMem(good, "eu-west", "a1", headSeq, head, []Checkpoint{cp}, pub); f != nil {
		t.Fatalf("intact chain reported broken: %v", f)
	}
	rehash := func(rows []*Row, from int) {
		prev := GenesisHash("eu-west", "a1")
		if from > 0 {
			prev = rows[from-1].EntryHash
		}
		for i := from; i < len(rows); i++ {
			rows[i].Seal(rows[i].Seq, prev)
			prev = rows[i].EntryHash
		}
	}
	cases := []struct {
		name    string
		tamper  func([]*Row) []*Row
		kind    string
		seq     int64
		mutCP   func(*Checkpoint)
		noCheck bool
	}{
		{name: "edit field", tamper: func(r []*Row) []*Row { r[4].Statement = sp("SELECT evil"); return r }, kind: FailContentMismatch, seq: 5},
		{name: "null to empty", tamper: func(r []*Row) []*Row { r[4].Reason = sp(""); return r }, kind: FailContentMismatch, seq: 5},
		{name: "edit and rehash row", tamper: func(r []*Row) []*Row {
			r[4].Statement = sp("SELECT evil")
			r[4].Seal(5, r[3].EntryHash)
			return r
		}, kind: FailLinkMismatch, seq: 6},
		{name: "edit and rehash rest", tamper: func(r []*Row) []*Row {
			r[4].Statement = sp("SELECT evil")
			rehash(r, 4)
			return r
		}, kind: FailHeadMismatch, seq: n},
		{name: "delete middle", tamper: func(r []*Row) []*Row { return append(r[:4:4], r[5:]...) }, kind: FailSeqGap, seq: 5},
		{name: "reorder", tamper: func(r []*Row) []*Row {
			r[4], r[5] = r[5], r[4]
			r[4].Seq, r[5].Seq = 5, 6
			return r
		}, kind: FailLinkMismatch, seq: 5},
		{name: "truncate tail", tamper: func(r []*Row) []*Row { return r[:7] }, kind: FailTruncated, seq: 8},
		{name: "wrong genesis", tamper: func(r []*Row) []*Row {
			r[0].Seal(1, GenesisHash("us-east", "a1"))
			rehash(r, 1)
			return r
		}, kind: FailGenesisMismatch, seq: 1},
		{name: "forged checkpoint", tamper: func(r []*Row) []*Row { return r }, mutCP: func(c *Checkpoint) { c.Size = 9 }, kind: FailBadSignature, seq: 9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rows := c.tamper(fresh())
			// The forged copy keeps the original head and checkpoint: a
			// chain rebuilt wholesale still contradicts what was signed.
			cps := []Checkpoint{cp}
			if c.mutCP != nil {
				m := cp
				c.mutCP(&m)
				cps = []Checkpoint{m}
			}
			f := verifyMem(rows, "eu-west", "a1", headSeq, head, cps, pub)
			if f == nil {
				t.Fatal("tampering not detected")
			}
			if f.Kind != c.kind || f.Seq != c.seq {
				t.Fatalf("got %s at seq %d (%s), want %s at seq %d", f.Kind, f.Seq, f, c.kind, c.seq)
			}
		})
	}
}

func TestVerifierNoFalsePositiveOnLongChain(t *testing.T) {
	rows := memChain(t, "eu-west", NoTenantChain, 5000)
	if f := verifyMem(rows, "eu-west", NoTenantChain, 5000, rows[4999].EntryHash, nil, nil); f != nil {
		t.Fatalf("false positive: %v", f)
	}
}

func TestCheckpointSignature(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	c := Checkpoint{ChainID: "a1", Region: "eu-west", Size: 3, Head: bytes.Repeat([]byte{7}, 32), TS: time.Now()}
	c.Sign(key)
	if err := c.Verify(pub); err != nil {
		t.Fatalf("valid signature rejected: %v", err)
	}
	if err := c.Verify(other); err == nil || !strings.Contains(err.Error(), "key") {
		t.Fatalf("another key accepted: %v", err)
	}
	c.Head[0] ^= 1
	if err := c.Verify(pub); err == nil {
		t.Fatal("a changed head still verifies")
	}
}
