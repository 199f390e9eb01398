package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// idleBatch is how many connections the scale run opens at once.
const idleBatch = 64

// ScaleResult is the connection-scale run: idle clients held through pgtenant.
type ScaleResult struct {
	Target          string  `json:"target"`
	Requested       int     `json:"requested"`
	Opened          int     `json:"opened"`
	Failed          int     `json:"failed"`
	FirstError      string  `json:"first_error,omitempty"`
	OpenSeconds     float64 `json:"open_seconds"`       // wall time to open them all
	RSSBeforeBytes  int64   `json:"rss_before_bytes"`   // proxy VmRSS with no client
	RSSAfterBytes   int64   `json:"rss_after_bytes"`    // proxy VmRSS with every client open
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes"` // (after - before) / opened
	CPUSecondsOpen  float64 `json:"cpu_seconds_open"`   // proxy CPU spent accepting them
	Error           string  `json:"error,omitempty"`    // why the run failed, if it did
}

// raiseNoFile raises RLIMIT_NOFILE so this process (n client sockets) and
// its children (pgtenant: a client and a backend socket per connection)
// can hold n connections. Children inherit the limit.
func raiseNoFile(n int) error {
	need := uint64(2*n + 1024)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		lim.Max = need // only root may raise the hard limit
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("setrlimit NOFILE to %d (for %d connections): %w; raise `ulimit -n` or use a smaller --idle-conns", need, n, err)
	}
	return nil
}

// holdIdle opens n connections to dsn in parallel batches, measures the
// proxy while all are open, then closes them.
func holdIdle(ctx context.Context, proxy *process, dsn string, n int) (*ScaleResult, error) {
	res := &ScaleResult{Target: proxy.name, Requested: n}
	before, err := sampleProc(proxy.pid())
	if err != nil {
		return nil, err
	}
	res.RSSBeforeBytes = before.RSSBytes
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("idle connections: %w", err)
	}
	conns := make([]*pgconn.PgConn, 0, n)
	defer func() {
		for _, c := range conns {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Close(cctx)
			cancel()
		}
	}()
	start := time.Now()
	var (
		mu   sync.Mutex
		errs []error
	)
	for opened := 0; opened < n; opened += idleBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var wg sync.WaitGroup
		for range min(idleBatch, n-opened) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				c, err := pgconn.ConnectConfig(cctx, cfg.Copy())
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				conns = append(conns, c)
			}()
		}
		wg.Wait()
		if len(errs) > 0 && len(conns) == 0 {
			break // nothing works: do not hammer on
		}
	}
	res.OpenSeconds = time.Since(start).Seconds()
	res.Opened, res.Failed = len(conns), len(errs)
	if len(errs) > 0 {
		res.FirstError = errs[0].Error()
	}
	if res.Opened == 0 {
		return res, fmt.Errorf("idle connections: none of %d opened: %w", n, errors.Join(errs[:min(len(errs), 3)]...))
	}
	// Let the proxy settle (goroutines parked, buffers released) before measuring.
	time.Sleep(time.Second)
	after, err := sampleProc(proxy.pid())
	if err != nil {
		return nil, err
	}
	res.RSSAfterBytes = after.RSSBytes
	res.RSSPerConnBytes = float64(after.RSSBytes-before.RSSBytes) / float64(res.Opened)
	res.CPUSecondsOpen = (after.CPU - before.CPU).Seconds()
	return res, nil
}
