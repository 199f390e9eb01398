package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/proxy"
)

// reloadTestConfig has one region nothing listens on (discovery fails fast,
// leaving the region's catalog to the background loop).
func reloadTestConfig() *config.Config {
	cfg := config.Default()
	cfg.Auth.Secret = []byte("reload-test-secret-0123456789abcdef0123")
	cfg.Audit.Disabled = true
	cfg.AdminListen = ""
	cfg.Policy.Discover = true
	cfg.Regions = map[string]config.Region{
		"eu-west": {Host: "127.0.0.1", Port: 1, User: "app", SSLMode: "disable", ConnectTimeout: time.Second},
	}
	return cfg
}

// A rejected reload leaves the running policy engine and its discovery loop
// in force: the new configuration is built and validated before anything is
// swapped.
func TestRejectedReloadKeepsThePolicyInForce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &app{ctx: ctx, log: slog.New(slog.NewTextHandler(io.Discard, nil)), level: &slog.LevelVar{}}
	cfg := reloadTestConfig()
	verifier, err := auth.NewVerifier(cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := a.policyFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.engine.Load() != nil || a.stopDiscovery != nil {
		t.Fatal("building a policy put it in force")
	}
	a.proxy, err = proxy.New(proxy.Options{Config: cfg, Authenticator: verifier, Checkers: pol.checkers, Logger: a.log})
	if err != nil {
		t.Fatal(err)
	}
	a.commit(pol)
	running, stop := a.engine.Load(), a.stopDiscovery
	if running != pol.engine || stop == nil {
		t.Fatal("the committed policy is not in force")
	}
	defer func() { a.stopDiscovery() }()

	bad := reloadTestConfig()
	bad.TLS.CertFile = filepath.Join(t.TempDir(), "missing.crt")
	bad.TLS.KeyFile = filepath.Join(t.TempDir(), "missing.key")
	if err := a.apply(bad); err == nil {
		t.Fatal("a configuration with a missing certificate was applied")
	}
	if a.engine.Load() != running {
		t.Fatal("a rejected reload replaced the policy engine")
	}
	if err := a.apply(reloadTestConfig()); err != nil {
		t.Fatal(err)
	}
	if a.engine.Load() == running {
		t.Fatal("an accepted reload kept the old engine")
	}
}
