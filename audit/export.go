package audit

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgtenant/pgtenant/config"
)

// ExportOptions selects what Export writes.
type ExportOptions struct {
	Account string    // chain to export (required; "-" = the no-tenant chain)
	Region  string    // "" = every region holding the chain
	Since   time.Time // zero = from the start
	Until   time.Time // zero = up to the head
	Format  string    // jsonl (default) or csv
}

// ExportFormat identifies an export's header line.
const ExportFormat = "pgtenant-audit-export"

// Lines of a JSON-lines export: a header, then events, then checkpoints,
// then the region's signed tree checkpoint (when there is one).
type (
	headerLine struct {
		Type string `json:"type"`
		*exportHeader
	}
	eventLine struct {
		Type string `json:"type"`
		*RowJSON
		// Leaf and Proof: the event's index in its region's Merkle tree and
		// an RFC 6962 inclusion proof (base64 hashes) against the export's
		// tree checkpoint, when the event is inside that checkpoint.
		Leaf  *int64   `json:"leaf,omitempty"`
		Proof []string `json:"proof,omitempty"`
	}
	// purgeLine carries a signed purge record of the chain.
	purgeLine struct {
		Type string `json:"type"`
		*PurgeRecord
	}
	// treeCheckpointLine carries a region's signed tree checkpoint (C2SP note).
	treeCheckpointLine struct {
		Type string `json:"type"`
		Note string `json:"note"`
	}
	checkpointLine struct {
		Type string `json:"type"`
		*Checkpoint
	}
)

type exportHeader struct {
	Format     string `json:"format"`
	Version    int    `json:"version"`
	ExportedAt string `json:"exported_at"`
	Since      string `json:"since,omitempty"`
	Until      string `json:"until,omitempty"`
	FirstSeq   int64  `json:"first_seq"`
	LastSeq    int64  `json:"last_seq"`
	Complete   bool   `json:"complete"` // the range reaches the chain head: checkpoints beyond it mean truncation
}

// Export writes the account's chain (a contiguous seq range covering
// [Since, Until)) and all its checkpoints. It returns the number of rows.
func Export(ctx context.Context, regions map[string]config.Region, opts ExportOptions, w io.Writer) (int64, error) {
	if opts.Account == "" {
		return 0, errors.New("export: an account is required")
	}
	format := opts.Format
	if format == "" {
		format = "jsonl"
	}
	if format != "jsonl" && format != "csv" {
		return 0, fmt.Errorf("export: format %q is not jsonl or csv", format)
	}
	names := sortedRegions(regions)
	if opts.Region != "" {
		if _, ok := regions[opts.Region]; !ok {
			return 0, fmt.Errorf("export: region %q is not configured", opts.Region)
		}
		names = []string{opts.Region}
	}
	bw := bufio.NewWriter(w)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(bw)
		if err := cw.Write(csvHeader); err != nil {
			return 0, err
		}
	}
	var total int64
	found := false
	for _, name := range names {
		n, ok, err := exportRegion(ctx, name, regions[name], opts, bw, cw)
		if err != nil {
			return total, fmt.Errorf("export: region %s: %w", name, err)
		}
		total += n
		found = found || ok
	}
	if !found {
		return 0, fmt.Errorf("export: no audit chain for account %q", opts.Account)
	}
	if cw != nil {
		cw.Flush()
		if err := cw.Error(); err != nil {
			return total, err
		}
	}
	return total, bw.Flush()
}

