package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func fakeBinDir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "pg_ctl"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewestDebianBinDirPicksHighestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "16", "10"} {
		fakeBinDir(t, filepath.Join(root, v, "bin"))
	}
	// Newer but incomplete, and not a version: both ignored.
	if err := os.MkdirAll(filepath.Join(root, "17", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	fakeBinDir(t, filepath.Join(root, "latest", "bin"))
	if got, want := newestDebianBinDir(root), filepath.Join(root, "16", "bin"); got != want {
		t.Errorf("newestDebianBinDir = %q, want %q", got, want)
	}
	if got := newestDebianBinDir(filepath.Join(root, "missing")); got != "" {
		t.Errorf("missing root: %q, want empty", got)
	}
}

func TestBinDirEnvOverride(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	fakeBinDir(t, dir)
	t.Setenv(EnvBinDir, dir)
	if got, err := BinDir(); err != nil || got != dir {
		t.Errorf("BinDir = %q, %v; want %q", got, err, dir)
	}
	t.Setenv(EnvBinDir, t.TempDir())
	_, err := BinDir()
	if err == nil || errors.Is(err, ErrNoBinaries) {
		t.Errorf("BinDir with an empty override dir: %v; want a non-skip error", err)
	}
}

func TestBinDirFallsBackAndReportsNone(t *testing.T) {
	t.Setenv(EnvBinDir, "")
	t.Setenv("PATH", t.TempDir()) // no pg_config
	old := debianPGRoot
	t.Cleanup(func() { debianPGRoot = old })

	debianPGRoot = t.TempDir()
	if _, err := BinDir(); !errors.Is(err, ErrNoBinaries) {
		t.Errorf("no binaries anywhere: %v, want ErrNoBinaries", err)
	}
	fakeBinDir(t, filepath.Join(debianPGRoot, "14", "bin"))
	if got, err := BinDir(); err != nil || got != filepath.Join(debianPGRoot, "14", "bin") {
		t.Errorf("BinDir = %q, %v", got, err)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []Config{
		{Name: "../x"},
		{Name: "has space"},
		{Port: 70000},
		{Port: -1},
		{ServiceUser: "postgres"},
		{ServiceUser: string(make([]byte, 64))},
		{Database: "a\x00b"},
		{ServicePassword: "a\x00"},
		{Settings: map[string]string{"listen_addresses": "*"}},
		{Settings: map[string]string{"Port": "5432"}},
		{Settings: map[string]string{"bad key": "1"}},
		{Settings: map[string]string{"include": "/etc/passwd"}},
		{Settings: map[string]string{"INCLUDE_DIR": "/etc"}},
		{Settings: map[string]string{"work_mem": "1MB\nport = 1"}},
		{HBA: []string{"host all all 0.0.0.0/0 trust\nlocal all all trust"}},
	}
	for _, cfg := range bad {
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("withDefaults(%+v): no error", cfg)
		}
	}
	got, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "pg" || got.ServiceUser != "app" || got.ServicePassword != "app-password" || got.Database != "app" {
		t.Errorf("defaults: %+v", got)
	}
}

func TestConfQuote(t *testing.T) {
	for in, want := range map[string]string{`a`: `'a'`, `it's`: `'it''s'`, `C:\x`: `'C:\\x'`} {
		if got := confQuote(in); got != want {
			t.Errorf("confQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
