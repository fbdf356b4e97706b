package hq

import (
	"context"
	"sync"

	"github.com/tobira-ac/tobira/sync/proto"
)

// maxSeenResults bounds the result IDs a Service remembers having stored.
const maxSeenResults = 100_000

// seenResults are the result IDs a Service knows it holds, so that the
// latest results every status repeats (Status.Results) cost a store read
// only the first time.
type seenResults struct {
	mu  sync.Mutex
	ids map[string]bool
}

// has reports whether id was marked.
func (s *seenResults) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}

// mark remembers id, forgetting everything when full.
func (s *seenResults) mark(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil || len(s.ids) >= maxSeenResults {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
}

// catchUpResults stores the results a device's status carries that HQ
// does not hold yet: results the device published once while no HQ was
// subscribed (HQ restarting, every replica away).
func (h *Service) catchUpResults(ctx context.Context, topic string, results []proto.Result) {
	for _, r := range results {
		if r.ID == "" || h.seen.has(r.ID) {
			continue
		}
		_, ok, err := h.st.Result(ctx, r.ID)
		if err == nil && !ok {
			err = h.st.PutResult(ctx, r, h.clk.Now().UTC())
			if err == nil {
				h.log.Info("device result caught up from its status", "site", r.Site, "device", r.Device, "kind", r.Kind, "id", r.ID, "status", r.Status)
			}
		}
		if err != nil {
			h.log.Error("cannot store a result from a status", "topic", topic, "id", r.ID, "err", err)
			continue
		}
		h.seen.mark(r.ID)
	}
}
