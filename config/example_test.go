package config

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The example configuration is generated from the structs of this package:
// every key, its doc comment, its unit and its default. Regenerate with
//
//	go generate ./config
var update = flag.Bool("update", false, "rewrite examples/pgtenant.yaml from the config structs")

const examplePath = "../examples/pgtenant.yaml"

func TestExampleMatchesStructs(t *testing.T) {
	got, err := generateExample(".")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(examplePath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the config structs: run `go generate ./config` and commit the result", examplePath)
	}
}

// Every key of the structs appears in the example with a unit and a default.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, key := range leafKeys(reflect.TypeOf(Config{}), "") {
		name := key[strings.LastIndex(key, ".")+1:]
		if !strings.Contains(text, "\n# "+key+" (") && !strings.Contains(text, "# "+key+" (") {
			t.Errorf("key %s has no documented unit/default line", key)
		}
		if !strings.Contains(text, " "+name+":") && !strings.HasPrefix(text, name+":") && !strings.Contains(text, "\n"+name+":") {
			t.Errorf("key %s is not set in the example", key)
		}
	}
	for _, must := range []string{"admin_user", "admin_password_env", "audit_database", "admin_password_file"} {
		if !strings.Contains(text, must) {
			t.Errorf("example lacks %s", must)
		}
	}
}

// leafKeys lists every key path of t, maps shown as NAME.
func leafKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if squashed(f) {
			out = append(out, leafKeys(f.Type, prefix)...)
			continue
		}
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			out = append(out, leafKeys(f.Type, prefix+tag+".")...)
		case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, leafKeys(f.Type.Elem(), prefix+tag+".NAME.")...)
		default:
			out = append(out, prefix+tag)
		}
	}
	return out
}

// exampleRegions are the regions the example lists; the first shows every key.
var exampleRegions = []struct{ name, port, passwordEnv string }{
	{"eu-west", "5433", "EU_PW"},
	{"us-east", "5434", "US_PW"},
}

// generateExample renders the example configuration from the structs
// declared in dir (their doc comments) and the defaults of Default.
func generateExample(dir string) ([]byte, error) {
	docs, err := fieldDocs(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`# pgtenant configuration: every key, its unit and its default.
# GENERATED from the structs in config/ by ` + "`go generate ./config`" + `; do not edit.
#
# Every key can be overridden by PGTENANT_<KEY_PATH> (e.g. PGTENANT_LISTEN,
# PGTENANT_AUDIT_MODE). Secrets (*_secret, *password) may instead be given as
# <key>_env (an environment variable's name) or <key>_file (a file's path).
# Durations are Go durations (30s, 5m, 1h); sizes are in bytes.
`)
	g := &exampleGen{docs: docs, out: &b}
	def := Default()
	def.Policy.MaxConcurrentParses = 0 // decode fills in this machine's GOMAXPROCS
	region, err := defaultRegion()
	if err != nil {
		return nil, err
	}
	g.region = region
	g.structValue(reflect.ValueOf(*def), reflect.TypeOf(Config{}), "", 0)
	return b.Bytes(), nil
}

// defaultRegion is a region with only the decode defaults applied.
func defaultRegion() (Region, error) {
	v := newViper()
	v.Set("regions", map[string]any{"x": map[string]any{"host": ""}})
	cfg, err := decode(v)
	if err != nil {
		return Region{}, err
	}
	return cfg.Regions["x"], nil
}

type exampleGen struct {
	docs   map[string]map[string]string // type name -> field name -> doc
	out    *bytes.Buffer
	region Region
}

