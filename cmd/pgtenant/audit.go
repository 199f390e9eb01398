package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/config"
)

func init() { register(newAuditCmd) }

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Manage and verify the hash-chained audit trail",
		Long: `Manage and verify the hash-chained audit trail (schema pgtenant_audit in each
region's audit database).

init, seal, verify and export log in as each region's admin role
(regions.X.admin_user and admin_password*, default the service user): init must
be able to create roles and schemas; the others must be able to read
pgtenant_audit (a superuser, the schema owner, or a member of
pgtenant_audit_reader). The proxy itself only ever calls the append functions.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCode(exitUsage, errors.New("audit: missing subcommand (init, verify, seal or export)"))
		},
	}
	cmd.AddCommand(newAuditInitCmd(), newAuditVerifyCmd(), newAuditSealCmd(), newAuditExportCmd(), newAuditPurgeCmd(), newAuditEraseCmd())
	return cmd
}

// loadAuditConfig loads --config and builds a logger on stderr.
func loadAuditConfig(cmd *cobra.Command, path string) (*config.Config, *slog.Logger, error) {
	if path == "" {
		return nil, nil, withCode(exitUsage, errors.New("--config is required"))
	}
	// the audit commands run as the admin role: they need neither the JWT
	// secret nor the service role's password
	cfg, err := config.LoadAdmin(path)
	if err != nil {
		return nil, nil, withCode(exitUsage, err)
	}
	level := new(slog.LevelVar)
	return cfg, newLogger(cmd.ErrOrStderr(), cfg.Log, level), nil
}

func newAuditInitCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "init --config FILE",
		Short: "Create or upgrade the audit schema in every region (idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadAuditConfig(cmd, path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := audit.Init(ctx, cfg.Regions, log); err != nil {
				return withCode(exitFailed, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit schema version %d ready in %d region(s)\n", audit.SchemaVersion, len(cfg.Regions))
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "configuration file (YAML)")
	return cmd
}

type verifyFlags struct {
	config, region, account, file, publicKey string
	since                                    []string
	json                                     bool
}

func newAuditVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify (--config FILE [--region R] [--account ID] [--since-checkpoint FILE]... | --file EXPORT --public-key KEY) [--json]",
		Short: "Verify the audit chains and their signed checkpoints",
		Long: `Verify the audit chains and their signed checkpoints: the genesis hash, every
content and entry hash, contiguous seq, the links, the chain heads, checkpoint
signatures and sizes, and the checkpoint copies in audit.checkpoint_dir. It never
repairs anything.

Exit status: 0 intact, 1 tampered (the first broken entry of each broken chain is
printed with the failure kind), 2 cannot verify.

Each region's Merkle tree (every chained event is a leaf) is rebuilt from the
events and must extend every signed tree checkpoint (C2SP note) in the database,
in audit.checkpoint_dir and given with --since-checkpoint: a checkpoint the
verifier kept proves the log only grew since, even if the database's copies and
every hash were rewritten.

With --file it verifies an export written by 'pgtenant audit export' offline.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML)")
	fl.StringVar(&f.region, "region", "", "verify only this region")
	fl.StringVar(&f.account, "account", "", "verify only this account's chain ('-' = events with no tenant)")
	fl.StringVar(&f.file, "file", "", "verify this export file offline instead of the databases ('-' = stdin)")
	fl.StringVar(&f.publicKey, "public-key", "", "Ed25519 public key (PEM) for checkpoint signatures (default audit.seal_public_key)")
	fl.StringArrayVar(&f.since, "since-checkpoint", nil, "a signed tree checkpoint (note file) kept from an earlier seal; the current tree must extend it (repeatable)")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON")
	return cmd
}

func (f *verifyFlags) run(cmd *cobra.Command) error {
	var (
		rep *audit.Report
		err error
	)
	keyPath := f.publicKey
	if f.file != "" {
		if f.config != "" || f.region != "" || f.account != "" {
			return withCode(exitUsage, errors.New("--file cannot be combined with --config, --region or --account"))
		}
		rep, err = f.verifyFile(keyPath)
	} else {
		cfg, _, lerr := loadAuditConfig(cmd, f.config)
		if lerr != nil {
			return lerr
		}
		if keyPath == "" {
			keyPath = cfg.Audit.SealPublicKey
		}
		opts := audit.VerifyOptions{Region: f.region, Account: f.account, CheckpointDir: cfg.Audit.CheckpointDir}
		for _, p := range f.since {
			b, rerr := os.ReadFile(p)
			if rerr != nil {
				return withCode(exitUsage, fmt.Errorf("--since-checkpoint: %w", rerr))
			}
			opts.SinceCheckpoints = append(opts.SinceCheckpoints, b)
		}
		if keyPath != "" {
			if opts.PublicKey, err = audit.LoadPublicKey(keyPath); err != nil {
				return withCode(exitUsage, fmt.Errorf("public key: %w", err))
			}
		}
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		rep, err = audit.VerifyDB(ctx, cfg.Regions, opts)
	}
	if err != nil {
		if f.json {
			_ = json.NewEncoder(cmd.OutOrStdout()).Encode(map[string]any{"ok": false, "error": err.Error()})
		}
		return withCode(exitUsage, err)
	}
	if err := printReport(cmd.OutOrStdout(), rep, f.json); err != nil {
		return withCode(exitUsage, err)
	}
	if !rep.OK {
		return withCode(exitFailed, fmt.Errorf("audit trail tampered: %d broken chain(s)", len(rep.Failures)))
	}
	return nil
}

