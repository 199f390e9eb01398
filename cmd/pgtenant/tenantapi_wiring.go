package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/pgtenant/pgtenant/isolation"
	"github.com/pgtenant/pgtenant/tenantapi"
)

// newTenantAPI builds the tenants' API server when tenant_api.listen is set.
// It authenticates through the proxy, so it always uses the keys in force.
func (a *app) newTenantAPI() (*http.Server, error) {
	cfg := a.cfg
	if cfg.TenantAPI.Listen == "" {
		return nil, nil
	}
	proof := a.proofOptions(cfg)
	var auditor tenantapi.Auditor
	if a.auditor != nil {
		auditor = a.auditor
	}
	h := tenantapi.New(tenantapi.Options{
		Auth: a.proxy, Roles: cfg.TenantAPI.Roles, Regions: cfg.Regions, Policy: cfg.Policy,
		PolicyVersion: proof.PolicyVersion, Auditor: auditor, Log: a.log.With("component", "tenant_api"),
		Attest: func(ctx context.Context, region string) isolation.Report {
			return isolation.Inspect(ctx, region, cfg.Regions[region], proof)
		},
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tenant_api: tls.cert_file/tls.key_file: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	return srv, nil
}

// serveTenantAPI serves the API on l until ctx ends, then shuts it down.
func serveTenantAPI(ctx context.Context, srv *http.Server, l net.Listener) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	var err error
	if srv.TLSConfig != nil {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("tenant_api: %w", err)
}
