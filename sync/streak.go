package sync

import (
	"sync"
	"time"
)

// unackedStreak follows the rounds in which a loop sent the same first
// pending record (a ticket mark, an enrollment) without HQ acknowledging
// it, on one connection: how many, and since when. A loop whose streak
// lasts deafAcks ack timeouts tells the Edge, which reconnects under
// another client ID (Edge.deaf): on RabbitMQ 3.10 a node restart can
// leave one binding of a device's subscription queue listed but no longer
// routing (rabbitmq-server#4236, #5075), so that one kind of HQ message
// (seen: marks-ack) stops arriving while the others still do, and
// subscribing again does not repair a binding the broker believes it
// has.
type unackedStreak struct {
	mu     sync.Mutex
	first  uint64    // the first pending record of the rounds counted
	rounds int       // rounds in a row that sent first (0: none)
	since  time.Time // the first of them
}

// deafAcks is how many ack timeouts an unacknowledged streak lasts before
// the loop tells the Edge that the connection delivers nothing of HQ's
// acks.
const deafAcks = 4

// sent counts a round that sent the pending records from first at now and
// returns the streak's rounds and age.
func (s *unackedStreak) sent(first uint64, now time.Time) (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rounds == 0 || first != s.first {
		s.first, s.rounds, s.since = first, 0, now
	}
	s.rounds++
	return s.rounds, now.Sub(s.since)
}

// restart ends the streak: a new connection, or the Edge told.
func (s *unackedStreak) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rounds = 0
}
