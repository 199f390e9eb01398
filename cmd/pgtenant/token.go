package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
)

func init() { register(newTokenCmd) }

// tokenFlags are the options of `pgtenant token`.
type tokenFlags struct {
	secretEnv  string
	configFile string
	account    string
	region     string
	subject    string
	ttl        time.Duration
	issuer     string
	audience   string
	role       string
	actor      string
	purpose    string
	ticket     string
}

func newTokenCmd() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token --secret-env VAR --account ID --region R [--sub S] [--ttl 1h]",
		Short: "Mint an HS256 token for development and tests",
		Long: `Mint an HS256 token for development and tests and print it on standard output.

The HMAC secret is read from the environment variable named by --secret-env, or,
without it, from the auth.hs256_secret* keys of --config. With --config the
token also uses the configured claim names, issuer and audience (flags win).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := f.mint(cmd)
			if err != nil {
				return withCode(exitUsage, err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.secretEnv, "secret-env", "", "environment variable holding the HMAC secret (at least 32 bytes)")
	fl.StringVar(&f.configFile, "config", "", "config file to take the claim names, issuer, audience and (without --secret-env) the secret from")
	fl.StringVar(&f.account, "account", "", "tenant id (the account_id claim); digits are emitted as a JSON integer")
	fl.StringVar(&f.region, "region", "", "data region (the data_region claim)")
	fl.StringVar(&f.subject, "sub", "", "subject claim")
	fl.DurationVar(&f.ttl, "ttl", time.Hour, "validity from now")
	fl.StringVar(&f.issuer, "issuer", "", "iss claim")
	fl.StringVar(&f.audience, "audience", "", "aud claim")
	fl.StringVar(&f.role, "role", "", "role claim (e.g. viewer: a read-only session)")
	fl.StringVar(&f.actor, "actor", "", "support session: the acting person (act claim's sub); needs --purpose")
	fl.StringVar(&f.purpose, "purpose", "", "support session: why (the purpose claim)")
	fl.StringVar(&f.ticket, "ticket", "", "support session: the ticket reference")
	return cmd
}

// mint checks the flags and signs the token.
func (f *tokenFlags) mint(cmd *cobra.Command) (string, error) {
	if f.account == "" {
		return "", errors.New("token: --account is required")
	}
	if f.region == "" {
		return "", errors.New("token: --region is required")
	}
	opts := auth.MintOptions{
		Account:  f.account,
		Region:   f.region,
		Subject:  f.subject,
		TTL:      f.ttl,
		Issuer:   f.issuer,
		Audience: f.audience,
		Role:     f.role,
		Actor:    f.actor,
		Purpose:  f.purpose,
		Ticket:   f.ticket,
	}
	if f.configFile != "" {
		cfg, err := config.Load(f.configFile)
		if err != nil {
			return "", fmt.Errorf("token: %w", err)
		}
		opts.TenantClaim = cfg.Auth.TenantClaim
		opts.RegionClaim = cfg.Auth.RegionClaim
		opts.RoleClaim, opts.ActorClaim = cfg.Auth.RoleClaim, cfg.Auth.ActorClaim
		opts.PurposeClaim, opts.TicketClaim = cfg.Access.Support.PurposeClaim, cfg.Access.Support.TicketClaim
		if !cmd.Flags().Changed("issuer") {
			opts.Issuer = cfg.Auth.Issuer
		}
		if !cmd.Flags().Changed("audience") {
			opts.Audience = cfg.Auth.Audience
		}
		opts.Secret = cfg.Auth.Secret
	}
	switch {
	case f.secretEnv != "":
		val, ok := os.LookupEnv(f.secretEnv)
		if !ok || val == "" {
			return "", fmt.Errorf("token: environment variable %s (--secret-env) is not set", f.secretEnv)
		}
		opts.Secret = []byte(val)
	case len(opts.Secret) == 0:
		return "", errors.New("token: --secret-env is required (or --config with auth.hs256_secret_env, hs256_secret_file or hs256_secret)")
	}
	if f.ttl <= 0 {
		return "", fmt.Errorf("token: --ttl %s must be positive", f.ttl)
	}
	tok, err := auth.Mint(opts)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return tok, nil
}
