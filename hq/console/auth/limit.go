package auth

import (
	"sync"
	"time"
)

// Limiter counts failed logins per key (an account name, a client
// address) in a sliding window and refuses a key that reached its
// maximum, until its oldest failure leaves the window.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	fails map[string][]time.Time
}

// maxKeys bounds the keys a Limiter remembers: beyond it, keys whose
// failures left the window are forgotten first, then the whole table.
const maxKeys = 100_000

// NewLimiter returns a Limiter allowing max failures per key in window.
func NewLimiter(max int, window time.Duration, now func() time.Time) *Limiter {
	return &Limiter{max: max, window: window, now: now, fails: map[string][]time.Time{}}
}

// recent returns key's failures still in the window (mu held).
func (l *Limiter) recent(key string, now time.Time) []time.Time {
	f := l.fails[key]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= l.window {
		i++
	}
	if i == len(f) {
		delete(l.fails, key)
		return nil
	}
	f = f[i:]
	l.fails[key] = f
	return f
}

// Allow reports whether key may try again, and if not, how long until
// it may.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.recent(key, now)
	if len(f) < l.max {
		return true, 0
	}
	return false, l.window - now.Sub(f[0])
}

// Fail records a failure of key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.fails) >= maxKeys {
		for k := range l.fails {
			l.recent(k, now)
		}
		if len(l.fails) >= maxKeys {
			clear(l.fails)
		}
	}
	f := l.recent(key, now)
	if len(f) >= l.max {
		f = f[1:]
	}
	l.fails[key] = append(f, now)
}

// Reset forgets key's failures (after a successful login).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}
