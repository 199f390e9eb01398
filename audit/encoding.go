package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
)

// HashVersion is the version of the content encoding written by this build
// (README.md, "Hash encoding"). It is stored in every row's hash_version
// column and is the second byte hashed into content_hash.
const HashVersion = 1

// HashVersionCommitted is the content encoding of rows recorded with
// audit.statement: full: the statement text is kept outside the hashed
// content, which commits to it with statementCommitment, so that
// `audit erase` can remove the text while every hash still verifies.
const HashVersionCommitted = 2

// HashVersionAttributed is the content encoding of rows that record who
// acted and how (README.md, "Hash version 3"): version 1's encoding (or
// version 2's when the row has a statement commitment) followed by role,
// actor, purpose, ticket and rewritten. The Recorder uses it only for rows
// where one of them is set, so rows without them keep the encodings older
// verifiers know; the verifier requires those five columns to be NULL in
// rows of versions 1 and 2, which do not cover them.
const HashVersionAttributed = 3

// tagStatement domain-separates the statement commitment.
const tagStatement = 0x40

// statementCommitment is SHA-256(0x40 || salt || statement).
func statementCommitment(salt []byte, statement string) []byte {
	h := sha256.New()
	h.Write([]byte{tagStatement})
	h.Write(salt)
	h.Write([]byte(statement))
	return h.Sum(nil)
}

// Domain-separation prefixes of the three hashes.
const (
	tagContent = 0x00
	tagEntry   = 0x10
	tagGenesis = 0x20
)

// HashSize is the length of every hash in the chain (SHA-256).
const HashSize = sha256.Size

// Row is one row of pgtenant_audit.events. Pointer fields are nullable
// columns (nil = NULL); a nil Tables is NULL, an empty non-nil one is '{}'.
type Row struct {
	ChainID       string
	Seq           int64
	EventID       uuid.UUID
	TS            time.Time
	Kind          string
	AccountID     *string
	Subject       *string
	ClientUser    *string
	ClientAddr    *string // inet in PostgreSQL's text form, e.g. 10.0.0.7 or ::1
	Region        string
	SessionID     *string
	ProxyInstance *string
	Statement     *string
	Tables        []string
	Verdict       *string
	Reason        *string
	SQLState      *string
	Rows          *int64
	DurationUS    *int64
	HashVersion   int16
	ContentHash   []byte
	PrevHash      []byte
	EntryHash     []byte
	// StatementSalt and StatementCommitment (hash version 2): the salt and
	// SHA-256(0x40 || salt || statement); erasing the text clears Statement
	// and StatementSalt and keeps the commitment.
	StatementSalt       []byte
	StatementCommitment []byte
	// Role, Actor, Purpose, Ticket and Rewritten (hash version 3): the
	// caller's role claim, a support session's acting person, purpose and
	// ticket, and whether pgtenant rewrote the statement. Rewritten is nil
	// unless true (empty optional values are NULL).
	Role, Actor, Purpose, Ticket *string
	Rewritten                    *bool
	// Purged marks a row redacted by a retention purge: its personal fields
	// are NULL and its content_hash is taken as stored, covered by a signed
	// purge record (purge.go).
	Purged bool
}

// encoder appends the length-prefixed encoding of README.md to buf.
type encoder struct{ buf []byte }

func (e *encoder) null()    { e.buf = append(e.buf, 0) }
func (e *encoder) present() { e.buf = append(e.buf, 1) }

func (e *encoder) bytes(b []byte) {
	e.present()
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(b)))
	e.buf = append(e.buf, b...)
}

func (e *encoder) str(s string) {
	e.present()
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) optStr(s *string) {
	if s == nil {
		e.null()
		return
	}
	e.str(*s)
}

// optBool encodes a boolean as 0x00 (NULL) or 0x01 || 0x00 (false) or
// 0x01 || 0x01 (true).
func (e *encoder) optBool(b *bool) {
	if b == nil {
		e.null()
		return
	}
	e.present()
	if *b {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

func (e *encoder) int64(v int64) {
	e.present()
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(v))
}

func (e *encoder) optInt64(v *int64) {
	if v == nil {
		e.null()
		return
	}
	e.int64(*v)
}

func (e *encoder) strArray(a []string) {
	if a == nil {
		e.null()
		return
	}
	e.present()
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(a)))
	for _, s := range a {
		e.str(s)
	}
}

// addr encodes an inet as its 4 or 16 address bytes; text that is not a
// plain address (which the Recorder never writes) is encoded as its bytes.
func (e *encoder) addr(s *string) {
	if s == nil {
		e.null()
		return
	}
	a, err := netip.ParseAddr(*s)
	if err != nil || a.Zone() != "" {
		e.str(*s)
		return
	}
	e.bytes(a.AsSlice())
}

