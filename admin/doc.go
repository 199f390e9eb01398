// Package admin is pgtenant's operations HTTP server, on admin_listen and
// separate from the PostgreSQL port:
//
//	/metrics          Prometheus exposition (package metrics)
//	/healthz          200 while the process serves HTTP (liveness)
//	/readyz           200 when every region is reachable and the audit store is
//	                  writable, else 503; the JSON body names each check's result
//	/isolation-proof  JSON attestation per region, read live from each backend's
//	                  catalog (package isolation)
//
// The server takes its checks as plain functions and its region settings from
// config, so it does not import the proxy; cmd wires the real ones in. It
// shuts down gracefully when the context given to Run or Serve ends.
package admin
