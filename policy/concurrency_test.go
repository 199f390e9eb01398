package policy

import (
	"fmt"
	"sync"
	"testing"
)

// Sessions of one engine run concurrently (run with -race); the shared cache
// must never leak one tenant's verdict to another.
func TestConcurrentSessions(t *testing.T) {
	e := newTestEngine(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(acct int) {
			defer wg.Done()
			s := session(t, e, fmt.Sprint(acct))
			for i := 0; i < 200; i++ {
				mine := s.CheckQuery(fmt.Sprintf("SELECT * FROM orders WHERE account_id = %d AND id = %d", acct, i))
				other := s.CheckQuery(fmt.Sprintf("SELECT * FROM orders WHERE account_id = %d AND id = %d", acct+100, i))
				if !mine.Allow || other.Allow {
					errs <- fmt.Errorf("account %d: mine=%v other=%v", acct, mine.Allow, other.Allow)
					return
				}
			}
		}(g + 1)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h, _ := e.CacheStats(); h == 0 {
		t.Error("no cache hits across sessions")
	}
}
