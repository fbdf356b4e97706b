package console

import (
	"context"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/hq/console/alarm"
)

// DefaultMaxRevocationAge is how long a device may go without applying
// the snapshot HQ published to it before the console raises its
// "stale revocation data" alarm (Config.MaxRevocationAge).
const DefaultMaxRevocationAge = 24 * time.Hour

// DefaultSweepInterval is how often Sweep checks the time-based alarms.
const DefaultSweepInterval = 30 * time.Second

// conditionAlarms is what the sweep needs of the alarm list beyond
// Alarms: raising and clearing a device-wide condition (alarm.List has
// it). A list without it gets no stale-revocation alarms.
type conditionAlarms interface {
	SetCondition(site, device string, kind alarm.Kind, on bool, detail string, now time.Time) (*alarm.Alarm, error)
}

// staleRevocation reports whether d's revocation data is stale at now
// with maxAge allowed, and says why: HQ published a snapshot to d more
// than maxAge ago and d still does not run it (its version or content
// hash differs: the fleet's drift), so d decides without the
// revocations of that snapshot. A device that runs what HQ last
// published is fresh, however old that publication: its data is as new
// as HQ's.
func staleRevocation(d hq.DeviceInfo, now time.Time, maxAge time.Duration) (bool, string) {
	if !d.Drift || d.Published.IsZero() || now.Sub(d.Published) <= maxAge {
		return false, ""
	}
	return true, fmt.Sprintf("runs snapshot %d, HQ published %d at %s (%s ago)", d.Status.Snapshot.Version, d.ExpectedVersion,
		d.Published.UTC().Format(time.RFC3339), now.Sub(d.Published).Truncate(time.Minute))
}

// refreshStale raises or clears the stale-revocation alarm of every
// device of devs.
func (s *Server) refreshStale(devs []hq.DeviceInfo) {
	ca, ok := s.cfg.Alarms.(conditionAlarms)
	if !ok {
		return
	}
	now := s.clk.Now()
	for _, d := range devs {
		stale, why := staleRevocation(d, now, s.maxRevocationAge())
		a, err := ca.SetCondition(d.Site, d.Device, alarm.StaleRevocation, stale, why, now)
		if err != nil {
			s.log.Error("console: cannot record alarm", "site", d.Site, "device", d.Device, "kind", alarm.StaleRevocation, "err", err)
		}
		if a != nil {
			s.recordAlarm(*a)
		}
	}
}

// maxRevocationAge is the configured age, or the default.
func (s *Server) maxRevocationAge() time.Duration {
	if s.cfg.MaxRevocationAge > 0 {
		return s.cfg.MaxRevocationAge
	}
	return DefaultMaxRevocationAge
}

// sweep checks the time-based alarms once: devices offline and devices
// with stale revocation data.
func (s *Server) sweep() {
	devs, err := s.cfg.HQ.Fleet()
	if err != nil {
		s.log.Warn("console: fleet for the alarms", "err", err)
		return
	}
	s.setOnline(devs)
	s.refreshStale(devs)
}

// Sweep checks the time-based alarms (device offline, stale revocation
// data) every interval (DefaultSweepInterval when 0) until ctx ends.
// With several HQ replicas, give Config.IsLeader so that one replica
// raises them: a replica that is not the leader skips its turn. Run it
// next to Serve.
func (s *Server) Sweep(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	for {
		if s.cfg.IsLeader == nil || s.cfg.IsLeader(ctx) {
			s.sweep()
		}
		t := s.clk.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}
