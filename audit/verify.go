package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"sort"
)

// Failure kinds reported by Verify.
const (
	FailContentMismatch    = "content_mismatch"    // a row's fields do not hash to its content_hash
	FailEntryMismatch      = "entry_mismatch"      // entry_hash is not the hash of chain, seq, prev_hash, content_hash
	FailLinkMismatch       = "link_mismatch"       // prev_hash is not the previous row's entry_hash
	FailGenesisMismatch    = "genesis_mismatch"    // seq 1's prev_hash is not the chain's genesis hash
	FailSeqGap             = "seq_gap"             // a seq is missing
	FailSeqOrder           = "seq_order"           // a seq repeats or goes backwards
	FailChainMismatch      = "chain_mismatch"      // a row names another chain or region
	FailUnknownVersion     = "unknown_version"     // hash_version this build cannot verify
	FailHeadMismatch       = "head_mismatch"       // chain_heads disagrees with the last row
	FailTruncated          = "truncated"           // a head or checkpoint records more rows than present
	FailCheckpointMismatch = "checkpoint_mismatch" // a checkpoint's head is not the entry_hash at its size
	FailBadSignature       = "bad_signature"       // a checkpoint's signature does not verify
	FailCheckpointRegress  = "checkpoint_regression"
	FailChainMissing       = "chain_missing"  // checkpoints or a head exist but no rows
	FailTreeGap            = "tree_gap"       // the region's tree leaves are not contiguous, or tree_heads disagrees
	FailUnsignedPurge      = "unsigned_purge" // a redacted row outside every signed purge record
	FailTreeMismatch       = "tree_mismatch"  // the tree rebuilt from events does not extend a signed tree checkpoint
)

