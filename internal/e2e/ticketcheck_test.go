package e2e_test

// The online check of single-entry tickets (issue 12, item 1), through a
// real mosquitto.

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/policy"
)

// checkBudget is the online-check budget of the tests (the documented
// example).
const checkBudget = 300 * time.Millisecond

// TestTicketOnlineCheck: gate-2 shares no marks, only asks HQ; HQ's
// answer refuses a ticket gate-1 used (the first asker wins). With HQ
// away the check falls back to the local decision within the budget. It
// measures the tap latency the check adds, in one run.
func TestTicketOnlineCheck(t *testing.T) {
	r := newRulesRig(t, 1, 400)
	g1 := r.gates[0]
	g1.halt()
	g1.checks = checkBudget
	g1.start()
	g2 := newTestGate(t, r.m.URL(), "gate-2", r.hq.key.Public().(ed25519.PublicKey), 400)
	g2.checks, g2.noMark = checkBudget, true
	g2.start()
	waitOnline(t, r.hq.svc, "gate-1", "gate-2")

	tap := func(g *testGate, i int) (policy.Decision, time.Duration) {
		start := time.Now()
		d := g.store.DecideAt(policy.Request{Credential: ticket(i), Door: g.device, Now: start})
		return d, time.Since(start)
	}
	if d, _ := tap(g1, 0); d.Reason != policy.ReasonTicket || d.Flags&policy.FlagTicketOnline == 0 {
		t.Fatalf("ticket 0 at gate-1: %s flags %s, want %s confirmed online", d.Reason, d.Flags, policy.ReasonTicket)
	}
	if d, _ := tap(g2, 0); d.Reason != policy.ReasonTicketUsed {
		t.Fatalf("ticket 0 at gate-2 (no shared marks, online check): %s, want %s", d.Reason, policy.ReasonTicketUsed)
	}
	// Latency, in one run: the same gate with the check off, then on.
	const n = 150
	off, on := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	g1.store.SetTicketCheck(nil, 0)
	for i := 1; i <= n; i++ {
		d, el := tap(g1, i)
		if d.Reason != policy.ReasonTicket {
			t.Fatalf("ticket %d: %s", i, d.Reason)
		}
		off = append(off, el)
	}
	g1.store.SetTicketCheck(g1.edge.CheckTicket, checkBudget)
	for i := n + 1; i <= 2*n; i++ {
		d, el := tap(g1, i)
		if d.Reason != policy.ReasonTicket || d.Flags&policy.FlagTicketOnline == 0 {
			t.Fatalf("ticket %d: %s flags %s", i, d.Reason, d.Flags)
		}
		on = append(on, el)
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))]
	}
	line := fmt.Sprintf("tap latency over %d tickets: check off p50 %v p99 %v; check on p50 %v p99 %v; p50 ratio %.1f",
		n, q(off, 0.5), q(off, 0.99), q(on, 0.5), q(on, 0.99), float64(q(on, 0.5))/float64(q(off, 0.5)))
	t.Log(line)
	if f := os.Getenv("TOBIRA_PERF_OUT"); f != "" {
		_ = os.WriteFile(f, []byte(line+"\n"), 0o644)
	}
	// HQ away: the check runs out its budget and the gate decides locally.
	r.hqAway(true)
	d, el := tap(g1, 2*n+1)
	if d.Reason != policy.ReasonTicket || d.Flags&policy.FlagTicketUnanswered == 0 {
		t.Errorf("ticket with HQ away: %s flags %s, want %s decided locally (ticket_unanswered)", d.Reason, d.Flags, policy.ReasonTicket)
	}
	if el > checkBudget+200*time.Millisecond {
		t.Errorf("the tap with HQ away took %v, budget %v", el, checkBudget)
	}
	r.hqAway(false)
}
