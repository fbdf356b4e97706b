package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tobira-ac/tobira/hq"
)

// liveBuffer is how many events a browser of the live feed may be behind
// before it loses some: a slow browser never holds up HQ's intake.
const liveBuffer = 256

// liveHeartbeat is how often an idle live feed sends a comment line, so
// that proxies keep it open and a dead browser is noticed.
const liveHeartbeat = 15 * time.Second

// subscriber is one browser of the live feed.
type subscriber struct {
	ch      chan hq.StoredEvent
	dropped atomic.Int64
}

// broadcaster hands each published event to every subscriber without
// blocking: a full buffer drops the event for that subscriber and
// counts it.
type broadcaster struct {
	size int
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// newBroadcaster returns a broadcaster with per-subscriber buffers of
// size events.
func newBroadcaster(size int) *broadcaster {
	return &broadcaster{size: size, subs: map[*subscriber]struct{}{}}
}

// subscribe adds a subscriber; cancel removes it.
func (b *broadcaster) subscribe() (sub *subscriber, cancel func()) {
	sub = &subscriber{ch: make(chan hq.StoredEvent, b.size)}
	b.mu.Lock()
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	return sub, func() {
		b.mu.Lock()
		delete(b.subs, sub)
		b.mu.Unlock()
	}
}

// publish hands ev to every subscriber that has room.
func (b *broadcaster) publish(ev hq.StoredEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sub := range b.subs {
		select {
		case sub.ch <- ev:
		default:
			sub.dropped.Add(1)
		}
	}
}

// livePage shows the live feed (filled by static/app.js from
// /live/stream).
func (s *Server) livePage(w http.ResponseWriter, r *http.Request, rq *request) {
	s.render(w, r, rq, http.StatusOK, "live", "live.title", nil)
}

// liveEvent is one event as the live feed sends it: its text already in
// the browser's language.
type liveEvent struct {
	Time     string `json:"time"`
	Site     string `json:"site"`
	Device   string `json:"device"`
	Seq      uint64 `json:"seq"`
	Door     string `json:"door"`
	Type     string `json:"type"`
	Result   string `json:"result"`
	Reason   string `json:"reason"`
	Cred     string `json:"credential"`
	Denied   bool   `json:"denied"`
	Detail   string `json:"detail"`
	Received string `json:"received"`
}

// liveStream sends the account's sites' new events as server-sent
// events until the browser goes away. When the browser falls behind, it
// gets a "dropped" event with how many it lost.
func (s *Server) liveStream(w http.ResponseWriter, r *http.Request, rq *request) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a feed lives longer than the server's write timeout
	sub, cancel := s.live.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": live\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	beat := s.clk.NewTimer(liveHeartbeat)
	defer func() { beat.Stop() }()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-beat.C():
			_, err = fmt.Fprint(w, ": beat\n\n")
			beat = s.clk.NewTimer(liveHeartbeat)
		case ev := <-sub.ch:
			if !rq.user.CanSite(ev.Site) {
				continue
			}
			err = s.writeLive(w, rq, ev)
			if n := sub.dropped.Swap(0); n > 0 && err == nil {
				_, err = fmt.Fprintf(w, "event: dropped\ndata: %d\n\n", n)
			}
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// writeLive writes ev as one server-sent event in rq's language.
func (s *Server) writeLive(w http.ResponseWriter, rq *request, ev hq.StoredEvent) error {
	p := page{L: rq.lang}
	le := liveEvent{Time: p.Time(ev.Time), Site: ev.Site, Device: ev.Device, Seq: ev.Seq, Door: ev.Door, Type: ev.Type,
		Reason: ev.Reason, Cred: ev.Credential, Detail: ev.Detail, Received: p.Time(s.clk.Now())}
	le.Result, le.Denied = resultText(p, ev), ev.Type == "decision" && !ev.Granted
	b, err := json.Marshal(le)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "data: %s\n\n", b)
	return err
}

// resultText is an event's outcome in p's language: granted or denied
// for a decision, else its type.
func resultText(p page, ev hq.StoredEvent) string {
	switch {
	case ev.Type != "decision":
		return p.T("event.type." + ev.Type)
	case ev.Granted:
		return p.T("event.granted")
	default:
		return p.T("event.denied")
	}
}

// Result returns an event's outcome in the page's language (for the
// templates).
func (p page) Result(ev hq.StoredEvent) string { return resultText(p, ev) }
