package audit

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// seedSpoolRecords are valid spool record payloads (formats 2 and 3, with
// version-1 and version-3 content layouts).
func seedSpoolRecords(tb testing.TB) [][]byte {
	ev := stmt("42", "s", 1)
	ev.Tables = []string{"a", "b"}
	r, err := NewRow(ev, "eu-west", "i", StatementNormalized)
	if err != nil {
		tb.Fatal(err)
	}
	full, err := NewRow(ev, "eu-west", "i", StatementFull)
	if err != nil {
		tb.Fatal(err)
	}
	attr, err := NewRow(attributed(1), "eu-west", "i", StatementFull)
	if err != nil {
		tb.Fatal(err)
	}
	return [][]byte{encodeSpoolRecord(nil, r, 7)[recordHeader:], encodeSpoolRecord(nil, full, 8)[recordHeader:],
		encodeSpoolRecord(nil, attr, 9)[recordHeader:]}
}

// FuzzSpoolRecord: a spool record read back from disk (torn, corrupt, or
// written by another build) decodes or fails, never panics; whatever
// decodes re-encodes to a record that decodes to the same row.
func FuzzSpoolRecord(f *testing.F) {
	for _, s := range seedSpoolRecords(f) {
		f.Add(s)
	}
	f.Add([]byte{3, 0, 0, 0, 0, 0, 0, 0, 1, 200})
	f.Add([]byte(`{"chain_id":"a","event_id":"x"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		r, ref, err := decodeSpoolRecord(payload)
		if err != nil {
			return
		}
		again := encodeSpoolRecord(nil, r, ref)
		r2, ref2, err := decodeSpoolRecord(again[recordHeader:])
		if err != nil || ref2 != ref || !bytes.Equal(r.EncodeContent(nil), r2.EncodeContent(nil)) {
			t.Fatalf("round trip of a decoded record: %v", err)
		}
	})
}

func TestSpoolRecordSeedsDecode(t *testing.T) {
	for i, s := range seedSpoolRecords(t) {
		r, _, err := decodeSpoolRecord(s)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if i == 1 && (r.HashVersion != HashVersionCommitted || r.StatementSalt == nil) {
			t.Fatalf("the full-mode seed lost its salt: %+v", r)
		}
	}
}

// FuzzTreeCheckpoint: arbitrary bytes as a kept checkpoint note are
// rejected or verified against the tree, never a panic.
func FuzzTreeCheckpoint(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	tree := &memTree{}
	for i := range 5 {
		if err := tree.add([]byte{byte(i)}); err != nil {
			f.Fatal(err)
		}
	}
	root, err := tree.root(3)
	if err != nil {
		f.Fatal(err)
	}
	good, err := signTree(key, "eu-west", 3, root)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("pgtenant.audit/eu-west\n99999999999\nAAAA\n\n— x y\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := OpenTreeCheckpoint(msg, pub)
		if err != nil {
			return
		}
		_ = checkTreeCheckpoint(tree, c, "fuzz")
	})
}

func TestTreeCheckpointSeed(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	tree := &memTree{}
	for i := range 5 {
		if err := tree.add([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	root, _ := tree.root(3)
	msg, err := signTree(key, "eu-west", 3, root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenTreeCheckpoint(msg, pub)
	if err != nil || c.Size != 3 || c.Root != root {
		t.Fatalf("open: %+v %v", c, err)
	}
	if f := checkTreeCheckpoint(tree, c, "test"); f != nil {
		t.Fatalf("a checkpoint of the tree's own prefix: %s", f)
	}
	var other tlog.Hash
	other[0] = 1
	bad, _ := signTree(key, "eu-west", 3, other)
	c, _ = OpenTreeCheckpoint(bad, pub)
	if f := checkTreeCheckpoint(tree, c, "test"); f == nil || f.Kind != FailTreeMismatch {
		t.Fatalf("a checkpoint of another tree: %v", f)
	}
}
