package e2e_test

// The randomized fault test of single-entry tickets (issue 12): three gates
// while HQ, the broker and gates are stopped and started at random points.

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/hq"
	"github.com/tobira-ac/tobira/policy"
)

// TestTicketsUnderRandomFaults runs rounds of random faults (broker
// SIGKILL and restart, HQ restart, HQ's network away, gates stopped) with
// single-entry tickets tapped at random gates, up or down. After each
// round everything comes back and every gate must refuse every ticket used
// anywhere (no ticket admitted twice at gates connected in between), no
// unused ticket is ever refused, and every partition conflict forced on
// two stopped gates is reported by HQ. The seed is logged;
// TOBIRA_FAULT_SEED repeats a run; TOBIRA_BENCH_SCALE=full runs more
// rounds.
func TestTicketsUnderRandomFaults(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TOBIRA_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOBIRA_FAULT_SEED: %v", err)
		}
		seed = v
	}
	rounds := scale(5, 40)
	t.Logf("seed %d (TOBIRA_FAULT_SEED=%d repeats this run), %d rounds", seed, seed, rounds)
	rnd := rand.New(rand.NewPCG(seed, seed))
	r := newRulesRig(t, 3, rounds*8)
	next, conflicts := 0, 0
	var used []int
	for round := range rounds {
		var fault string
		switch rnd.IntN(4) {
		case 0:
			fault = "broker SIGKILL"
			r.m.Restart(t)
		case 1:
			fault = "HQ restart"
			r.hq.halt()
			r.hq.start()
		case 2:
			fault = "HQ away"
			r.hqAway(true)
		case 3:
			fault = "none"
		}
		down := r.gates[rnd.IntN(3)]
		down.halt()
		// Taps at random gates, up or down: each admits a fresh ticket.
		for range 1 + rnd.IntN(3) {
			g := r.gates[rnd.IntN(3)]
			g.admit(next)
			used = append(used, next)
			next++
		}
		if rnd.IntN(3) == 0 {
			// A partition: a second gate goes down and both admit one
			// ticket. Unavoidable; it must be reported.
			other := r.gates[rnd.IntN(3)]
			for other == down {
				other = r.gates[rnd.IntN(3)]
			}
			other.halt()
			down.admit(next)
			other.admit(next)
			used = append(used, next)
			next++
			conflicts++
			other.start()
		}
		if rnd.IntN(2) == 0 {
			r.m.Restart(t) // a second fault while things are down
		}
		t.Logf("round %d: %s, %s down, %d tickets used, %d conflicts forced", round, fault, down.device, len(used), conflicts)
		r.hqAway(false)
		down.start()
		for _, g := range r.gates {
			if !g.learnedAll(used) {
				t.Fatalf("round %d (seed %d): %s did not learn every used ticket within %v", round, seed, g.device, markWait)
			}
		}
		for _, i := range used[max(0, len(used)-4):] {
			g := r.gates[rnd.IntN(3)]
			if d := g.store.DecideAt(policy.Request{Credential: ticket(i), Door: g.device, Now: time.Now()}); d.Reason != policy.ReasonTicketUsed {
				t.Fatalf("round %d (seed %d): used ticket %d at %s: %s, want %s (admitted twice)", round, seed, i, g.device, d.Reason, policy.ReasonTicketUsed)
			}
		}
	}
	waitFor(t, "HQ's conflict reports", func() bool {
		reps, err := r.hq.svc.MarkReports(context.Background(), "venue")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rep := range reps {
			if rep.Kind != hq.ReportConflict {
				t.Fatalf("seed %d: HQ refused an honest mark: %+v", seed, rep)
			}
			n++
		}
		if n > conflicts {
			t.Fatalf("seed %d: HQ reported %d conflicts, %d were forced", seed, n, conflicts)
		}
		return n == conflicts
	})
}
