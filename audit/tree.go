package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Every event the integrator chains is also leaf `leaf` of its region's
// Merkle tree: RFC 6962 hashing (golang.org/x/mod/sumdb/tlog), leaf data =
// the event's entry_hash. audit seal signs the tree's size and root as a
// C2SP signed note; a verifier that kept an older note checks that the
// current tree contains it, which detects a history rewritten with
// recomputed hashes even past the last signature.

// treeOrigin is the origin line of region's checkpoints.
func treeOrigin(region string) string { return "pgtenant.audit/" + region }

// memTree is a region's tree in memory: tlog's stored hashes in index order.
type memTree struct {
	hashes []tlog.Hash
	n      int64
}

// ReadHashes implements tlog.HashReader.
func (t *memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("tree: hash %d not stored", x)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// add appends a leaf.
func (t *memTree) add(entryHash []byte) error {
	hs, err := tlog.StoredHashes(t.n, entryHash, t)
	if err != nil {
		return err
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
	return nil
}

// root returns the tree hash of the first size leaves.
func (t *memTree) root(size int64) (tlog.Hash, error) { return tlog.TreeHash(size, t) }

// loadTree rebuilds region's tree from events (leaf order). A missing or
// repeated leaf is a Failure, as is a tree_heads size that disagrees.
func loadTree(ctx context.Context, conn *pgx.Conn, region string) (*memTree, *Failure, error) {
	if conn.PgConn().TxStatus() == 'I' {
		// One snapshot for the leaves and tree_heads: a round the
		// integrator commits between the two reads would read as a gap.
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, nil, fmt.Errorf("read tree: %w", err)
		}
		defer tx.Rollback(context.Background()) //nolint:errcheck // read only
	}
	rows, err := conn.Query(ctx, `SELECT leaf, entry_hash FROM pgtenant_audit.events
		WHERE region = $1 AND leaf IS NOT NULL ORDER BY leaf`, region)
	if err != nil {
		return nil, nil, fmt.Errorf("read tree leaves: %w", err)
	}
	defer rows.Close()
	t := &memTree{}
	var bad *Failure
	for rows.Next() {
		var leaf int64
		var entry []byte
		if err := rows.Scan(&leaf, &entry); err != nil {
			return nil, nil, fmt.Errorf("read tree leaves: %w", err)
		}
		if leaf != t.n && bad == nil {
			bad = &Failure{Region: region, ChainID: "(tree)", Seq: t.n, Kind: FailTreeGap,
				Detail: fmt.Sprintf("leaf %d follows %d leaves", leaf, t.n)}
		}
		if bad != nil {
			continue
		}
		if err := t.add(entry); err != nil {
			return nil, nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read tree leaves: %w", err)
	}
	var size int64
	err = conn.QueryRow(ctx, `SELECT size FROM pgtenant_audit.tree_heads WHERE region = $1`, region).Scan(&size)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, fmt.Errorf("read tree head: %w", err)
	}
	if bad == nil && size != t.n {
		bad = &Failure{Region: region, ChainID: "(tree)", Seq: t.n, Kind: FailTreeGap,
			Detail: fmt.Sprintf("tree_heads records %d leaves, events hold %d", size, t.n)}
	}
	return t, bad, nil
}

// TreeCheckpoint is a region's signed tree head: a C2SP checkpoint
// (origin, size, base64 root) in a signed note.
type TreeCheckpoint struct {
	Region string
	Size   int64
	Root   tlog.Hash
	Note   []byte // the signed note as written
}

func treeNoteText(region string, size int64, root tlog.Hash) string {
	return treeOrigin(region) + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// noteKeyName is the signer name of key pub in checkpoint notes.
func noteKeyName(pub ed25519.PublicKey) string { return "pgtenant-audit-" + KeyID(pub) }

// noteVerifier verifies notes signed by pub's private key.
func noteVerifier(pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := note.NewEd25519VerifierKey(noteKeyName(pub), pub)
	if err != nil {
		return nil, err
	}
	return note.NewVerifier(vkey)
}

// noteSigner signs notes with an Ed25519 private key (the seal key; the
// proxy never holds it).
type noteSigner struct {
	key  ed25519.PrivateKey
	name string
	hash uint32
}

func newNoteSigner(key ed25519.PrivateKey) (*noteSigner, error) {
	v, err := noteVerifier(key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &noteSigner{key: key, name: v.Name(), hash: v.KeyHash()}, nil
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// signTree returns the signed note of region's tree of size leaves.
func signTree(key ed25519.PrivateKey, region string, size int64, root tlog.Hash) ([]byte, error) {
	s, err := newNoteSigner(key)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: treeNoteText(region, size, root)}, s)
}

// OpenTreeCheckpoint verifies a signed checkpoint note with pub and parses it.
func OpenTreeCheckpoint(msg []byte, pub ed25519.PublicKey) (TreeCheckpoint, error) {
	v, err := noteVerifier(pub)
	if err != nil {
		return TreeCheckpoint{}, err
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return TreeCheckpoint{}, fmt.Errorf("checkpoint note: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "pgtenant.audit/") {
		return TreeCheckpoint{}, errors.New("checkpoint note: not a pgtenant audit checkpoint")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return TreeCheckpoint{}, fmt.Errorf("checkpoint note: bad tree size %q", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return TreeCheckpoint{}, fmt.Errorf("checkpoint note: bad root hash %q", lines[2])
	}
	c := TreeCheckpoint{Region: strings.TrimPrefix(lines[0], "pgtenant.audit/"), Size: size, Note: msg}
	copy(c.Root[:], root)
	return c, nil
}

// checkTreeCheckpoint checks that t contains checkpoint c: c's size is not
// beyond t, and a consistency proof from c's tree to t's (RFC 6962) checks
// against c's root. It returns a Failure, or nil.
func checkTreeCheckpoint(t *memTree, c TreeCheckpoint, where string) *Failure {
	fail := func(kind, detail string) *Failure {
		return &Failure{Region: c.Region, ChainID: "(tree)", Seq: c.Size, Kind: kind, Detail: where + ": " + detail}
	}
	if c.Size > t.n {
		return fail(FailTruncated, fmt.Sprintf("checkpoint of %d leaves, the tree has %d", c.Size, t.n))
	}
	if c.Size == 0 {
		return nil
	}
	root, err := t.root(t.n)
	if err != nil {
		return fail(FailTreeMismatch, err.Error())
	}
	proof, err := tlog.ProveTree(t.n, c.Size, t)
	if err != nil {
		return fail(FailTreeMismatch, err.Error())
	}
	if err := tlog.CheckTree(proof, t.n, root, c.Size, c.Root); err != nil {
		return fail(FailTreeMismatch, fmt.Sprintf("the current tree does not extend the checkpoint of %d leaves: %v", c.Size, err))
	}
	return nil
}

// treeCheckpointFile is where seal writes region's note of size leaves.
func treeCheckpointFile(dir, region string, size int64) string {
	return filepath.Join(dir, region, fmt.Sprintf("tree-%020d.note", size))
}

// writeTreeCheckpoint writes a note to dir (fsync'd), never overwriting.
func writeTreeCheckpoint(dir, region string, size int64, msg []byte) error {
	p := treeCheckpointFile(dir, region, size)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		old, rerr := os.ReadFile(p)
		if rerr == nil && bytes.Equal(old, msg) {
			return nil
		}
		// Same size, another note (another signing time is impossible: the
		// note has none; another key or root): keep both.
		p += "." + fmt.Sprintf("%x", sha256.Sum256(msg))[:16]
		f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(msg); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// readTreeCheckpoints reads the notes of region in dir ("" = none).
func readTreeCheckpoints(dir, region string) ([][]byte, error) {
	if dir == "" {
		return nil, nil
	}
	matches, err := filepath.Glob(filepath.Join(dir, region, "tree-*.note*"))
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// sealTree signs region's tree when it grew since its latest signed note,
// after checking that the tree rebuilt from events extends that note.
func sealTree(ctx context.Context, conn *pgx.Conn, region string, key ed25519.PrivateKey, dir string, res *SealResult) error {
	t, bad, err := loadTree(ctx, conn, region)
	if err != nil {
		return err
	}
	if bad != nil {
		res.Failures = append(res.Failures, *bad)
		return nil
	}
	pub := key.Public().(ed25519.PublicKey)
	var last []byte
	err = conn.QueryRow(ctx, `SELECT note FROM pgtenant_audit.tree_checkpoints WHERE region = $1 ORDER BY id DESC LIMIT 1`,
		region).Scan(&last)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read tree checkpoints: %w", err)
	}
	if last != nil {
		if c, err := OpenTreeCheckpoint(last, pub); err == nil {
			if f := checkTreeCheckpoint(t, c, "database"); f != nil {
				res.Failures = append(res.Failures, *f)
				return nil
			}
			if c.Size == t.n {
				return nil
			}
		}
	}
	if t.n == 0 {
		return nil
	}
	root, err := t.root(t.n)
	if err != nil {
		return err
	}
	msg, err := signTree(key, region, t.n, root)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO pgtenant_audit.tree_checkpoints (region, size, root, note) VALUES ($1, $2, $3, $4)`,
		region, t.n, root[:], string(msg)); err != nil {
		return fmt.Errorf("tree checkpoint: %w", err)
	}
	if dir != "" {
		if err := writeTreeCheckpoint(dir, region, t.n, msg); err != nil {
			return fmt.Errorf("tree checkpoint copy: %w", err)
		}
	}
	res.TreesSealed++
	return nil
}

// verifyTree rebuilds region's tree and checks every signed note in the
// database, in dir and in since against it.
func verifyTree(ctx context.Context, conn *pgx.Conn, region string, opts VerifyOptions) ([]Failure, int64, error) {
	var present bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgtenant_audit.tree_heads') IS NOT NULL`).Scan(&present); err != nil {
		return nil, 0, err
	}
	if !present {
		return nil, 0, nil
	}
	t, bad, err := loadTree(ctx, conn, region)
	if err != nil {
		return nil, 0, err
	}
	if bad != nil {
		return []Failure{*bad}, t.n, nil
	}
	var notes [][]byte
	var where []string
	rows, err := conn.Query(ctx, `SELECT note FROM pgtenant_audit.tree_checkpoints WHERE region = $1 ORDER BY id`, region)
	if err != nil {
		return nil, 0, err
	}
	dbNotes, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, 0, err
	}
	for _, n := range dbNotes {
		notes, where = append(notes, n), append(where, "database")
	}
	ext, err := readTreeCheckpoints(opts.CheckpointDir, region)
	if err != nil {
		return nil, 0, err
	}
	for _, n := range ext {
		notes, where = append(notes, n), append(where, "external copy")
	}
	for _, n := range opts.SinceCheckpoints {
		notes, where = append(notes, n), append(where, "kept checkpoint")
	}
	var fails []Failure
	for i, msg := range notes {
		if opts.PublicKey == nil {
			return nil, 0, errors.New("tree checkpoints exist but no public key is set (audit.seal_public_key or --public-key)")
		}
		c, err := OpenTreeCheckpoint(msg, opts.PublicKey)
		if err != nil {
			fails = append(fails, Failure{Region: region, ChainID: "(tree)", Kind: FailBadSignature, Detail: where[i] + ": " + err.Error()})
			continue
		}
		if c.Region != region {
			if where[i] == "kept checkpoint" {
				continue // a kept checkpoint of another region
			}
			fails = append(fails, Failure{Region: region, ChainID: "(tree)", Kind: FailChainMismatch,
				Detail: fmt.Sprintf("%s: checkpoint of region %s", where[i], c.Region)})
			continue
		}
		if f := checkTreeCheckpoint(t, c, where[i]); f != nil {
			fails = append(fails, *f)
		}
	}
	return fails, t.n, nil
}

// leafProof is an exported event's leaf index and inclusion proof.
type leafProof struct {
	leaf   int64
	hashes []string
}

// exportProofs returns, for the chain's events inside region's latest
// signed tree checkpoint, their leaf and inclusion proof against it, and
// that checkpoint's note (nil when there is none, or want is false).
func exportProofs(ctx context.Context, conn *pgx.Conn, region, chain string, want bool) (map[int64]leafProof, []byte, error) {
	if !want {
		return nil, nil, nil
	}
	var present bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgtenant_audit.tree_checkpoints') IS NOT NULL`).Scan(&present); err != nil || !present {
		return nil, nil, err
	}
	var msg []byte
	var size int64
	err := conn.QueryRow(ctx, `SELECT note, size FROM pgtenant_audit.tree_checkpoints WHERE region = $1 ORDER BY id DESC LIMIT 1`,
		region).Scan(&msg, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tree checkpoint: %w", err)
	}
	t, bad, err := loadTree(ctx, conn, region)
	if err != nil {
		return nil, nil, err
	}
	if bad != nil || t.n < size {
		// The tree no longer extends its checkpoint: export the note and no
		// proofs; the tenant's verification reports the missing proofs.
		return map[int64]leafProof{}, msg, nil
	}
	rows, err := conn.Query(ctx, `SELECT seq, leaf FROM pgtenant_audit.events WHERE chain_id = $1 AND leaf < $2`, chain, size)
	if err != nil {
		return nil, nil, fmt.Errorf("leaves of %q: %w", chain, err)
	}
	defer rows.Close()
	out := map[int64]leafProof{}
	for rows.Next() {
		var seq, leaf int64
		if err := rows.Scan(&seq, &leaf); err != nil {
			return nil, nil, err
		}
		p, err := tlog.ProveRecord(size, leaf, t)
		if err != nil {
			return nil, nil, fmt.Errorf("proof of leaf %d: %w", leaf, err)
		}
		hs := make([]string, len(p))
		for i, h := range p {
			hs[i] = base64.StdEncoding.EncodeToString(h[:])
		}
		out[seq] = leafProof{leaf: leaf, hashes: hs}
	}
	return out, msg, rows.Err()
}

// inclusion is an exported event with its claimed leaf and proof.
type inclusion struct {
	region, chain string
	seq, leaf     int64
	entry         []byte
	proof         []string
}

// checkInclusions verifies an export's tree checkpoints with pub and every
// event's inclusion proof against its region's checkpoint.
func checkInclusions(notes [][]byte, inc []inclusion, pub ed25519.PublicKey) ([]Failure, error) {
	if len(notes) == 0 && len(inc) == 0 {
		return nil, nil
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: the export has tree checkpoints but no public key was given", ErrCannotVerify)
	}
	var fails []Failure
	byRegion := map[string]TreeCheckpoint{}
	for _, msg := range notes {
		c, err := OpenTreeCheckpoint(msg, pub)
		if err != nil {
			fails = append(fails, Failure{ChainID: "(tree)", Kind: FailBadSignature, Detail: "export: " + err.Error()})
			continue
		}
		byRegion[c.Region] = c
	}
	failed := map[[2]string]bool{}
	for _, in := range inc {
		k := [2]string{in.region, in.chain}
		if failed[k] {
			continue
		}
		fail := func(detail string) {
			failed[k] = true
			fails = append(fails, Failure{Region: in.region, ChainID: in.chain, Seq: in.seq, Kind: FailTreeMismatch, Detail: detail})
		}
		c, ok := byRegion[in.region]
		if !ok {
			fail("an inclusion proof without a signed tree checkpoint of its region")
			continue
		}
		proof := make(tlog.RecordProof, len(in.proof))
		okDecode := true
		for i, s := range in.proof {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(b) != tlog.HashSize {
				okDecode = false
				break
			}
			copy(proof[i][:], b)
		}
		if !okDecode {
			fail("malformed inclusion proof")
			continue
		}
		if err := tlog.CheckRecord(proof, c.Size, c.Root, in.leaf, tlog.RecordHash(in.entry)); err != nil {
			fail(fmt.Sprintf("leaf %d is not in the signed tree of %d leaves: %v", in.leaf, c.Size, err))
		}
	}
	return fails, nil
}
