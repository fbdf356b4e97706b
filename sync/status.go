package sync

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/sync/proto"
)

// DefaultStatusInterval is how often the edge publishes its status when
// nothing else prompts it.
const DefaultStatusInterval = time.Minute

// StatusSource supplies the device facts of a Status that the sync package
// does not own: software version, snapshot, doors, clock trust. Status is
// called from the Edge's status loop; it must not block for long.
type StatusSource interface {
	Status(ctx context.Context) (proto.Status, error)
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context) (proto.Status, error)

// Status implements StatusSource.
func (f StatusFunc) Status(ctx context.Context) (proto.Status, error) { return f(ctx) }

// statusLoop publishes the device's status when connected, when nudged
// and every interval.
type statusLoop struct {
	src      StatusSource
	eng      *engine
	clk      clock.Clock
	log      *slog.Logger
	interval time.Duration
	topic    string
	pub      retainedPublisher
	kick     chan struct{}
	snapErr  func() string // last snapshot refusal, may be nil
	results  func() []proto.Result
}

// nudge asks for a status message soon; it never blocks.
func (s *statusLoop) nudge() { wake(s.kick) }

// routes implements feature: the status is sent only.
func (s *statusLoop) routes() []route { return nil }

// connected implements feature: a new connection gets a fresh status.
func (s *statusLoop) connected(context.Context) { s.nudge() }

// notify implements feature: events alone do not change the status.
func (s *statusLoop) notify() {}

// make assembles the current status.
func (s *statusLoop) make(ctx context.Context) proto.Status {
	var st proto.Status
	if s.src != nil {
		var err error
		if st, err = s.src.Status(ctx); err != nil {
			s.log.Warn("status source failed; publishing link facts only", "err", err)
			st = proto.Status{}
		}
	}
	st.Online = true
	st.Site, st.Device = s.eng.site, s.eng.device
	st.Time = s.clk.Now().UTC()
	st.OutboxDepth, _ = s.eng.ob.Depth()
	st.AckedSeq = s.eng.acked.Load()
	if s.snapErr != nil {
		st.LastSnapshotError = s.snapErr()
	}
	if s.results != nil {
		st.Results = s.results()
	}
	return st
}

// run implements feature: it publishes when connected, when nudged and
// every interval, until ctx ends.
func (s *statusLoop) run(ctx context.Context) {
	for {
		if !waitRound(ctx, s.clk, s.kick, s.interval) {
			return
		}
		if !s.eng.up.Load() {
			continue
		}
		b, err := json.Marshal(s.make(ctx))
		if err != nil {
			s.log.Error("cannot encode status", "err", err)
			continue
		}
		if err := s.pub.publishRetained(ctx, s.topic, b); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot publish status", "topic", s.topic, "err", err)
		}
	}
}
