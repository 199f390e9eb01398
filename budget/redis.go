package budget

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// redisStore shares budgets between proxy instances through Redis.
type redisStore struct {
	rdb     *redis.Client
	limiter *redis_rate.Limiter
}

// keyPrefix namespaces every key pgtenant writes.
const keyPrefix = "pgtenant:budget:"

// quietLogger sends go-redis's own pool messages to slog at debug level;
// Budgets reports shared-store failures itself, once a minute.
type quietLogger struct{}

func (quietLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

var setLoggerOnce sync.Once

func newRedisStore(ctx context.Context, url string) (*redisStore, error) {
	setLoggerOnce.Do(func() { redis.SetLogger(quietLogger{}) })
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("not a redis URL: %w", err)
	}
	opts.DialTimeout = time.Second
	opts.ReadTimeout = 200 * time.Millisecond
	opts.WriteTimeout = 200 * time.Millisecond
	opts.MaxRetries = 0 // a statement waits for one try at most; the local budget covers the rest
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("cannot reach %s: %w", opts.Addr, err)
	}
	return &redisStore{rdb: rdb, limiter: redis_rate.NewLimiter(rdb)}, nil
}

func (s *redisStore) take(ctx context.Context, account string, l Limits) (bool, time.Duration, error) {
	// GCRA over a one-second period; Burst as the bucket. A fractional rate
	// is expressed over a longer period so that 0.5/s stays 0.5/s.
	lim := redis_rate.Limit{Rate: int(l.StatementsPerSecond), Burst: l.burst(), Period: time.Second}
	if float64(lim.Rate) != l.StatementsPerSecond {
		const scale = 1000
		lim.Rate = max(1, int(l.StatementsPerSecond*scale))
		lim.Period = scale * time.Second
	}
	res, err := s.limiter.Allow(ctx, keyPrefix+"rate:"+account, lim)
	if err != nil {
		return false, 0, fmt.Errorf("rate of %s: %w", account, err)
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// acquireScript takes a slot: expired leases are dropped, then a new lease is
// added only when fewer than the limit remain. Time comes from the Redis
// server, so instances with skewed clocks agree.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
`)

func (s *redisStore) acquire(ctx context.Context, account string, l Limits, lease time.Duration) (string, bool, error) {
	var raw [12]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	token := hex.EncodeToString(raw[:])
	n, err := acquireScript.Run(ctx, s.rdb, []string{keyPrefix + "running:" + account},
		l.ConcurrentStatements, lease.Milliseconds(), token).Int()
	if err != nil {
		return "", false, fmt.Errorf("concurrency of %s: %w", account, err)
	}
	return token, n == 1, nil
}

func (s *redisStore) release(ctx context.Context, account, token string) error {
	if err := s.rdb.ZRem(ctx, keyPrefix+"running:"+account, token).Err(); err != nil {
		return fmt.Errorf("release for %s: %w", account, err)
	}
	return nil
}

func (s *redisStore) close() error { return s.rdb.Close() }
