package sync

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// askBackoff times a request that the edge sends again until HQ answers
// it (marks-get, sync-get): after first, then twice as long each time, at
// most maxAskWait. HQ may not have been subscribed when the request went
// out (the broker drops it), or may not be able to answer.
type askBackoff struct {
	clk   clock.Clock
	first time.Duration

	mu      sync.Mutex
	askedAt time.Time     // when the unanswered request went out; zero: none
	wait    time.Duration // how long to wait for its answer before asking again
}

// maxAskWait bounds the wait between two unanswered requests (HQ without
// a signing key never answers marks-get).
const maxAskWait = 5 * time.Minute

// asked records that a request goes out now.
func (b *askBackoff) asked() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.askedAt.IsZero() || b.wait == 0 {
		b.wait = b.first
	}
	b.askedAt = b.clk.Now()
}

// outstanding reports whether a request awaits its answer.
func (b *askBackoff) outstanding() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.askedAt.IsZero()
}

// answered records that HQ answered.
func (b *askBackoff) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.askedAt, b.wait = time.Time{}, b.first
}

// again reports whether an unanswered request is due to be sent again now
// (doubling the wait for the next one), and how long until one is due (0:
// none outstanding).
func (b *askBackoff) again() (due bool, wait time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.askedAt.IsZero() {
		return false, 0
	}
	left := b.wait - b.clk.Now().Sub(b.askedAt)
	if left > 0 {
		return false, left
	}
	b.wait = min(2*b.wait, maxAskWait)
	return true, b.wait
}

// reask sends the request again through ask when it is due unanswered,
// logging what it asks for, and returns how long until it looks again (0:
// nothing outstanding).
func (b *askBackoff) reask(log *slog.Logger, what string, ask func()) time.Duration {
	due, wait := b.again()
	if due {
		log.Info("HQ did not answer the request for "+what+"; asking again", "next_wait", wait)
		ask()
	}
	return wait
}

// unanswered counts the requests of one kind asked again on one
// connection, HQ not having answered them.
type unanswered struct{ n atomic.Int32 }

// reset starts the count again: a new connection, or an answer.
func (u *unanswered) reset() { u.n.Store(0) }

// again counts one more request asked again and reports whether to send
// it: at the deafAfter-th it tells deaf (when set) instead, that HQ
// answered none of the requests for what on a live connection, and the
// next connection asks.
func (u *unanswered) again(deaf func(why string), what string) bool {
	n := u.n.Add(1)
	if n < deafAfter || deaf == nil {
		return true
	}
	u.reset()
	deaf(fmt.Sprintf("HQ answered none of %d requests for %s on a live connection", n, what))
	return false
}

// deafAfter is how many requests of one kind asked again on one
// connection make a feature tell deaf.
const deafAfter = 3
