package clients

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// client is one program of the matrix.
type client struct {
	name, lang string
	dir        string                               // working directory, relative to test/clients
	prepare    func(t *testing.T) ([]string, error) // the command line, or why the runtime is missing
}

// clients is the matrix, in the table's order.
var clients = []client{
	python("psycopg2", "psycopg2"),
	python("psycopg3", "psycopg"),
	python("asyncpg", "asyncpg"),
	python("sqlalchemy", "sqlalchemy"),
	python("django", "django"),
	{name: "pgjdbc", lang: "Java", dir: "java", prepare: javaProgram("PgjdbcApp")},
	ruby("ruby-pg", "pg"),
	ruby("sequel", "sequel"),
	ruby("activerecord", "active_record"),
	php("pdo", "pdo_pgsql"),
	php("eloquent", "pdo_pgsql"),
	node("node-postgres", "pg"),
	node("postgres.js", "postgres"),
	node("knex", "knex"),
	node("sequelize", "sequelize"),
	node("typeorm", "typeorm"),
	node("drizzle", "drizzle-orm"),
	goProgram("pgx"),
	goProgram("libpq"),
	goProgram("gorm"),
	goProgram("bun"),
}

// script names a program file: <dir>/<name>_app.<ext> with - and . as _.
func script(name, ext string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(name) + "_app." + ext
}

// probe runs argv and reports its output as the reason when it fails.
func probe(argv ...string) error {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// pythonBin is Debian's interpreter, whose site-packages hold the
// python3-* packages (a pyenv or venv python3 on PATH would not see them).
var pythonBin = func() string {
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	return "python3"
}()

func python(name, module string) client {
	return client{name: name, lang: "Python", dir: "python", prepare: func(*testing.T) ([]string, error) {
		if err := probe(pythonBin, "-c", "import "+module); err != nil {
			return nil, err
		}
		return []string{pythonBin, script(name, "py")}, nil
	}}
}

func ruby(name, lib string) client {
	return client{name: name, lang: "Ruby", dir: "ruby", prepare: func(*testing.T) ([]string, error) {
		if err := probe("ruby", "-e", "require '"+lib+"'"); err != nil {
			return nil, err
		}
		return []string{"ruby", script(name, "rb")}, nil
	}}
}

func php(name, ext string) client {
	return client{name: name, lang: "PHP", dir: "php", prepare: func(*testing.T) ([]string, error) {
		if err := probe("php", "-r", "if (!extension_loaded('"+ext+"')) exit(1);"); err != nil {
			return nil, err
		}
		if name == "eloquent" {
			if _, err := os.Stat("/usr/share/php/Illuminate/Database/Capsule/Manager.php"); err != nil {
				return nil, fmt.Errorf("illuminate/database (Debian php-illuminate-database): %w", err)
			}
		}
		return []string{"php", script(name, "php")}, nil
	}}
}

func node(name, pkg string) client {
	return client{name: name, lang: "Node.js", dir: "node", prepare: func(*testing.T) ([]string, error) {
		if err := probe("node", "--version"); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join("node", "node_modules", pkg, "package.json")); err != nil {
			return nil, fmt.Errorf("npm package %s: %w", pkg, err)
		}
		return []string{"node", script(name, "js")}, nil
	}}
}

// workDir holds the compiled Java and Go programs; TestClients sets it to
// its temporary directory before any client runs.
var workDir string

// Java programs are compiled once per test binary against Debian's jars.
var (
	javaOnce sync.Once
	javaDir  string
	javaErr  error
)

// javaClasspath is Debian's pgjdbc, HikariCP and its slf4j API.
var javaClasspath = []string{"/usr/share/java/postgresql.jar", "/usr/share/java/HikariCP.jar",
	"/usr/share/java/slf4j-api.jar", "/usr/share/java/slf4j-nop.jar"}

func javaProgram(class string) func(t *testing.T) ([]string, error) {
	return func(t *testing.T) ([]string, error) {
		javaOnce.Do(func() {
			if javaErr = probe("javac", "-version"); javaErr != nil {
				return
			}
			for _, jar := range javaClasspath {
				if _, err := os.Stat(jar); err != nil && !strings.Contains(jar, "nop") {
					javaErr = fmt.Errorf("jar: %w", err)
					return
				}
			}
			dir := filepath.Join(workDir, "java")
			javaDir = dir
			srcs, _ := filepath.Glob(filepath.Join("java", "*.java"))
			args := append([]string{"-d", dir, "-cp", strings.Join(javaClasspath, ":")}, srcs...)
			if out, err := exec.Command("javac", args...).CombinedOutput(); err != nil {
				javaErr = fmt.Errorf("javac: %v\n%s", err, out)
			}
		})
		if javaErr != nil {
			return nil, javaErr
		}
		return []string{"java", "-cp", javaDir + ":" + strings.Join(javaClasspath, ":"), class}, nil
	}
}

// Go programs live in their own module (go/go.mod) so the ORMs stay out of
// pgtenant's go.mod; they are built once per test binary.
var (
	goOnce sync.Once
	goDir  string
	goErr  error
)

func goProgram(name string) client {
	return client{name: name, lang: "Go", dir: "go", prepare: func(t *testing.T) ([]string, error) {
		goOnce.Do(func() {
			dir := filepath.Join(workDir, "go")
			goDir = dir
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./cmd/...")
			cmd.Dir = "go"
			if out, err := cmd.CombinedOutput(); err != nil {
				goErr = fmt.Errorf("go build in test/clients/go: %v\n%s", err, out)
			}
		})
		if goErr != nil {
			return nil, goErr
		}
		return []string{filepath.Join(goDir, name)}, nil
	}}
}
