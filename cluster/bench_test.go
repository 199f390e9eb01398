package cluster_test

import (
	"context"
	"testing"

	"github.com/pgtenant/pgtenant/cluster"
)

// BenchmarkStartClose measures a full cluster lifecycle: data directory,
// pg_ctl start, service role and database, then Close.
func BenchmarkStartClose(b *testing.B) {
	for _, mode := range []struct{ name, noTemplate string }{{"template", ""}, {"initdb", "1"}} {
		b.Run(mode.name, func(b *testing.B) {
			if _, err := cluster.BinDir(); err != nil {
				b.Skip(err)
			}
			b.Setenv(cluster.EnvNoTemplate, mode.noTemplate)
			for b.Loop() {
				c, err := cluster.Start(context.Background(), cluster.Config{Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if err := c.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
