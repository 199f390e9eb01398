package main

import "github.com/pgtenant/pgtenant/metrics"

// poolStats reports the proxy's transaction-mode pools to metrics (none
// before the proxy is built, or in pool.mode: session).
func (a *app) poolStats() []metrics.PoolStats {
	if a.proxy == nil {
		return nil
	}
	var out []metrics.PoolStats
	for _, p := range a.proxy.PoolStats() {
		out = append(out, metrics.PoolStats{Region: p.Region, Database: p.Database, ReadOnly: p.ReadOnly,
			Clients: p.Clients, Waiting: p.Waiting, MaxWaitSeconds: p.MaxWait.Seconds(), Active: p.Active, Idle: p.Idle})
	}
	return out
}
