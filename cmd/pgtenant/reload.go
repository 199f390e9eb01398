package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pgtenant/pgtenant/auth"
	"github.com/pgtenant/pgtenant/config"
	"github.com/pgtenant/pgtenant/tenancy"
)

// watchConfig reloads the configuration at path on SIGHUP and whenever the
// file changes (including Kubernetes' symlink swap of a mounted ConfigMap),
// until ctx ends.
func (a *app) watchConfig(ctx context.Context, path string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		a.log.Warn("config file watch unavailable; reload with SIGHUP", "error", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(path)); err != nil {
			a.log.Warn("config file watch unavailable; reload with SIGHUP", "error", err)
		}
		events = w.Events
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = a.reload(ctx, path, "sighup") // logged, counted and audited inside
		case ev := <-events:
			if filepath.Clean(ev.Name) == filepath.Clean(path) || filepath.Base(ev.Name) == "..data" {
				debounce = time.After(200 * time.Millisecond) // editors write in several steps
			}
		case <-debounce:
			_ = a.reload(ctx, path, "file_change")
		}
	}
}

// reload applies a new configuration to new connections. A configuration
// that does not load or validate is rejected and the old one stays in
// force; either way the attempt is logged, counted and audited.
func (a *app) reload(ctx context.Context, path, trigger string) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cfg, err := config.Load(path)
	if err == nil {
		err = a.apply(cfg)
	}
	a.metrics.ConfigReloaded(err)
	if err != nil {
		a.log.Error("configuration rejected; the previous one stays in force", "trigger", trigger, "error", err)
		a.recordConfig(ctx, "rejected", "", err)
		return err
	}
	if cfg.Listen != a.cfg.Listen || cfg.AdminListen != a.cfg.AdminListen || !reflect.DeepEqual(cfg.Audit, a.cfg.Audit) {
		a.log.Warn("listen, admin_listen and audit changes take effect at restart", "trigger", trigger)
	}
	a.cfg = cfg
	a.log.Info("configuration reloaded", "trigger", trigger, "config_sha256", configHash(cfg))
	a.recordConfig(ctx, "applied", configHash(cfg), nil)
	return nil
}

// reloadFromConsole is the admin console's RELOAD: the file serve was started with.
func (a *app) reloadFromConsole() error {
	if a.configPath == "" {
		return errors.New("this process was not started from a configuration file")
	}
	return a.reload(a.ctx, a.configPath, "console")
}

// apply builds the reloadable parts from cfg and swaps them in. Everything
// is built and validated first: when any part is rejected, the running
// configuration, policy engine and its discovery loop stay as they are.
func (a *app) apply(cfg *config.Config) error {
	verifier, err := auth.NewVerifier(cfg.Auth, auth.WithAccess(cfg.Access))
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	pol, err := a.policyFor(cfg)
	if err != nil {
		verifier.Close()
		return err
	}
	if err := a.proxy.Reload(cfg, verifier, pol.checkers); err != nil {
		verifier.Close()
		return err
	}
	a.commit(pol)
	if old := a.verifier; old != nil {
		old.Close() // sessions already authenticated; the new verifier shares unchanged key sources
	}
	a.verifier = verifier
	setLevel(a.level, cfg.Log.Level)
	return nil
}

// recordConfig writes a config event to every region's no-tenant chain.
func (a *app) recordConfig(ctx context.Context, outcome, hash string, cause error) {
	if a.auditor == nil {
		return
	}
	ev := tenancy.Event{Kind: tenancy.KindConfig, Time: time.Now(), Verdict: tenancy.VerdictAllow, Reason: outcome, Rows: -1}
	if hash != "" {
		ev.Statement = "config sha256:" + hash
	}
	if cause != nil {
		ev.Verdict = tenancy.VerdictDeny
		ev.Reason = outcome + ": " + cause.Error()
	}
	if err := a.auditor.Record(ctx, ev); err != nil {
		a.log.Warn("config event not audited", "error", err)
	}
}

// configHash is the SHA-256 of the effective configuration with every
// secret left out, so reviewers can tell configurations apart.
func configHash(cfg *config.Config) string {
	c := *cfg
	c.Auth.HS256Secret, c.Auth.Secret = "", nil
	c.Regions = map[string]config.Region{}
	for name, r := range cfg.Regions {
		r.Password, r.AdminPassword = "", ""
		c.Regions[name] = r
	}
	b, err := json.Marshal(c) // map keys are sorted: the encoding is deterministic
	if err != nil {
		return "unencodable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
