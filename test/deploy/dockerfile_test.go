package deploy

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository root, relative to this package.
const root = "../.."

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper-case keyword
	args string
}

// stage is one FROM ... block.
type stage struct {
	from  string
	name  string
	instr []instruction
}

func parseDockerfile(t *testing.T) []stage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []stage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			return
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instr = append(stages[len(stages)-1].instr, in)
		}
	}
	for _, raw := range strings.Split(string(b), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.instr {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.from, "golang:") || !strings.Contains(build.from, "bookworm") {
		t.Errorf("build stage FROM %s: want golang on Debian 12 (bookworm), the runtime's libc", build.from)
	}
	if !strings.Contains(strings.Join(build.all("RUN"), "\n"), "scripts/build.sh") {
		t.Error("the build stage does not run scripts/build.sh")
	}
	if !strings.HasPrefix(final.from, "gcr.io/distroless/base-debian12") {
		t.Errorf("final FROM %s, want gcr.io/distroless/base-debian12 (glibc for cgo)", final.from)
	}
	if runs := final.all("RUN"); len(runs) > 0 {
		t.Errorf("final stage has RUN %v; distroless has no shell", runs)
	}
	users := final.all("USER")
	if len(users) == 0 || !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(users[len(users)-1]) {
		t.Errorf("final USER %v, want a numeric non-root uid[:gid]", users)
	}
	expose := strings.Fields(strings.Join(final.all("EXPOSE"), " "))
	for _, p := range []string{"6432", "9187"} {
		if !contains(expose, p) {
			t.Errorf("EXPOSE %v lacks %s", expose, p)
		}
	}
	ep := final.all("ENTRYPOINT")
	var argv []string
	if len(ep) != 1 || json.Unmarshal([]byte(ep[0]), &argv) != nil || len(argv) == 0 || argv[0] != "/usr/local/bin/pgtenant" {
		t.Errorf("ENTRYPOINT %v, want exec form [\"/usr/local/bin/pgtenant\"]", ep)
	}
	labels := strings.Join(final.all("LABEL"), " ")
	for _, l := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision"} {
		if !strings.Contains(labels, l) {
			t.Errorf("label %s missing", l)
		}
	}
	copies := strings.Join(final.all("COPY"), "\n")
	if !strings.Contains(copies, "/var/lib/pgtenant/spool") || !strings.Contains(copies, "--chown=65532:65532") {
		t.Errorf("the spool directory is not created writable for the runtime user: %s", copies)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestLdflagsTargetsExist checks that the variables build.sh stamps exist in
// package main as string variables (the linker silently ignores missing ones).
func TestLdflagsTargetsExist(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(root, "scripts/build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	targets := regexp.MustCompile(`-X main\.([A-Za-z_]+)=`).FindAllStringSubmatch(string(script), -1)
	if len(targets) < 2 {
		t.Fatalf("build.sh stamps %v, want main.version and main.commit", targets)
	}
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, filepath.Join(root, "cmd/pgtenant"), func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, f := range pkgs["main"].Files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if vs.Type == nil && i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							vars[n.Name] = true
						}
					}
				}
			}
		}
	}
	for _, m := range targets {
		if !vars[m[1]] {
			t.Errorf("build.sh sets main.%s, which is not a string variable initialised in cmd/pgtenant", m[1])
		}
	}
}

// TestBuildScript builds the binary the way the Dockerfile does and checks
// the stamped version. It compiles pg_query with cgo: skipped with -short.
func TestBuildScript(t *testing.T) {
	if testing.Short() {
		t.Skip("cgo build of the whole binary; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "pgtenant")
	cmd := exec.Command(filepath.Join(root, "scripts/build.sh"), out)
	cmd.Env = append(os.Environ(), "VERSION=9.8.7-test", "COMMIT=0123abcd")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh: %v\n%s", err, b)
	}
	b, err := exec.Command(out, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtenant version: %v\n%s", err, b)
	}
	if !strings.Contains(string(b), "pgtenant 9.8.7-test") || !strings.Contains(string(b), "commit 0123abcd") {
		t.Fatalf("version output does not carry the stamped values:\n%s", b)
	}
}
