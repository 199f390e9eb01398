package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgtenant/pgtenant/test/proxytest"
)

// BenchmarkRelay measures a scoped point query through the in-process proxy
// with the real policy, per protocol mode, against a direct connection. The
// client runs in the same process, so compare ns/op between sub-benchmarks
// rather than reading them as the proxy's cost alone.
func BenchmarkRelay(b *testing.B) {
	env := proxytest.Start(b, proxytest.Options{Policy: true})
	bare := proxytest.Start(b, proxytest.Options{})
	const q = "SELECT id, total FROM orders WHERE account_id = 42 AND id = $1"
	targets := map[string]string{
		"proxy":    env.DSN(b, "42", "eu-west"),
		"nopolicy": bare.DSN(b, "42", "eu-west"),
		"direct":   env.DirectDSN("eu-west") + "&options=-c%20app.current_account_id%3D42",
	}
	modes := map[string]pgx.QueryExecMode{
		"simple": pgx.QueryExecModeSimpleProtocol, "extended": pgx.QueryExecModeExec, "prepared": pgx.QueryExecModeCacheStatement,
	}
	for tname, dsn := range targets {
		for mname, mode := range modes {
			b.Run(tname+"/"+mname, func(b *testing.B) {
				conn, err := pgx.Connect(context.Background(), dsn)
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close(context.Background())
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					rows, err := conn.Query(ctx, q, mode, 1+i%5)
					if err != nil {
						b.Fatal(err)
					}
					rows.Close()
					if rows.Err() != nil {
						b.Fatal(rows.Err())
					}
				}
			})
		}
	}
}
