package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckPrivateDir(t *testing.T) {
	dir := t.TempDir()
	if err := checkPrivateDir(dir); err != nil {
		t.Errorf("private dir rejected: %v", err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDir(open); err == nil {
		t.Error("world-writable dir accepted")
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := checkPrivateDir(link); err == nil {
		t.Error("symlink accepted")
	}
}

func TestCopyTreeKeepsModesAndLinks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub/f", filepath.Join(src, "l")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := copyTree(src, dst, osUser{uid: os.Geteuid(), gid: os.Getegid()}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "l"))
	if err != nil || string(b) != "hello" {
		t.Errorf("copied link reads %q, %v", b, err)
	}
	for path, want := range map[string]os.FileMode{"": 0o700, "sub": 0o700, "sub/f": 0o640} {
		fi, err := os.Stat(filepath.Join(dst, path))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (err %v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if err := copyTree(src, dst, osUser{}); err == nil {
		t.Error("copy onto an existing tree succeeded")
	}
}

func TestTemplateIsRebuiltWhenIncomplete(t *testing.T) {
	if testing.Short() {
		t.Skip("runs initdb twice")
	}
	bin, err := BinDir()
	if err != nil {
		t.Skip(err)
	}
	owner, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(defaultParent(), "tmplcache-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvTmpDir, base)
	ctx := context.Background()
	data, err := templateDataDir(ctx, bin, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		t.Fatalf("template has no PG_VERSION: %v", err)
	}
	// A template whose completion marker is missing (a crash between initdb
	// and the rename cannot leave one, but a cleaner might) is rebuilt.
	if err := os.Remove(filepath.Join(filepath.Dir(data), "ok")); err != nil {
		t.Fatal(err)
	}
	again, err := templateDataDir(ctx, bin, owner)
	if err != nil {
		t.Fatal(err)
	}
	if again != data || !templateReady(filepath.Dir(again)) {
		t.Errorf("rebuilt template at %s (ready %v), want %s", again, templateReady(filepath.Dir(again)), data)
	}
}