// exportRegion writes the chain's rows and checkpoints held in one region;
// found is false when the region has no such chain.
func exportRegion(ctx context.Context, name string, r config.Region, opts ExportOptions, bw *bufio.Writer, cw *csv.Writer) (int64, bool, error) {
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return 0, false, err
	}
	defer conn.Close(context.Background())
	headSeq, _, ok, err := headOf(ctx, conn, opts.Account)
	if err != nil || !ok {
		return 0, false, err
	}
	first, last := int64(1), headSeq
	if !opts.Since.IsZero() {
		if err := conn.QueryRow(ctx, `SELECT coalesce(min(seq), 0) FROM pgtenant_audit.events WHERE chain_id = $1 AND ts >= $2`,
			opts.Account, opts.Since).Scan(&first); err != nil {
			return 0, true, err
		}
	}
	if !opts.Until.IsZero() {
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM pgtenant_audit.events WHERE chain_id = $1 AND ts < $2`,
			opts.Account, opts.Until).Scan(&last); err != nil {
			return 0, true, err
		}
	}
	cps, err := dbCheckpoints(ctx, conn, opts.Account)
	if err != nil {
		return 0, true, err
	}
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	if cw == nil {
		h := &exportHeader{Format: ExportFormat, Version: 1, ExportedAt: time.Now().UTC().Format(time.RFC3339),
			FirstSeq: first, LastSeq: last, Complete: last == headSeq}
		if !opts.Since.IsZero() {
			h.Since = opts.Since.UTC().Format(time.RFC3339Nano)
		}
		if !opts.Until.IsZero() {
			h.Until = opts.Until.UTC().Format(time.RFC3339Nano)
		}
		if err := enc.Encode(headerLine{Type: "header", exportHeader: h}); err != nil {
			return 0, true, err
		}
	}
	proofs, note, err := exportProofs(ctx, conn, name, opts.Account, cw == nil)
	if err != nil {
		return 0, true, err
	}
	var n int64
	if first > 0 && last >= first {
		err = streamChain(ctx, conn, opts.Account, first, last, func(row *Row) error {
			n++
			j := row.ToJSON(false)
			if cw != nil {
				return cw.Write(csvEvent(j))
			}
			line := eventLine{Type: "event", RowJSON: &j}
			if p, ok := proofs[row.Seq]; ok {
				line.Leaf, line.Proof = &p.leaf, p.hashes
			}
			return enc.Encode(line)
		})
		if err != nil {
			return n, true, err
		}
	}
	for i := range cps {
		if cw != nil {
			if err := cw.Write(csvCheckpoint(cps[i])); err != nil {
				return n, true, err
			}
			continue
		}
		if err := enc.Encode(checkpointLine{Type: "checkpoint", Checkpoint: &cps[i]}); err != nil {
			return n, true, err
		}
	}
	if cw == nil {
		purges, err := dbPurges(ctx, conn, opts.Account)
		if err != nil {
			return n, true, err
		}
		for i := range purges {
			if err := enc.Encode(purgeLine{Type: "purge", PurgeRecord: &purges[i]}); err != nil {
				return n, true, err
			}
		}
	}
	if note != nil {
		if err := enc.Encode(treeCheckpointLine{Type: "tree_checkpoint", Note: string(note)}); err != nil {
			return n, true, err
		}
	}
	return n, true, nil
}

var csvHeader = []string{"record", "chain_id", "seq", "event_id", "ts", "kind", "account_id", "subject", "client_user",
	"client_addr", "region", "session_id", "proxy_instance", "statement", "tables", "verdict", "reason", "sqlstate",
	"rows", "duration_us", "hash_version", "content_hash", "prev_hash", "entry_hash", "key_id", "signature",
	"role", "actor", "purpose", "ticket", "rewritten"}

func csvEvent(j RowJSON) []string {
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	i := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	b := func(p *bool) string {
		if p == nil {
			return ""
		}
		return strconv.FormatBool(*p)
	}
	tables := ""
	if j.Tables != nil {
		b, _ := json.Marshal(j.Tables)
		tables = string(b)
	}
	return []string{"event", j.ChainID, strconv.FormatInt(j.Seq, 10), j.EventID, j.TS, j.Kind, s(j.AccountID), s(j.Subject),
		s(j.ClientUser), s(j.ClientAddr), j.Region, s(j.SessionID), s(j.ProxyInstance), s(j.Statement), tables,
		s(j.Verdict), s(j.Reason), s(j.SQLState), i(j.Rows), i(j.DurationUS), strconv.Itoa(int(j.HashVersion)),
		j.ContentHash, j.PrevHash, j.EntryHash, "", "", s(j.Role), s(j.Actor), s(j.Purpose), s(j.Ticket), b(j.Rewritten)}
}

func csvCheckpoint(c Checkpoint) []string {
	row := make([]string, len(csvHeader))
	row[0], row[1], row[2], row[4], row[10] = "checkpoint", c.ChainID, strconv.FormatInt(c.Size, 10), c.TS.Format(tsLayout), c.Region
	row[23], row[24], row[25] = hex.EncodeToString(c.Head), c.KeyID, hex.EncodeToString(c.Signature)
	return row
}

// VerifyExport verifies a JSON-lines export offline: every row's hashes and
// links (the genesis hash when the export starts at seq 1), contiguous seq,
// and every checkpoint's signature and head. Checkpoints beyond the last
// exported row are truncation when the export claims to reach the head.
func VerifyExport(r io.Reader, pub ed25519.PublicKey) (*Report, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	verifiers := map[[2]string]*chainVerifier{}
	cps := map[[2]string][]Checkpoint{}
	var order [][2]string
	complete := true
	rows := map[[2]string]int64{}
	sawHeader := false
	var firstSeq int64
	var treeNotes [][]byte
	var included []inclusion
	pending := map[[2]string][]*Row{}
	purges := map[[2]string][]PurgeRecord{}
	for n := 1; sc.Scan(); n++ {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var probe struct {
			Type     string `json:"type"`
			Complete *bool  `json:"complete"`
			Format   string `json:"format"`
			FirstSeq int64  `json:"first_seq"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
		}
		switch probe.Type {
		case "header":
			if probe.Format != ExportFormat {
				return nil, fmt.Errorf("%w: line %d: not a %s", ErrCannotVerify, n, ExportFormat)
			}
			sawHeader = true
			if probe.Complete != nil && !*probe.Complete {
				complete = false
			}
			firstSeq = probe.FirstSeq
		case "event":
			var j RowJSON
			if err := json.Unmarshal(line, &j); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			row, err := j.Row()
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			k := [2]string{row.Region, row.ChainID}
			v, ok := verifiers[k]
			if !ok {
				v = newChainVerifier(row.Region, row.ChainID)
				v.partial = firstSeq > 1
				verifiers[k] = v
				order = append(order, k)
			}
			rows[k]++
			var lp struct {
				Leaf  *int64   `json:"leaf"`
				Proof []string `json:"proof"`
			}
			if err := json.Unmarshal(line, &lp); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			if lp.Leaf != nil {
				included = append(included, inclusion{region: row.Region, chain: row.ChainID, seq: row.Seq,
					leaf: *lp.Leaf, entry: row.EntryHash, proof: lp.Proof})
			}
			pending[k] = append(pending[k], row)
		case "purge":
			var p PurgeRecord
			if err := json.Unmarshal(line, &p); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			k := [2]string{p.Region, p.ChainID}
			purges[k] = append(purges[k], p)
		case "tree_checkpoint":
			var t treeCheckpointLine
			if err := json.Unmarshal(line, &t); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			treeNotes = append(treeNotes, []byte(t.Note))
		case "checkpoint":
			var c Checkpoint
			if err := json.Unmarshal(line, &c); err != nil {
				return nil, fmt.Errorf("%w: line %d: %w", ErrCannotVerify, n, err)
			}
			k := [2]string{c.Region, c.ChainID}
			cps[k] = append(cps[k], c)
			if _, ok := verifiers[k]; !ok {
				verifiers[k] = newChainVerifier(c.Region, c.ChainID)
				order = append(order, k)
			}
		default:
			return nil, fmt.Errorf("%w: line %d: unknown record type %q", ErrCannotVerify, n, probe.Type)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCannotVerify, err)
	}
	if !sawHeader {
		return nil, fmt.Errorf("%w: no %s header line", ErrCannotVerify, ExportFormat)
	}
	rep := &Report{Failures: []Failure{}}
	for _, k := range order {
		v := verifiers[k]
		// Purge records first: they say which rows may be redacted.
		v.acceptPurges(purges[k], pub, "export")
		for _, row := range pending[k] {
			v.hashAt[row.Seq] = row.EntryHash // checked below only if the row verified
			v.add(row)
			if v.rowsBroken {
				delete(v.hashAt, row.Seq)
			}
		}
		v.checkPurges()
		list := cps[k]
		if len(list) > 0 && pub == nil {
			return nil, fmt.Errorf("%w: the export has checkpoints but no public key was given", ErrCannotVerify)
		}
		if !complete {
			// A range export: only checkpoints inside the range can be checked.
			list = slices.DeleteFunc(slices.Clone(list), func(c Checkpoint) bool { return c.Size > v.last() })
		}
		v.checkCheckpoints(list, pub, "export")
		rep.Regions = append(rep.Regions, RegionReport{Region: k[0], Chains: 1, Rows: rows[k], Checkpoints: len(cps[k])})
		if f := v.first(); f != nil {
			rep.Failures = append(rep.Failures, *f)
		}
	}
	tf, err := checkInclusions(treeNotes, included, pub)
	if err != nil {
		return nil, err
	}
	rep.Failures = append(rep.Failures, tf...)
	rep.OK = len(rep.Failures) == 0
	return rep, nil
}
