package isolation

// Status words of a layer, ordered from best to worst by rank.
const (
	Active        = "active"
	DeployedInert = "deployed_inert"
	Missing       = "missing"
	Unknown       = "unknown"
)

func rank(s string) int {
	switch s {
	case Active:
		return 0
	case DeployedInert:
		return 1
	case Missing:
		return 2
	default:
		return 3
	}
}

// Worst returns the worst of the given statuses (Active for none).
func Worst(statuses ...string) string {
	w := Active
	for _, s := range statuses {
		if rank(s) > rank(w) {
			w = s
		}
	}
	return w
}