func (g *exampleGen) structValue(v reflect.Value, t reflect.Type, prefix string, depth int) {
	ind := strings.Repeat("  ", depth)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if squashed(f) {
			g.structValue(v.Field(i), f.Type, prefix, depth)
			continue
		}
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + tag
		doc := g.docs[t.Name()][f.Name]
		fv := v.Field(i)
		if depth == 0 {
			g.out.WriteString("\n")
		}
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)):
			g.comment(ind, key, doc, "")
			fmt.Fprintf(g.out, "%s%s:\n", ind, tag)
			g.structValue(fv, f.Type, key+".", depth+1)
		case f.Type.Kind() == reflect.Map && f.Type.Elem() == reflect.TypeOf(Region{}):
			g.comment(ind, key, doc, "")
			fmt.Fprintf(g.out, "%s%s:\n", ind, tag)
			for _, r := range exampleRegions {
				fmt.Fprintf(g.out, "%s  %s:\n", ind, r.name)
				ex := g.region
				ex.Host, ex.Port, ex.User, ex.PasswordEnv = "127.0.0.1", atoi(r.port), "app", r.passwordEnv
				ex.AdminUser, ex.AdminPasswordEnv = "postgres", strings.Replace(r.passwordEnv, "_PW", "_ADMIN_PW", 1)
				g.regionValue(reflect.ValueOf(ex), key+"."+r.name+".", depth+2, r.name == exampleRegions[0].name)
			}
		case f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct:
			// An empty map, with its entries' keys documented in a
			// commented-out template entry.
			g.comment(ind, key, doc, unitDefault(f, fv))
			fmt.Fprintf(g.out, "%s%s: {}\n", ind, tag)
			et := f.Type.Elem()
			fmt.Fprintf(g.out, "%s#   NAME:\n", ind)
			for j := 0; j < et.NumField(); j++ {
				ef := et.Field(j)
				etag := strings.Split(ef.Tag.Get("mapstructure"), ",")[0]
				if etag == "" || etag == "-" {
					continue
				}
				zero := reflect.New(et).Elem().Field(j)
				fmt.Fprintf(g.out, "%s#     # %s (%s)\n", ind, key+".NAME."+etag, unitDefault(ef, zero))
				fmt.Fprintf(g.out, "%s#     %s: %s\n", ind, etag, yamlValue(zero))
			}
		default:
			val := fv
			if key == "auth.hs256_secret_env" && fv.String() == "" {
				val = reflect.ValueOf("PGTENANT_JWT_SECRET")
			}
			g.comment(ind, key, doc, unitDefault(f, fv))
			fmt.Fprintf(g.out, "%s%s: %s\n", ind, tag, yamlValue(val))
		}
	}
}

// regionValue writes one region: documented in full, or briefly for the
// regions after the first.
func (g *exampleGen) regionValue(v reflect.Value, prefix string, depth int, full bool) {
	ind := strings.Repeat("  ", depth)
	t := v.Type()
	def := reflect.ValueOf(g.region)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if full {
			key := strings.Replace(prefix, exampleRegions[0].name, "NAME", 1) + tag
			g.comment(ind, key, g.docs[t.Name()][f.Name], unitDefault(f, def.Field(i)))
		} else if v.Field(i).IsZero() || reflect.DeepEqual(v.Field(i).Interface(), def.Field(i).Interface()) {
			continue
		}
		fmt.Fprintf(g.out, "%s%s: %s\n", ind, tag, yamlValue(v.Field(i)))
	}
}

// derivedDefaults describe defaults computed from other keys.
var derivedDefaults = map[string]string{
	"MaxConcurrentParses": "GOMAXPROCS",
	"AdminUser":           "the region's user",
	"AuditDatabase":       "the region's database, or postgres",
}

// comment writes a key's doc comment and its unit/default line.
func (g *exampleGen) comment(ind, key, doc, unitDef string) {
	for _, line := range wrap(doc, 96-len(ind)) {
		fmt.Fprintf(g.out, "%s# %s\n", ind, line)
	}
	if unitDef != "" {
		fmt.Fprintf(g.out, "%s# %s (%s)\n", ind, key, unitDef)
	}
}

