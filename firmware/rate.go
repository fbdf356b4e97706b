package firmware

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// RateLimiter is a token bucket that bounds a download's byte rate, so that
// an update never starves a gate lane's link. It is safe for concurrent
// use.
type RateLimiter struct {
	clock clock.Clock
	rate  float64 // bytes per second
	burst float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// NewRateLimiter returns a limiter of bytesPerSecond with a bucket of burst
// bytes (at least one second's worth is sensible), starting full.
func NewRateLimiter(clk clock.Clock, bytesPerSecond, burst int64) *RateLimiter {
	if burst <= 0 {
		burst = bytesPerSecond
	}
	return &RateLimiter{clock: clk, rate: float64(bytesPerSecond), burst: float64(burst), tokens: float64(burst), last: clk.Now()}
}

// Wait takes n bytes from the bucket, blocking until the debt is paid at the
// configured rate or ctx is done. A limiter with a rate <= 0 never blocks.
func (r *RateLimiter) Wait(ctx context.Context, n int) error {
	if r == nil || r.rate <= 0 {
		return ctx.Err()
	}
	r.mu.Lock()
	now := r.clock.Now()
	r.tokens = min(r.burst, r.tokens+now.Sub(r.last).Seconds()*r.rate)
	r.last = now
	r.tokens -= float64(n)
	debt := r.tokens
	r.mu.Unlock()
	if debt >= 0 {
		return ctx.Err()
	}
	wait := time.Duration(-debt / r.rate * float64(time.Second))
	t := r.clock.NewTimer(wait)
	select {
	case <-ctx.Done():
		t.Stop()
		return fmt.Errorf("wait %v for download rate limit: %w", wait, ctx.Err())
	case <-t.C():
		return nil
	}
}