// EncodeContent returns the content encoding of r in its hash version:
// every field except seq and the hashes, in the fixed order of README.md.
func (r *Row) EncodeContent(buf []byte) []byte {
	switch r.HashVersion {
	case HashVersionCommitted:
		return r.encodeContent(buf, HashVersionCommitted, true)
	case HashVersionAttributed:
		return r.encodeContent(buf, HashVersionAttributed, r.StatementCommitment != nil)
	}
	return r.encodeContent(buf, HashVersion, false)
}

// hasAttribution reports whether r carries a field only hash version 3
// covers.
func (r *Row) hasAttribution() bool {
	return r.Role != nil || r.Actor != nil || r.Purpose != nil || r.Ticket != nil || r.Rewritten != nil
}

// encodeContent writes encoding version v: committed selects the statement
// commitment instead of the text in the statement position (version 2, and
// version 3 rows with a commitment); version 3 appends role, actor,
// purpose, ticket and rewritten.
func (r *Row) encodeContent(buf []byte, v int16, committed bool) []byte {
	e := encoder{buf: buf}
	e.buf = append(e.buf, tagContent, byte(v))
	e.bytes(r.EventID[:])
	e.str(r.ChainID)
	e.str(r.Region)
	e.int64(r.TS.UnixMicro())
	e.str(r.Kind)
	e.optStr(r.AccountID)
	e.optStr(r.Subject)
	e.optStr(r.ClientUser)
	e.addr(r.ClientAddr)
	e.optStr(r.SessionID)
	e.optStr(r.ProxyInstance)
	if committed {
		if r.StatementCommitment == nil {
			e.null()
		} else {
			e.bytes(r.StatementCommitment)
		}
	} else {
		e.optStr(r.Statement)
	}
	e.strArray(r.Tables)
	e.optStr(r.Verdict)
	e.optStr(r.Reason)
	e.optStr(r.SQLState)
	e.optInt64(r.Rows)
	e.optInt64(r.DurationUS)
	if v == HashVersionAttributed {
		e.optStr(r.Role)
		e.optStr(r.Actor)
		e.optStr(r.Purpose)
		e.optStr(r.Ticket)
		e.optBool(r.Rewritten)
	}
	return e.buf
}

// ComputeContentHash returns SHA-256 of r's content encoding.
func (r *Row) ComputeContentHash() []byte {
	// The encoding goes through a pooled buffer: a local array escaped
	// (EncodeContent returns its argument), 512 bytes of garbage per event.
	bp := encodePool.Get().(*[]byte)
	buf := r.EncodeContent((*bp)[:0])
	sum := sha256.Sum256(buf)
	if cap(buf) <= 64<<10 { // a huge statement's buffer is not kept
		*bp = buf
		encodePool.Put(bp)
	}
	return sum[:]
}

// encodePool holds content-encoding buffers for ComputeContentHash.
var encodePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// EntryHash links a row into its chain:
// SHA-256(0x10 || lp(chain_id) || seq as int64 BE || prev_hash || content_hash).
func EntryHash(chainID string, seq int64, prevHash, contentHash []byte) []byte {
	e := encoder{buf: make([]byte, 0, 1+5+len(chainID)+8+2*HashSize)}
	e.buf = append(e.buf, tagEntry)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(chainID)))
	e.buf = append(e.buf, chainID...)
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(seq))
	e.buf = append(e.buf, prevHash...)
	e.buf = append(e.buf, contentHash...)
	sum := sha256.Sum256(e.buf)
	return sum[:]
}

// GenesisHash is the prev_hash of a chain's first row (seq 1):
// SHA-256(0x20 || lp(region) || lp(chain_id)). It ties the chain to its
// region, so a chain copied to another region does not verify.
func GenesisHash(region, chainID string) []byte {
	e := encoder{}
	e.buf = append(e.buf, tagGenesis)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(region)))
	e.buf = append(e.buf, region...)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(chainID)))
	e.buf = append(e.buf, chainID...)
	sum := sha256.Sum256(e.buf)
	return sum[:]
}

// Seal assigns seq and prev to r and computes its content and entry hashes.
func (r *Row) Seal(seq int64, prev []byte) {
	r.Seq = seq
	r.HashVersion = r.hashVersionFor()
	r.ContentHash = r.ComputeContentHash()
	r.PrevHash = prev
	r.EntryHash = EntryHash(r.ChainID, seq, prev, r.ContentHash)
}

// hashVersionFor is the hash version a new row is written in: 3 when it
// carries a version-3 field, else 2 with a statement commitment, else 1.
func (r *Row) hashVersionFor() int16 {
	switch {
	case r.hasAttribution():
		return HashVersionAttributed
	case r.StatementCommitment != nil:
		return HashVersionCommitted
	}
	return HashVersion
}