// unitDefault describes a key's unit and default, e.g. "duration; default 30s".
func unitDefault(f reflect.StructField, def reflect.Value) string {
	unit := ""
	name := strings.ToLower(f.Name)
	switch {
	case f.Type == reflect.TypeOf(time.Duration(0)):
		unit = "duration"
	case f.Type.Kind() == reflect.Bool:
		unit = "boolean"
	case f.Type.Kind() >= reflect.Int && f.Type.Kind() <= reflect.Uint64 || f.Type.Kind() == reflect.Float64:
		switch {
		case strings.Contains(name, "bytes"):
			unit = "bytes"
		case strings.Contains(name, "days"):
			unit = "days"
		case strings.Contains(name, "port"):
			unit = "TCP port"
		default:
			unit = "count"
		}
	case f.Type.Kind() == reflect.Slice:
		unit = "list"
	case f.Type.Kind() == reflect.Map:
		unit = "map"
	default:
		unit = "string"
		switch {
		case strings.HasSuffix(name, "env"):
			unit = "environment variable name"
		case strings.HasSuffix(name, "file") || strings.HasSuffix(name, "dir") || strings.HasSuffix(name, "key") && f.Type.Kind() == reflect.String && !strings.Contains(name, "claim"):
			unit = "path"
		case strings.Contains(name, "listen"):
			unit = "host:port"
		}
	}
	d := yamlValue(def)
	if derived, ok := derivedDefaults[f.Name]; ok {
		d = derived
	} else if d == `""` {
		d = "empty"
	}
	return unit + "; default " + d
}

// yamlValue renders v as a one-line YAML value.
func yamlValue(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	x := v.Interface()
	if v.Kind() == reflect.Slice && v.Len() == 0 {
		return "[]"
	}
	if v.Kind() == reflect.Map && v.Len() == 0 {
		return "{}"
	}
	var n yaml.Node
	if err := n.Encode(x); err != nil {
		return fmt.Sprint(x)
	}
	n.Style = yaml.FlowStyle
	out, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprint(x)
	}
	s := strings.TrimSpace(string(out))
	if s == "" || s == "''" {
		return `""`
	}
	return s
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

// wrap splits text into lines of at most width characters.
func wrap(text string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(text) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// fieldDocs reads the doc comments of every struct field declared in dir's
// non-test Go files; a comment starting with the field's Go name starts
// with its YAML key instead.
func fieldDocs(dir string) (map[string]map[string]string, error) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	out := map[string]map[string]string{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			keys := map[string]string{} // Go field name -> YAML key
			for _, fld := range st.Fields.List {
				for _, name := range fld.Names {
					if k := yamlKey(fld.Tag); k != "" {
						keys[name.Name] = k
					}
				}
			}
			m := map[string]string{}
			for _, fld := range st.Fields.List {
				if fld.Doc == nil {
					continue
				}
				text := strings.Join(strings.Fields(fld.Doc.Text()), " ")
				lead := true
				text = goNames.ReplaceAllStringFunc(text, func(w string) string {
					first := lead
					lead = false
					// an acronym (TLS) is a word of the text too: only the
					// leading word and CamelCase names are field references
					if k, ok := keys[w]; ok && (first || strings.ToUpper(w) != w) {
						return k
					}
					return w
				})
				for _, name := range fld.Names {
					m[name.Name] = text
				}
			}
			out[ts.Name.Name] = m
			return true
		})
	}
	return out, nil
}

// goNames matches words that may be Go field names.
var goNames = regexp.MustCompile(`\b[A-Z][A-Za-z0-9]*\b`)

// yamlKey returns the mapstructure key of a field tag, or "".
func yamlKey(tag *ast.BasicLit) string {
	if tag == nil {
		return ""
	}
	st := reflect.StructTag(strings.Trim(tag.Value, "`"))
	key := strings.Split(st.Get("mapstructure"), ",")[0]
	if key == "-" {
		return ""
	}
	return key
}

// squashed reports an embedded struct whose fields mapstructure reads at its
// parent's level (`mapstructure:",squash"`).
func squashed(f reflect.StructField) bool {
	return f.Anonymous && f.Type.Kind() == reflect.Struct && strings.Contains(f.Tag.Get("mapstructure"), ",squash")
}
