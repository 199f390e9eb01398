package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"

	"github.com/pgtenant/pgtenant/config"
)

// VerifyOptions selects what VerifyDB checks.
type VerifyOptions struct {
	// Region limits verification to one region ("" = all).
	Region string
	// Account limits verification to one chain ("" = all; "-" = the no-tenant chain).
	Account string
	// PublicKey verifies checkpoint signatures; required when checkpoints exist.
	PublicKey ed25519.PublicKey
	// CheckpointDir holds the external checkpoint copies ("" = none).
	CheckpointDir string
	// SinceCheckpoints are signed tree checkpoints (notes) the verifier
	// kept: the current tree must extend each (--since-checkpoint).
	SinceCheckpoints [][]byte
}

// Report is the outcome of a verification.
type Report struct {
	OK       bool           `json:"ok"`
	Regions  []RegionReport `json:"regions"`
	Failures []Failure      `json:"failures"`
}

// RegionReport counts what was verified in one region.
type RegionReport struct {
	Region              string `json:"region"`
	Chains              int    `json:"chains"`
	Rows                int64  `json:"rows"`
	Checkpoints         int    `json:"checkpoints"`
	Leaves              int64  `json:"leaves"`
	ExternalCheckpoints int    `json:"external_checkpoints"`
}

// ErrCannotVerify wraps every reason verification could not run to the end
// (database unreachable, key missing, unreadable checkpoint copies).
var ErrCannotVerify = errors.New("cannot verify")

// VerifyDB verifies every selected chain in the regions' audit databases,
// logged in as each region's admin role. It never modifies anything. An
// error (wrapping ErrCannotVerify) means the verification is incomplete;
// otherwise the report lists the first failure of each broken chain.
func VerifyDB(ctx context.Context, regions map[string]config.Region, opts VerifyOptions) (*Report, error) {
	rep := &Report{OK: true, Failures: []Failure{}}
	names := sortedRegions(regions)
	if opts.Region != "" {
		if _, ok := regions[opts.Region]; !ok {
			return nil, fmt.Errorf("%w: region %q is not configured", ErrCannotVerify, opts.Region)
		}
		names = []string{opts.Region}
	}
	for _, name := range names {
		rr, fails, err := verifyRegion(ctx, name, regions[name], opts)
		if err != nil {
			return nil, fmt.Errorf("%w: region %s: %w", ErrCannotVerify, name, err)
		}
		rep.Regions = append(rep.Regions, rr)
		rep.Failures = append(rep.Failures, fails...)
	}
	if opts.Account != "" {
		found := 0
		for _, rr := range rep.Regions {
			found += rr.Chains
		}
		if found == 0 {
			return nil, fmt.Errorf("%w: no audit chain for account %q", ErrCannotVerify, opts.Account)
		}
	}
	rep.OK = len(rep.Failures) == 0
	return rep, nil
}

func verifyRegion(ctx context.Context, name string, r config.Region, opts VerifyOptions) (RegionReport, []Failure, error) {
	rr := RegionReport{Region: name}
	conn, err := connectAdmin(ctx, name, r)
	if err != nil {
		return rr, nil, err
	}
	defer conn.Close(context.Background())
	var present bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('pgtenant_audit.events') IS NOT NULL`).Scan(&present); err != nil {
		return rr, nil, err
	}
	external, err := readExternal(opts.CheckpointDir, name)
	if err != nil {
		return rr, nil, fmt.Errorf("checkpoint copies: %w", err)
	}
	var chains []string
	if present {
		if chains, err = chainIDs(ctx, conn); err != nil {
			return rr, nil, err
		}
	} else if len(external) == 0 {
		return rr, nil, errors.New("schema pgtenant_audit does not exist (run `pgtenant audit init`)")
	}
	for c := range external {
		if !slices.Contains(chains, c) {
			chains = append(chains, c)
		}
	}
	slices.Sort(chains)
	var fails []Failure
	for _, chain := range chains {
		if opts.Account != "" && chain != opts.Account {
			continue
		}
		rr.Chains++
		v := newChainVerifier(name, chain)
		var cps []Checkpoint
		if present {
			if cps, err = dbCheckpoints(ctx, conn, chain); err != nil {
				return rr, nil, err
			}
		}
		ext := external[chain]
		if (len(cps) > 0 || len(ext) > 0) && opts.PublicKey == nil {
			return rr, nil, errors.New("checkpoints exist but no public key is set (audit.seal_public_key or --public-key)")
		}
		for _, c := range append(slices.Clone(cps), ext...) {
			v.want(c.Size)
		}
		var headSeq int64
		var head []byte
		var hasHead bool
		if present {
			if headSeq, head, hasHead, err = headOf(ctx, conn, chain); err != nil {
				return rr, nil, err
			}
			v.want(headSeq)
			purges, err := dbPurges(ctx, conn, chain)
			if err != nil {
				return rr, nil, err
			}
			v.acceptPurges(purges, opts.PublicKey, "database")
			err = streamChain(ctx, conn, chain, 1, 0, func(row *Row) error {
				rr.Rows++
				v.add(row)
				return ctx.Err()
			})
			if err != nil {
				return rr, nil, err
			}
		}
		v.checkPurges()
		if hasHead {
			v.checkHead(headSeq, head)
		} else if v.last() > 0 && !v.rowsBroken {
			v.fail(1, FailHeadMismatch, "chain has rows but no chain_heads row", nil, nil)
		}
		v.checkCheckpoints(cps, opts.PublicKey, "database")
		v.checkCheckpoints(ext, opts.PublicKey, "external copy")
		rr.Checkpoints += len(cps)
		rr.ExternalCheckpoints += len(ext)
		if f := v.first(); f != nil {
			fails = append(fails, *f)
		}
	}
	// The tree spans every chain of the region: checked when the whole
	// region is verified, or against checkpoints the verifier kept.
	if present && (opts.Account == "" || len(opts.SinceCheckpoints) > 0) {
		tf, leaves, err := verifyTree(ctx, conn, name, opts)
		if err != nil {
			return rr, nil, fmt.Errorf("tree: %w", err)
		}
		rr.Leaves = leaves
		fails = append(fails, tf...)
	}
	return rr, fails, nil
}
