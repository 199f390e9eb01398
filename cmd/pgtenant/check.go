package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/parser"
	"github.com/pgtenant/pgtenant/policy"
	"github.com/pgtenant/pgtenant/regiondb"
)

func init() { register(newCheckCmd) }

type checkOpts struct {
	config, account, region, sql, file, corpus string
	schemas                                    []string
}

func newCheckCmd() *cobra.Command {
	var o checkOpts
	cmd := &cobra.Command{
		Use:   "check --config FILE --account ID [--region R] [--schema SCHEMA.sql] (--sql SQL | -f FILE | --corpus FILE.tsv)",
		Short: "Check statements against the tenancy policy (for CI): exit 0 all allowed, 3 any denied, 2 usage error",
		Long: `check runs pgtenant's policy engine on SQL without a proxy: one line per
statement, allow or deny with the reason. Tables and their columns come from
the configuration, from the region's catalog when it is reachable and
policy.discover is on, and from --schema files (CREATE TABLE / CREATE VIEW,
e.g. pg_dump -s output; psql meta-commands such as \restrict are skipped as
psql skips them, and errors name file and line). -f - reads standard input;
statements are split as psql does. A statement with $n parameters is checked
as Parse + Bind: "allowed if $1 is bound to your account" names the
parameters that must carry the caller's account; a statement followed by
"-- bind: v1 | v2" (before or after its semicolon) is checked with those
values. --corpus checks verdict<TAB>category<TAB>sql rows (a SQL ending in
"-- bind: v1 | v2" is sent as Parse + Bind; rows share one session, so an
EXECUTE row sees an earlier PREPARE) and exits 1 on any disagreement.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runCheck(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration file (YAML)")
	f.StringVar(&o.account, "account", "", "the caller's account id (as the token's account_id claim)")
	f.StringVar(&o.region, "region", "", "region whose catalog to use (default: the only or first configured region)")
	f.StringArrayVar(&o.schemas, "schema", nil, "SQL file with CREATE TABLE / CREATE VIEW statements (repeatable)")
	f.StringVar(&o.sql, "sql", "", "statement(s) to check")
	f.StringVarP(&o.file, "file", "f", "", "file of statements to check (- for standard input)")
	f.StringVar(&o.corpus, "corpus", "", "corpus TSV (verdict<TAB>category<TAB>sql) to verify")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("account")
	return cmd
}

func runCheck(cmd *cobra.Command, o checkOpts) error {
	n := 0
	for _, s := range []string{o.sql, o.file, o.corpus} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return withCode(exitUsage, errors.New("check: give exactly one of --sql, -f or --corpus"))
	}
	if strings.TrimSpace(o.account) == "" {
		return withCode(exitUsage, errors.New("check: --account must not be empty"))
	}
	cfg, err := config.LoadPolicy(o.config)
	if err != nil {
		return withCode(exitUsage, err)
	}
	region := o.region
	if region == "" {
		names := make([]string, 0, len(cfg.Regions))
		for r := range cfg.Regions {
			names = append(names, r)
		}
		sort.Strings(names)
		if len(names) > 0 {
			region = names[0]
		}
	} else if _, ok := cfg.Regions[region]; !ok {
		return withCode(exitUsage, fmt.Errorf("check: region %q is not configured", region))
	}
	eng, err := policy.NewEngine(cfg.Policy, engineOptions(cfg)...)
	if err != nil {
		return withCode(exitUsage, err)
	}
	errOut := cmd.ErrOrStderr()
	if cfg.Policy.Discover && region != "" {
		if err := discoverRegion(cmd.Context(), eng, region, cfg.Regions[region]); err != nil {
			fmt.Fprintf(errOut, "pgtenant: check: catalog of region %s not read (%v); using config and --schema only\n", region, err)
		}
	}
	cat := eng.Catalog(region)
	for _, path := range o.schemas {
		b, err := os.ReadFile(path)
		if err != nil {
			return withCode(exitUsage, fmt.Errorf("check: --schema: %w", err))
		}
		script := blankMetaCommands(string(b))
		if err := cat.AddSchemaSQL(script, eng.TenantColumn()); err != nil {
			return withCode(exitUsage, fmt.Errorf("check: --schema %w", schemaError(path, script, err)))
		}
	}
	eng.SetCatalog(region, cat)
	principal := auth.Principal{Account: o.account, Region: region}
	out := cmd.OutOrStdout()
	if o.corpus != "" {
		return checkCorpus(out, eng, principal, o.corpus)
	}
	var script string
	switch {
	case o.sql != "":
		script = o.sql
	case o.file == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return withCode(exitUsage, fmt.Errorf("check: reading standard input: %w", err))
		}
		script = string(b)
	default:
		b, err := os.ReadFile(o.file)
		if err != nil {
			return withCode(exitUsage, fmt.Errorf("check: %w", err))
		}
		script = string(b)
	}
	sess := eng.NewSession(principal)
	denied := 0
	for _, stmt := range parser.SplitScript(attachBindComments(script)) {
		d, cond := checkStatement(sess, o.account, stmt)
		one := oneLine(stripBind(stmt))
		if d.Allow {
			if cond != "" {
				fmt.Fprintf(out, "allow\t%s\t%s\n", one, cond)
			} else {
				fmt.Fprintf(out, "allow\t%s\n", one)
			}
			continue
		}
		denied++
		fmt.Fprintf(out, "deny\t%s\t%s", one, d.Message)
		if d.Hint != "" {
			fmt.Fprintf(out, " (hint: %s)", d.Hint)
		}
		fmt.Fprintf(out, " [%s]\n", d.Reason)
	}
	if denied > 0 {
		return withCode(exitDenied, fmt.Errorf("check: %d statement(s) denied", denied))
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func checkCorpus(out io.Writer, eng *policy.Engine, p auth.Principal, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return withCode(exitUsage, fmt.Errorf("check: --corpus: %w", err))
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line, rows, bad := 0, 0, 0
	sess := eng.NewSession(p)
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		parts := strings.SplitN(text, "\t", 3)
		if len(parts) != 3 || (parts[0] != "allow" && parts[0] != "deny") {
			return withCode(exitUsage, fmt.Errorf("check: %s:%d: want verdict<TAB>category<TAB>sql", path, line))
		}
		rows++
		d := policy.RunCorpusRow(sess, parts[2])
		got := "deny"
		if d.Allow {
			got = "allow"
		}
		if got != parts[0] {
			bad++
			fmt.Fprintf(out, "line %d [%s]: want %s, got %s: %s", line, parts[1], parts[0], got, parts[2])
			if !d.Allow {
				fmt.Fprintf(out, " -- %s", d.Message)
			}
			fmt.Fprintln(out)
		}
	}
	if err := sc.Err(); err != nil {
		return withCode(exitUsage, fmt.Errorf("check: --corpus: %w", err))
	}
	fmt.Fprintf(out, "%d rows, %d disagreements\n", rows, bad)
	if bad > 0 {
		return withCode(exitFailed, fmt.Errorf("check: %d corpus row(s) disagree", bad))
	}
	return nil
}

// discoverRegion reads the region's catalog with a short timeout.
func discoverRegion(ctx context.Context, eng *policy.Engine, name string, r config.Region) error {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout+5*time.Second)
	defer cancel()
	conn, err := regiondb.Connect(ctx, name, r, regiondb.Service(r, "pgtenant-check"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return eng.Discover(ctx, name, conn)
}