// Failure is the first broken entry of one chain.
type Failure struct {
	Region   string `json:"region"`
	ChainID  string `json:"chain_id"`
	Seq      int64  `json:"seq"`
	Kind     string `json:"kind"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
	Detail   string `json:"detail"`
}

// String formats the failure as one line for people.
func (f Failure) String() string {
	s := fmt.Sprintf("region %s chain %q seq %d: %s: %s", f.Region, f.ChainID, f.Seq, f.Kind, f.Detail)
	if f.Expected != "" || f.Actual != "" {
		s += fmt.Sprintf(" (expected %s, actual %s)", f.Expected, f.Actual)
	}
	return s
}

// chainVerifier checks one chain's rows as they stream in seq order, then
// its head and checkpoints. It keeps O(checkpoints) memory.
type chainVerifier struct {
	region, chain string
	next          int64  // the seq the next row must have
	prev          []byte // the entry hash the next row must link to
	partial       bool   // started mid-chain (an export range): no genesis check
	failures      []Failure
	rowsBroken    bool
	wantAt        map[int64]bool
	hashAt        map[int64][]byte
	purgedUpTo    int64 // rows up to here may be redacted (signed purge records)
	purges        []PurgeRecord
}

func newChainVerifier(region, chain string) *chainVerifier {
	return &chainVerifier{region: region, chain: chain, next: 1, prev: GenesisHash(region, chain),
		wantAt: map[int64]bool{}, hashAt: map[int64][]byte{}}
}

// want asks the verifier to remember the entry hash at seq.
func (v *chainVerifier) want(seq int64) { v.wantAt[seq] = true }

func (v *chainVerifier) fail(seq int64, kind, detail string, expected, actual []byte) {
	f := Failure{Region: v.region, ChainID: v.chain, Seq: seq, Kind: kind, Detail: detail}
	if expected != nil || actual != nil {
		f.Expected, f.Actual = hex.EncodeToString(expected), hex.EncodeToString(actual)
	}
	v.failures = append(v.failures, f)
}

// last returns the seq of the last verified row.
func (v *chainVerifier) last() int64 { return v.next - 1 }

// add checks the next row; after the first broken row the rest are ignored.
func (v *chainVerifier) add(r *Row) {
	if v.rowsBroken {
		return
	}
	v.rowsBroken = true
	if v.partial && v.next == 1 && r.Seq > 1 {
		// An export starting mid-chain: trust the first row's position and link.
		v.next, v.prev = r.Seq, r.PrevHash
	}
	switch {
	case r.ChainID != v.chain || r.Region != v.region:
		v.fail(r.Seq, FailChainMismatch, fmt.Sprintf("row belongs to region %s chain %q", r.Region, r.ChainID), nil, nil)
		return
	case r.Seq > v.next:
		v.fail(v.next, FailSeqGap, fmt.Sprintf("seq %d is missing; next row has seq %d", v.next, r.Seq), nil, nil)
		return
	case r.Seq < v.next:
		v.fail(r.Seq, FailSeqOrder, fmt.Sprintf("seq %d appears again after seq %d", r.Seq, v.next-1), nil, nil)
		return
	case r.HashVersion != HashVersion && r.HashVersion != HashVersionCommitted && r.HashVersion != HashVersionAttributed:
		v.fail(r.Seq, FailUnknownVersion, fmt.Sprintf("hash_version %d is not %d, %d or %d", r.HashVersion,
			HashVersion, HashVersionCommitted, HashVersionAttributed), nil, nil)
		return
	case r.HashVersion != HashVersionAttributed && r.hasAttribution():
		// Versions 1 and 2 do not cover these fields: a value there was
		// added after the row was hashed.
		v.fail(r.Seq, FailContentMismatch, fmt.Sprintf("hash_version %d does not cover role, actor, purpose, ticket or rewritten, yet one is set", r.HashVersion), nil, nil)
		return
	}
	committed := r.HashVersion == HashVersionCommitted || (r.HashVersion == HashVersionAttributed && r.StatementCommitment != nil)
	if committed && r.Statement != nil && !r.Purged {
		// The text is still there: it must be the one committed to.
		if r.StatementSalt == nil || !bytes.Equal(statementCommitment(r.StatementSalt, *r.Statement), r.StatementCommitment) {
			v.fail(r.Seq, FailContentMismatch, "the statement text does not match its salted commitment", r.StatementCommitment, nil)
			return
		}
	}
	if r.Purged {
		// Redacted by a purge: its content hash stands in for the fields,
		// but only inside a prefix a signed purge record covers.
		if r.Seq > v.purgedUpTo {
			v.fail(r.Seq, FailUnsignedPurge, "the row is redacted but no signed purge record covers it", nil, nil)
			return
		}
	} else if c := r.ComputeContentHash(); !bytes.Equal(c, r.ContentHash) {
		v.fail(r.Seq, FailContentMismatch, "the row's fields do not match its content_hash", c, r.ContentHash)
		return
	}
	if !bytes.Equal(r.PrevHash, v.prev) {
		kind, what := FailLinkMismatch, "prev_hash is not the previous row's entry_hash"
		if r.Seq == 1 {
			kind, what = FailGenesisMismatch, "prev_hash of seq 1 is not the chain's genesis hash"
		}
		v.fail(r.Seq, kind, what, v.prev, r.PrevHash)
		return
	}
	if e := EntryHash(v.chain, r.Seq, r.PrevHash, r.ContentHash); !bytes.Equal(e, r.EntryHash) {
		v.fail(r.Seq, FailEntryMismatch, "entry_hash does not link chain, seq, prev_hash and content_hash", e, r.EntryHash)
		return
	}
	v.rowsBroken = false
	if v.wantAt[r.Seq] {
		v.hashAt[r.Seq] = r.EntryHash
	}
	v.prev = r.EntryHash
	v.next++
}

// checkHead compares the chain_heads row with the rows seen.
func (v *chainVerifier) checkHead(seq int64, head []byte) {
	if v.rowsBroken {
		return
	}
	switch {
	case seq > v.last() && v.last() == 0:
		v.fail(1, FailChainMissing, fmt.Sprintf("chain_heads records %d rows but none are present", seq), nil, nil)
	case seq > v.last():
		v.fail(v.last()+1, FailTruncated, fmt.Sprintf("chain_heads records %d rows but only %d are present", seq, v.last()), nil, nil)
	case seq < v.last():
		v.fail(seq+1, FailHeadMismatch, fmt.Sprintf("rows after the recorded head seq %d (up to %d) were not appended through the head", seq, v.last()), nil, nil)
	case !bytes.Equal(head, v.prev):
		v.fail(seq, FailHeadMismatch, "chain_heads.head is not the last row's entry_hash", head, v.prev)
	}
}

// checkCheckpoints verifies signatures, monotonic sizes (in the given
// order) and that each checkpoint's head is the entry hash at its size.
// where names the copy ("database" or "external copy").
func (v *chainVerifier) checkCheckpoints(cps []Checkpoint, pub ed25519.PublicKey, where string) {
	var maxSize int64 = -1
	for _, c := range cps {
		if err := c.Verify(pub); err != nil {
			v.fail(c.Size, FailBadSignature, fmt.Sprintf("%s checkpoint at %s: %v", where, c.TS.Format("2006-01-02T15:04:05Z07:00"), err), nil, nil)
			continue
		}
		if c.ChainID != v.chain || c.Region != v.region {
			v.fail(c.Size, FailCheckpointMismatch, fmt.Sprintf("%s checkpoint is for region %s chain %q", where, c.Region, c.ChainID), nil, nil)
			continue
		}
		if c.Size < maxSize {
			v.fail(c.Size, FailCheckpointRegress, fmt.Sprintf("%s checkpoint size %d is below an earlier one's %d", where, c.Size, maxSize), nil, nil)
		}
		maxSize = max(maxSize, c.Size)
		if c.Size == 0 {
			continue
		}
		if c.Size > v.last() && !v.rowsBroken {
			kind := FailTruncated
			if v.last() == 0 {
				kind = FailChainMissing
			}
			v.fail(v.last()+1, kind, fmt.Sprintf("%s checkpoint records %d rows but only %d are present", where, c.Size, v.last()), nil, nil)
			continue
		}
		if h, ok := v.hashAt[c.Size]; ok && !bytes.Equal(h, c.Head) {
			v.fail(c.Size, FailCheckpointMismatch, fmt.Sprintf("%s checkpoint head differs from the entry_hash at seq %d", where, c.Size), c.Head, h)
		}
	}
}

// first returns the failure with the lowest seq, if any.
func (v *chainVerifier) first() *Failure {
	if len(v.failures) == 0 {
		return nil
	}
	sort.SliceStable(v.failures, func(i, j int) bool { return v.failures[i].Seq < v.failures[j].Seq })
	return &v.failures[0]
}
