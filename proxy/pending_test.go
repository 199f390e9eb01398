package proxy

import "testing"

// owesReply: what the server answers without more input from the client.
func TestPendingQueueOwesReply(t *testing.T) {
	cases := []struct {
		name   string
		pushed []pendingKind
		popped int // entries already answered
		want   bool
	}{
		{"nothing in flight", nil, 0, false},
		{"a Query", []pendingKind{pendQuery}, 0, true},
		{"a denied Query", []pendingKind{pendDenyQuery}, 0, true},
		{"an unsynced Parse", []pendingKind{pendParse}, 0, false},
		{"a Parse and its Sync", []pendingKind{pendParse, pendSync}, 0, true},
		{"a Query after an unsynced Bind", []pendingKind{pendBind, pendQuery}, 0, false},
		// the Bind's error arrived: the server now skips the Query
		{"a Query after an answered, unsynced Bind", []pendingKind{pendBind, pendQuery}, 1, false},
		{"a Query after a Describe", []pendingKind{pendDescribe, pendQuery}, 0, false},
		{"a Query after a Close", []pendingKind{pendClose, pendQuery}, 0, false},
		{"a Query after an Execute", []pendingKind{pendExecute, pendQuery}, 0, false},
		{"a Query after a denied extended message", []pendingKind{pendDeny, pendQuery}, 0, false},
		{"a Query after a Sync", []pendingKind{pendParse, pendSync, pendQuery}, 1, true},
		{"a Query before an extended message", []pendingKind{pendQuery, pendParse}, 0, true},
		{"the injected Sync of a FATAL", []pendingKind{pendParse, pendFatal}, 0, true},
	}
	for _, c := range cases {
		var q pendingQueue
		for _, k := range c.pushed {
			q.push(pending{kind: k})
		}
		for range c.popped {
			q.pop()
		}
		if got := q.owesReply(); got != c.want {
			t.Errorf("%s: owesReply = %v, want %v", c.name, got, c.want)
		}
	}
	var q pendingQueue
	q.hold()
	if !q.owesReply() {
		t.Error("a ReadyForQuery being settled: owesReply = false, want true")
	}
}
