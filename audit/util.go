package audit

import (
	"sort"

	"github.com/pgtenant/pgtenant/config"
)

func sortedRegions(regions map[string]config.Region) []string {
	names := make([]string, 0, len(regions))
	for n := range regions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
