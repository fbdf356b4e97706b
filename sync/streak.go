package sync

import (
	"fmt"
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

// sent counts a round that sent the pending records from first (what
// names them: "ticket marks from", "enrollment") at now and returns the
// streak's rounds. Once the streak has lasted limit it tells deaf (when
// set) that HQ acknowledged none of them, starts over and returns 0.
func (s *unackedStreak) sent(first uint64, now time.Time, limit time.Duration, deaf func(why string), what string) int {
	s.mu.Lock()
	if s.rounds == 0 || first != s.first {
		s.first, s.rounds, s.since = first, 0, now
	}
	s.rounds++
	rounds, age := s.rounds, now.Sub(s.since)
	told := deaf != nil && age >= limit
	if told {
		s.rounds = 0
	}
	s.mu.Unlock()
	if !told {
		return rounds
	}
	deaf(fmt.Sprintf("HQ acknowledged none of %d sends of %s %d in %v on a live connection", rounds, what, first, age.Round(time.Second)))
	return 0
}

// restart ends the streak: a new connection.
func (s *unackedStreak) restart() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rounds = 0
}
