package config

import (
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkKeys reports the first key of the YAML document b that no
// configuration field has, with file, line and the nearest known key: viper
// only names an unknown key's path, not where it is.
func checkKeys(path string, b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return walkKeys(path, doc.Content[0], reflect.TypeOf(Config{}), "")
}

// fieldsByKey maps the YAML keys of struct type t to their field types.
func fieldsByKey(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct && strings.Contains(f.Tag.Get("mapstructure"), ",squash") {
			maps.Copy(out, fieldsByKey(f.Type)) // read at this level
			continue
		}
		tag := strings.Split(f.Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		out[tag] = f.Type
	}
	return out
}

func walkKeys(path string, n *yaml.Node, t reflect.Type, prefix string) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(struct{}{}) {
			return nil
		}
		fields := fieldsByKey(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a merge key: its mapping's keys are checked where they are defined
				continue
			}
			ft, ok := fields[strings.ToLower(k.Value)]
			if !ok {
				msg := fmt.Sprintf("config %s:%d: unknown key %s%s", path, k.Line, prefix, k.Value)
				if near := nearest(strings.ToLower(k.Value), fields); near != "" {
					msg += fmt.Sprintf(" (did you mean %s%s?)", prefix, near)
				}
				return fmt.Errorf("%s", msg)
			}
			if err := walkKeys(path, v, ft, prefix+k.Value+"."); err != nil {
				return err
			}
		}
	case reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := walkKeys(path, n.Content[i+1], t.Elem(), prefix+n.Content[i].Value+"."); err != nil {
				return err
			}
		}
	case reflect.Pointer:
		return walkKeys(path, n, t.Elem(), prefix)
	}
	return nil
}

// nearest returns the known key closest to k (edit distance at most 3), or "".
func nearest(k string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	best, bestD := "", 4
	for _, name := range names {
		if d := editDistance(k, name); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