func (f *verifyFlags) verifyFile(keyPath string) (*audit.Report, error) {
	var in io.Reader = os.Stdin
	if f.file != "-" {
		fh, err := os.Open(f.file)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", audit.ErrCannotVerify, err)
		}
		defer fh.Close()
		in = fh
	}
	var pub []byte
	if keyPath != "" {
		k, err := audit.LoadPublicKey(keyPath)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub = k
	}
	return audit.VerifyExport(in, pub)
}

func printReport(w io.Writer, rep *audit.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, r := range rep.Regions {
		fmt.Fprintf(w, "region %s: %d chain(s), %d row(s), %d checkpoint(s), %d external checkpoint copies, %d tree leaves\n",
			r.Region, r.Chains, r.Rows, r.Checkpoints, r.ExternalCheckpoints, r.Leaves)
	}
	for _, fl := range rep.Failures {
		fmt.Fprintf(w, "BROKEN %s\n", fl)
	}
	if rep.OK {
		_, err := fmt.Fprintln(w, "ok: every chain verifies")
		return err
	}
	return nil
}

func newAuditSealCmd() *cobra.Command {
	var path, keyPath string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "seal --config FILE --key KEYFILE [--every DURATION]",
		Short: "Sign checkpoints of every chain (once, or every DURATION until stopped)",
		Long: `Sign an Ed25519 checkpoint (chain, size, head, time, key id) of every chain whose
head moved since its last checkpoint, after verifying the rows added since then,
into pgtenant_audit.checkpoints and into audit.checkpoint_dir.

KEYFILE is an Ed25519 private key in PKCS#8 PEM, as
'openssl genpkey -algorithm ed25519 -out seal.pem' writes it; its public half
('openssl pkey -in seal.pem -pubout') is audit.seal_public_key. The proxy never
holds this key.

It also signs each region's Merkle tree (every chained event is a leaf) as a
C2SP checkpoint note into pgtenant_audit.tree_checkpoints and
audit.checkpoint_dir/<region>/tree-<size>.note. With --every it first purges
expired events (see 'pgtenant audit purge').`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadAuditConfig(cmd, path)
			if err != nil {
				return err
			}
			if keyPath == "" {
				return withCode(exitUsage, errors.New("--key is required"))
			}
			key, err := audit.LoadPrivateKey(keyPath)
			if err != nil {
				return withCode(exitUsage, fmt.Errorf("key: %w", err))
			}
			if every < 0 {
				return withCode(exitUsage, errors.New("--every must not be negative"))
			}
			warnSealConfig(log, cfg.Audit)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			for {
				if every > 0 {
					// Periodic sealing also enforces retention.
					if pres, err := audit.Purge(ctx, cfg.Regions, cfg.Audit, key, time.Now(), log); err != nil {
						log.Error("audit purge failed", "error", err)
					} else if pres.Chains > 0 {
						fmt.Fprintf(cmd.OutOrStdout(), "purged %d row(s) in %d chain(s)\n", pres.Redacted, pres.Chains)
					}
				}
				res, err := audit.Seal(ctx, cfg.Regions, key, cfg.Audit.CheckpointDir, log)
				if err != nil && every == 0 {
					return withCode(exitUsage, err)
				}
				if err != nil {
					log.Error("audit seal failed", "error", err)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "sealed %d checkpoint(s), %d unchanged, %d tree checkpoint(s)\n", res.Sealed, res.Skipped, res.TreesSealed)
					for _, fl := range res.Failures {
						fmt.Fprintf(cmd.OutOrStdout(), "NOT SEALED %s\n", fl)
					}
				}
				if every == 0 {
					if len(res.Failures) > 0 {
						return withCode(exitFailed, fmt.Errorf("%d chain(s) failed verification and were not sealed", len(res.Failures)))
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "configuration file (YAML)")
	fl.StringVar(&keyPath, "key", "", "Ed25519 private key, PKCS#8 PEM")
	fl.DurationVar(&every, "every", 0, "seal again every DURATION until SIGINT/SIGTERM (0 = once)")
	return cmd
}

func newAuditExportCmd() *cobra.Command {
	var path, since, until string
	var opts audit.ExportOptions
	cmd := &cobra.Command{
		Use:   "export --config FILE --account ID [--since T] [--until T] [--format jsonl|csv]",
		Short: "Write a tenant's audit chain and checkpoints",
		Long: `Write a tenant's audit chain with its hashes, plus its signed checkpoints, on
standard output. --since and --until (RFC 3339, or YYYY-MM-DD) select the
contiguous seq range covering that time span. The jsonl format can be verified
offline with 'pgtenant audit verify --file EXPORT --public-key KEY'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadAuditConfig(cmd, path)
			if err != nil {
				return err
			}
			if opts.Account == "" {
				return withCode(exitUsage, errors.New("--account is required"))
			}
			if opts.Format != "jsonl" && opts.Format != "csv" {
				return withCode(exitUsage, fmt.Errorf("--format: %q is not jsonl or csv", opts.Format))
			}
			if opts.Since, err = parseTime("--since", since); err != nil {
				return withCode(exitUsage, err)
			}
			if opts.Until, err = parseTime("--until", until); err != nil {
				return withCode(exitUsage, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if _, err := audit.Export(ctx, cfg.Regions, opts, cmd.OutOrStdout()); err != nil {
				return withCode(exitFailed, err)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "configuration file (YAML)")
	fl.StringVar(&opts.Account, "account", "", "account id ('-' = events with no tenant)")
	fl.StringVar(&opts.Region, "region", "", "only this region")
	fl.StringVar(&since, "since", "", "first event time (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&until, "until", "", "end of the time span, exclusive (RFC 3339 or YYYY-MM-DD)")
	fl.StringVar(&opts.Format, "format", "jsonl", "jsonl or csv")
	return cmd
}

func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s: %q is not RFC 3339 or YYYY-MM-DD", flag, s)
}

// warnSealConfig warns about sealing settings that leave tampering
// undetectable: without external checkpoint copies a deleted or replaced
// chain and its checkpoint rows can be rewritten together; without the
// public key `audit verify` cannot check the signatures.
func warnSealConfig(log *slog.Logger, a config.Audit) {
	if a.CheckpointDir == "" {
		log.Warn("audit.checkpoint_dir is unset: checkpoints are stored only in the database, so a deleted or replaced chain goes unnoticed if its checkpoints are rewritten too; set it to a directory outside the database")
	}
	if a.SealPublicKey == "" {
		log.Warn("audit.seal_public_key is unset: `pgtenant audit verify` checks checkpoint signatures only with --public-key; set it to the public half of the sealing key (openssl pkey -in KEY -pubout)")
	}
}

func newAuditPurgeCmd() *cobra.Command {
	var path, keyPath string
	cmd := &cobra.Command{
		Use:   "purge --config FILE --key KEYFILE",
		Short: "Redact events older than their tenant's retention window and sign a purge record",
		Long: `Redact, in every region, each chain's longest prefix of events older than
audit.retention_days (audit.retention_overrides per account): their personal
fields are cleared in place while their hashes stay, so every chain and every
tree checkpoint still verifies. Each purge is recorded as a purge record signed
with KEYFILE (the seal key) and as a purge event in the tenant's chain.

It runs as each region's admin role through pgtenant_audit.purge_chain, which
can only redact whole expired prefixes; the proxy's service role cannot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := loadAuditConfig(cmd, path)
			if err != nil {
				return err
			}
			if keyPath == "" {
				return withCode(exitUsage, errors.New("--key is required"))
			}
			key, err := audit.LoadPrivateKey(keyPath)
			if err != nil {
				return withCode(exitUsage, fmt.Errorf("key: %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			res, err := audit.Purge(ctx, cfg.Regions, cfg.Audit, key, time.Now(), log)
			if err != nil {
				return withCode(exitUsage, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d row(s) in %d chain(s)\n", res.Redacted, res.Chains)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "configuration file (YAML)")
	fl.StringVar(&keyPath, "key", "", "Ed25519 private key (the seal key), PKCS#8 PEM")
	return cmd
}

func newAuditEraseCmd() *cobra.Command {
	var path, account, beforeText string
	cmd := &cobra.Command{
		Use:   "erase --config FILE --account ID --before T",
		Short: "Erase the stored statement text of an account's events before T (audit.statement: full)",
		Long: `Erase the statement text of the account's events recorded before T (RFC 3339)
in every region. Events recorded with audit.statement: full hash a salted
commitment to their text rather than the text itself (hash version 2), so the
text and its salt can be removed while every chain, checkpoint and inclusion
proof still verifies. Runs as each region's admin role. Events appended and
not yet chained are waited for (up to 30s; a running pgtenant of the region
chains them within about a second): if some still are not, nothing more is
erased in that region and the command fails, naming how many.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadAuditConfig(cmd, path)
			if err != nil {
				return err
			}
			if account == "" || beforeText == "" {
				return withCode(exitUsage, errors.New("--account and --before are required"))
			}
			before, err := time.Parse(time.RFC3339Nano, beforeText)
			if err != nil {
				return withCode(exitUsage, fmt.Errorf("--before: %w", err))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			n, err := audit.Erase(ctx, cfg.Regions, account, before)
			if err != nil {
				return withCode(exitUsage, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "erased the statement text of %d event(s)\n", n)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&path, "config", "", "configuration file (YAML)")
	fl.StringVar(&account, "account", "", "the account whose statement text is erased")
	fl.StringVar(&beforeText, "before", "", "erase events recorded before this time (RFC 3339)")
	return cmd
}
