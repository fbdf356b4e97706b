package e2e_test

// The randomized fault test of single-entry tickets (issue 12): three gates
// while HQ, the broker and gates are SIGKILLed and restarted at random
// points. HQ and the gates run in child processes (ticketkill_test.go).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/mosquittotest"
	"github.com/tobira-ac/tobira/policy"
)

// killRig is a broker, an HQ process and three gate processes, each
// reaching the broker through its own proxy.
type killRig struct {
	t     *testing.T
	m     *mosquittotest.Mosquitto
	hq    *ticketProc
	gates []*ticketProc
	rnd   *rand.Rand
}

// newKillRig starts mosquitto (no persistence: a SIGKILL loses every
// session and queued message), HQ with the venue's ticket rules and
// gate-1..3 with tickets tickets; gate-3 asks HQ online (300 ms budget).
func newKillRig(t *testing.T, rnd *rand.Rand, tickets int) *killRig {
	conf := func(port int) string {
		return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n", port)
	}
	r := &killRig{t: t, m: mosquittotest.StartWith(t, mosquittotest.Options{Config: conf}), rnd: rnd}
	logs := &childLogs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the children's logs (last 64 KiB):\n%s", logs.tail(64<<10))
		}
	})
	env := ticketEnv{key: testKeyPair(t), start: time.Now().UTC().Add(-time.Hour), tickets: tickets}
	hqEnv := env
	hqEnv.role = "hq"
	r.hq = newTicketProc(t, logs, r.m, hqEnv)
	r.hq.start()
	for i := range 3 {
		g := env
		g.role, g.device = "gate", fmt.Sprintf("gate-%d", i+1)
		if i == 2 {
			g.check = 300 * time.Millisecond
		}
		p := newTicketProc(t, logs, r.m, g)
		p.start()
		r.gates = append(r.gates, p)
	}
	return r
}

// gate returns a random gate other than the ones of not.
func (r *killRig) gate(not ...*ticketProc) *ticketProc {
	for {
		g := r.gates[r.rnd.IntN(len(r.gates))]
		if !containsProc(not, g) {
			return g
		}
	}
}

// containsProc reports whether ps holds p.
func containsProc(ps []*ticketProc, p *ticketProc) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// killSoon SIGKILLs p at a random point of the next 200 ms (while it
// sends, stores or acknowledges what was just done) and starts it again.
func (r *killRig) killSoon(p *ticketProc) {
	time.Sleep(time.Duration(r.rnd.IntN(200)) * time.Millisecond)
	p.kill()
	p.start()
}

// tap taps ticket i at g and wants it admitted (it is unused).
func (r *killRig) tap(g *ticketProc, i int) {
	r.t.Helper()
	if got := g.call("tap %d", i); got != string(policy.ReasonTicket) {
		r.t.Fatalf("unused ticket %d at %s: %s, want %s (an unused ticket refused)", i, g.name(), got, policy.ReasonTicket)
	}
}

// faultSeed returns the seed of a randomized fault test: TOBIRA_FAULT_SEED
// or the time.
func faultSeed(t *testing.T) uint64 {
	if s := os.Getenv("TOBIRA_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TOBIRA_FAULT_SEED: %v", err)
		}
		return v
	}
	return uint64(time.Now().UnixNano())
}

// TestTicketsUnderRandomFaults runs rounds of random faults with
// single-entry tickets tapped at random gates. In a round: HQ's network
// may go away; one gate goes offline and may be SIGKILLed and restarted
// there; fresh tickets are tapped at random gates, online or not, a gate
// SIGKILLed right after its tap now and then; two offline gates may admit
// the same ticket (a partition, unavoidable); then HQ and the broker may
// be SIGKILLed and restarted at random points. After each round the
// network comes back: every gate must learn every used ticket and refuse
// it (no ticket admitted twice at gates connected in between), no unused
// ticket is ever refused, and HQ reports every forced conflict (and
// refuses no honest mark). The seed is logged; TOBIRA_FAULT_SEED repeats a
// run; TOBIRA_BENCH_SCALE=full runs more rounds.
func TestTicketsUnderRandomFaults(t *testing.T) {
	seed := faultSeed(t)
	rounds := scale(12, 60)
	t.Logf("seed %d (TOBIRA_FAULT_SEED=%d repeats this run), %d rounds", seed, seed, rounds)
	rnd := rand.New(rand.NewPCG(seed, seed))
	r := newKillRig(t, rnd, rounds*8)
	next, conflicts, kills := 0, 0, 0
	var used []int
	for round := range rounds {
		var did []string
		note := func(format string, args ...any) { did = append(did, fmt.Sprintf(format, args...)) }
		if rnd.IntN(3) == 0 {
			r.hq.proxy.SetDown(true)
			note("HQ away")
		}
		down := r.gate()
		down.proxy.SetDown(true)
		note("%s offline", down.name())
		if rnd.IntN(2) == 0 {
			r.killSoon(down)
			kills++
			note("%s SIGKILLed offline", down.name())
		}
		for range 1 + rnd.IntN(3) {
			g := r.gate()
			r.tap(g, next)
			note("ticket %d at %s", next, g.name())
			used = append(used, next)
			next++
			if rnd.IntN(4) == 0 {
				r.killSoon(g)
				kills++
				note("%s SIGKILLed after its tap", g.name())
			}
		}
		if rnd.IntN(3) == 0 {
			other := r.gate(down)
			other.proxy.SetDown(true)
			r.tap(down, next)
			r.tap(other, next)
			note("partition: ticket %d at %s and %s", next, down.name(), other.name())
			used = append(used, next)
			next++
			conflicts++
			other.proxy.SetDown(false)
		}
		if rnd.IntN(2) == 0 {
			r.killSoon(r.hq)
			kills++
			note("HQ SIGKILLed")
		}
		if rnd.IntN(2) == 0 {
			time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond)
			r.m.Restart(t)
			kills++
			note("broker SIGKILLed")
		}
		t.Logf("round %d: %s", round, strings.Join(did, ", "))
		r.hq.proxy.SetDown(false)
		down.proxy.SetDown(false)
		list := strings.Trim(fmt.Sprint(used), "[]")
		for _, g := range r.gates {
			if g.call("learned %s", list) != "yes" {
				t.Fatalf("round %d (seed %d): %s did not learn every used ticket within %v", round, seed, g.name(), markWait)
			}
		}
		for _, i := range used[max(0, len(used)-4):] {
			g := r.gate()
			if got := g.call("tap %d", i); got != string(policy.ReasonTicketUsed) {
				t.Fatalf("round %d (seed %d): used ticket %d at %s: %s, want %s (admitted twice)", round, seed, i, g.name(), got, policy.ReasonTicketUsed)
			}
		}
	}
	t.Logf("%d tickets used, %d processes SIGKILLed, %d conflicts forced", len(used), kills, conflicts)
	waitFor(t, "HQ's conflict reports", func() bool {
		var refused, reported, refusedEvents, conflictEvents int
		if _, err := fmt.Sscan(r.hq.call("reports"), &refused, &reported, &refusedEvents, &conflictEvents); err != nil {
			t.Fatal(err)
		}
		if refused > 0 || refusedEvents > 0 {
			t.Fatalf("seed %d: HQ refused %d honest marks (%d events)", seed, refused, refusedEvents)
		}
		if reported > conflicts {
			t.Fatalf("seed %d: HQ reported %d conflicts, %d were forced", seed, reported, conflicts)
		}
		return reported == conflicts && (conflicts == 0) == (conflictEvents == 0)
	})
}
