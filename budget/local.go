package budget

import (
	"context"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// localStore counts budgets in this process.
type localStore struct {
	mu       sync.Mutex
	limiters map[string]*limiterEntry
	running  map[string]int
	next     uint64
}

type limiterEntry struct {
	lim  *rate.Limiter
	conf Limits // the limits lim was built for; rebuilt when they change (reload)
}

func newLocalStore() *localStore {
	return &localStore{limiters: map[string]*limiterEntry{}, running: map[string]int{}}
}

// maxIdleLimiters bounds the limiter map: past it, full buckets (tenants idle
// long enough to have refilled) are dropped, which changes no decision.
const maxIdleLimiters = 100000

func (s *localStore) take(_ context.Context, account string, l Limits) (bool, time.Duration, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.limiters[account]
	if !ok || e.conf != l {
		if len(s.limiters) >= maxIdleLimiters {
			s.dropFull(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(l.StatementsPerSecond), l.burst()), conf: l}
		s.limiters[account] = e
	}
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, 0, nil
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d, nil
	}
	return true, 0, nil
}

func (s *localStore) dropFull(now time.Time) {
	for acc, e := range s.limiters {
		if e.lim.TokensAt(now) >= float64(e.lim.Burst()) {
			delete(s.limiters, acc)
		}
	}
}

func (s *localStore) acquire(_ context.Context, account string, l Limits, _ time.Duration) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[account] >= l.ConcurrentStatements {
		return "", false, nil
	}
	s.running[account]++
	s.next++
	return strconv.FormatUint(s.next, 10), true, nil
}

func (s *localStore) release(_ context.Context, account, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[account] <= 1 {
		delete(s.running, account)
		return nil
	}
	s.running[account]--
	return nil
}

func (s *localStore) close() error { return nil }
