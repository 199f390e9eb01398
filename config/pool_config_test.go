package config

import (
	"strings"
	"testing"
	"time"
)

func TestPoolDefaults(t *testing.T) {
	p := Default().Pool
	want := Pool{Mode: PoolSession, Size: 20, MinIdle: 0, IdleTimeout: 10 * time.Minute, MaxWait: 5 * time.Second}
	if p != want {
		t.Errorf("pool defaults = %+v, want %+v", p, want)
	}
	if p.Transaction() {
		t.Error("the default pool mode must be session")
	}
}

func TestPoolKeysLoadAndValidate(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", strings.Repeat("k", 40))
	t.Setenv("TEST_EU_PW", "pw")
	cfg, err := Load(writeConfig(t, minimal+"pool:\n  mode: transaction\n  size: 3\n  min_idle: 1\n  idle_timeout: 30s\n  max_wait: 250ms\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Pool{Mode: PoolTransaction, Size: 3, MinIdle: 1, IdleTimeout: 30 * time.Second, MaxWait: 250 * time.Millisecond}
	if cfg.Pool != want || !cfg.Pool.Transaction() {
		t.Errorf("pool = %+v, want %+v", cfg.Pool, want)
	}
	t.Setenv("PGTENANT_POOL_SIZE", "7")
	if cfg, err = Load(writeConfig(t, minimal)); err != nil || cfg.Pool.Size != 7 {
		t.Errorf("PGTENANT_POOL_SIZE=7: size %d, err %v", cfg.Pool.Size, err)
	}
	cases := map[string]struct{ body, key string }{
		"mode":         {"pool:\n  mode: statement\n", "pool.mode"},
		"size":         {"pool:\n  size: 0\n", "pool.size"},
		"min_idle":     {"pool:\n  min_idle: 8\n  size: 4\n", "pool.min_idle"},
		"idle_timeout": {"pool:\n  idle_timeout: 0s\n", "pool.idle_timeout"},
		"max_wait":     {"pool:\n  max_wait: -1s\n", "pool.max_wait"},
		"unknown key":  {"pool:\n  max_size: 3\n", "pool.max_size"},
	}
	t.Setenv("PGTENANT_POOL_SIZE", "")
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(writeConfig(t, minimal+tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}
