package policy

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
)

var tokyo = mustLoc("Asia/Tokyo")

func mustLoc(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// at returns a time in Tokyo. 2025-04-07 is a Monday; 2025-04-29 (a
// Tuesday) is a holiday in the fixture; 2025-04-08 is a special day.
func at(day, hh, mm int) time.Time { return time.Date(2025, 4, day, hh, mm, 0, 0, tokyo) }

// siteItems is a small site: an office with a schedule, a PIN room, a
// locked store room, an auditorium with hard anti-passback, a lab with soft
// and a gym with timed anti-passback, and two ticket gates of a venue.
func siteItems() []Item {
	office := Schedule{ID: "office", Windows: []Window{
		{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "08:00", End: "19:00"},
		{Days: []string{"holiday"}, Start: "10:00", End: "12:00"},
	}, Special: []SpecialDay{{Date: "2025-04-08"}}} // closed all day
	night := Schedule{ID: "night", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, Start: "00:00", End: "06:00"}}}
	lunch := Schedule{ID: "lunch", Windows: []Window{{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "12:00", End: "13:00"}}}
	return []Item{
		Site{TimeZone: "Asia/Tokyo", RevocationsAt: at(7, 0, 0), MaxRevocationAge: 30 * 24 * time.Hour},
		office, night, lunch,
		Holiday{Date: "2025-04-29", Name: "Showa Day"},
		Door{ID: "front", Groups: []string{"all"}, Modes: []ScheduledMode{{Schedule: "lunch", Mode: ModeUnlocked}, {Schedule: "night", Mode: ModeLocked}}},
		Door{ID: "server", Groups: []string{"secure"}, DefaultMode: ModeCardPIN},
		Door{ID: "hall-in", Groups: []string{"all"}, Area: "hall"},
		Door{ID: "lab", Groups: []string{"all"}, Area: "lab"},
		Door{ID: "gym", Groups: []string{"all"}, Area: "gym"},
		Door{ID: "gate1", Groups: []string{"venue"}},
		Door{ID: "gate2", Groups: []string{"venue"}},
		Door{ID: "other-gate", Groups: []string{"other"}},
		Area{ID: "hall", Passback: PassbackHard},
		Area{ID: "lab", Passback: PassbackSoft},
		Area{ID: "gym", Passback: PassbackTimed, Reentry: 30 * time.Minute},
		AccessLevel{ID: "staff-office", Group: "staff", DoorGroup: "all", Schedule: "office"},
		AccessLevel{ID: "admins-secure", Group: "admins", DoorGroup: "secure"},
		AccessLevel{ID: "admins-all", Group: "admins", DoorGroup: "all"},
		Person{ID: "alice", Groups: []string{"staff"}},
		Person{ID: "bob", Groups: []string{"admins"}},
		Person{ID: "carol", Groups: []string{"staff"}, ValidUntil: at(1, 0, 0)},
		Person{ID: "dave"}, // no groups
		Entry{Credential: cert(1, 0xA1), Person: "alice"},
		Entry{Credential: cert(1, 0xB0), Person: "bob"},
		Entry{Credential: cert(1, 0xC0), Person: "carol"},
		Entry{Credential: cert(1, 0xD0), Person: "dave"},
		Entry{Credential: cert(1, 0xE0), Person: "alice", ValidFrom: at(20, 0, 0)},
		Entry{Credential: freeArea("EMP-1"), Person: "alice"},
		// Renewals: A2 -> A1 (alice), chain X3 -> X2 -> X1 -> A1, a long chain L6 ->...-> L1 -> A1.
		RenewalLink{New: CertRef{keyID(1), []byte{0xA2}}, Previous: CertRef{keyID(1), []byte{0xA1}}},
		RenewalLink{New: CertRef{keyID(2), []byte{0x13}}, Previous: CertRef{keyID(2), []byte{0x12}}},
		RenewalLink{New: CertRef{keyID(2), []byte{0x12}}, Previous: CertRef{keyID(2), []byte{0x11}}},
		RenewalLink{New: CertRef{keyID(2), []byte{0x11}}, Previous: CertRef{keyID(1), []byte{0xA1}}},
		RenewalLink{New: CertRef{keyID(3), []byte{6}}, Previous: CertRef{keyID(3), []byte{5}}},
		RenewalLink{New: CertRef{keyID(3), []byte{5}}, Previous: CertRef{keyID(3), []byte{4}}},
		RenewalLink{New: CertRef{keyID(3), []byte{4}}, Previous: CertRef{keyID(3), []byte{3}}},
		RenewalLink{New: CertRef{keyID(3), []byte{3}}, Previous: CertRef{keyID(3), []byte{2}}},
		RenewalLink{New: CertRef{keyID(3), []byte{2}}, Previous: CertRef{keyID(1), []byte{0xA1}}},
		// A revoked renewed certificate, and the old one (revoked by the renewal).
		RenewalLink{New: CertRef{keyID(1), []byte{0xA3}}, Previous: CertRef{keyID(1), []byte{0xA1}}},
		Revocation{IssuerKeyID: keyID(1), Serial: []byte{0xA3}},
		Revocation{IssuerKeyID: keyID(1), Serial: []byte{0xF0}},
		Entry{Credential: cert(1, 0xF0), Person: "alice"},
		// Tickets.
		Event{ID: "concert", Start: at(12, 17, 0), End: at(12, 22, 0), DoorGroup: "venue", Reentry: true},
		Event{ID: "final", Start: at(12, 17, 0), End: at(12, 22, 0), DoorGroup: "venue"},
		Entry{Credential: freeArea("TKT-1"), Person: "ticket-1", Event: "concert"},
		Entry{Credential: freeArea("TKT-2"), Person: "ticket-2", Event: "final"},
		Entry{Credential: freeArea("TKT-3"), Person: "ticket-3", Event: "concert"},
		Entry{Credential: freeArea("TKT-X"), Person: "ticket-x", Event: "nope"},
	}
}

func applyItems(t testing.TB, s *Store, version uint64, items []Item) {
	t.Helper()
	var buf bytes.Buffer
	enc, err := NewSnapshotEncoder(&buf, version)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if err := enc.Put(it); err != nil {
			t.Fatalf("Put(%+v): %v", it, err)
		}
	}
	if _, err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyFullStream(context.Background(), version, &buf); err != nil {
		t.Fatal(err)
	}
}

func openSite(t *testing.T, opts Options) *Store {
	t.Helper()
	if opts.Log == nil {
		opts.Log = discard
	}
	path := filepath.Join(t.TempDir(), "policy.db")
	s, err := OpenWithOptions(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	applyItems(t, s, 1, siteItems())
	return s
}

// step is one tap of a sequence; sequences matter for anti-passback and
// tickets.
type step struct {
	name string
	req  Request
	want Reason
	hops int
}

func runSteps(t *testing.T, s *Store, steps []step) {
	t.Helper()
	for _, st := range steps {
		d := s.DecideAt(st.req)
		if d.Reason != st.want || d.Granted != st.want.Granted() || d.RenewalHops != st.hops {
			t.Errorf("%s: DecideAt(%s at %s %s %s) = %+v, want %s (hops %d)", st.name, st.req.Credential, st.req.Door,
				st.req.Direction, st.req.Now.Format(time.DateTime), d, st.want, st.hops)
		}
		if d.Granted && d.SnapshotVersion != 1 {
			t.Errorf("%s: SnapshotVersion = %d", st.name, d.SnapshotVersion)
		}
	}
}

func TestDecideAtRules(t *testing.T) {
	mon10 := at(7, 10, 0)
	req := func(c credential.Credential, door string, now time.Time) Request {
		return Request{Credential: c, Door: door, Now: now}
	}
	tests := []step{
		{"enrolled in schedule", req(cert(1, 0xA1), "front", mon10), ReasonEnrolled, 0},
		{"free-area ID", req(freeArea("EMP-1"), "front", mon10), ReasonEnrolled, 0},
		{"before the window", req(cert(1, 0xA1), "front", at(7, 7, 59)), ReasonOutsideSchedule, 0},
		{"end is exclusive", req(cert(1, 0xA1), "front", at(7, 19, 0)), ReasonOutsideSchedule, 0},
		{"weekend", req(cert(1, 0xA1), "front", at(12, 10, 0)), ReasonOutsideSchedule, 0},
		{"holiday uses holiday windows", req(cert(1, 0xA1), "front", at(29, 11, 0)), ReasonEnrolled, 0},
		{"holiday outside holiday windows", req(cert(1, 0xA1), "front", at(29, 15, 0)), ReasonOutsideSchedule, 0},
		{"special day closed", req(cert(1, 0xA1), "front", at(8, 10, 0)), ReasonOutsideSchedule, 0},
		{"schedule is in Tokyo time", req(cert(1, 0xA1), "front", time.Date(2025, 4, 7, 1, 0, 0, 0, time.UTC)), ReasonEnrolled, 0},
		{"door unlocked at lunch", req(freeArea("NOBODY"), "front", at(7, 12, 30)), ReasonDoorUnlocked, 0},
		{"door locked at night", req(cert(1, 0xB0), "front", at(7, 3, 0)), ReasonDoorLocked, 0},
		{"no access level for the door", req(cert(1, 0xA1), "server", mon10), ReasonNoAccess, 0},
		{"person without groups", req(cert(1, 0xD0), "front", mon10), ReasonNoAccess, 0},
		{"card+PIN without PIN", req(cert(1, 0xB0), "server", mon10), ReasonPINRequired, 0},
		{"card+PIN with PIN", Request{Credential: cert(1, 0xB0), Door: "server", Now: mon10, PINVerified: true}, ReasonEnrolled, 0},
		{"person expired", req(cert(1, 0xC0), "front", mon10), ReasonPersonInactive, 0},
		{"credential not yet valid", req(cert(1, 0xE0), "front", mon10), ReasonCredentialInactive, 0},
		{"credential valid later", req(cert(1, 0xE0), "front", at(21, 10, 0)), ReasonEnrolled, 0},
		{"unknown door", req(cert(1, 0xA1), "roof", mon10), ReasonUnknownDoor, 0},
		{"not enrolled", req(cert(1, 0x99), "front", mon10), ReasonNotEnrolled, 0},
		{"revoked", req(cert(1, 0xF0), "front", mon10), ReasonRevoked, 0},
		{"renewed once", req(cert(1, 0xA2), "front", mon10), ReasonRenewed, 1},
		{"renewed three times, across CA keys", req(cert(2, 0x13), "front", mon10), ReasonRenewed, 3},
		{"chain longer than the bound", req(cert(3, 6), "front", mon10), ReasonRenewalChainTooLong, 0},
		{"renewed but the new one is revoked", req(cert(1, 0xA3), "front", mon10), ReasonRevoked, 0},
		{"ticket of an unknown event", req(freeArea("TKT-X"), "gate1", at(12, 18, 0)), ReasonTicketWrongDoor, 0},
		{"ticket at a foreign gate", req(freeArea("TKT-1"), "other-gate", at(12, 18, 0)), ReasonTicketWrongDoor, 0},
		{"ticket before the event", req(freeArea("TKT-1"), "gate1", at(12, 16, 59)), ReasonTicketOutsideWindow, 0},
		{"ticket after the event", req(freeArea("TKT-1"), "gate1", at(12, 22, 0)), ReasonTicketOutsideWindow, 0},
	}
	// Each case on a fresh store: the trusted time only moves forward.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, openSite(t, Options{MaxRenewalHops: 4}), []step{tt})
		})
	}
	s := openSite(t, Options{})
	// Legacy Decide ignores doors and time.
	if d := s.Decide(cert(1, 0xA2)); d.Reason != ReasonRenewed || d.Person != "alice" || d.Flags != FlagRenewed {
		t.Errorf("Decide(renewed) = %+v", d)
	}
}

func TestPassback(t *testing.T) {
	in := func(door string, now time.Time) Request {
		return Request{Credential: cert(1, 0xB0), Door: door, Now: now}
	}
	out := func(door string, now time.Time) Request {
		r := in(door, now)
		r.Direction = DirectionOut
		return r
	}
	t0 := at(7, 10, 0)
	s := openSite(t, Options{})
	runSteps(t, s, []step{
		{"hard: first entry", in("hall-in", t0), ReasonEnrolled, 0},
		{"hard: second entry", in("hall-in", t0.Add(time.Minute)), ReasonPassback, 0},
		{"hard: exit", out("hall-in", t0.Add(2*time.Minute)), ReasonEnrolled, 0},
		{"hard: exit again", out("hall-in", t0.Add(3*time.Minute)), ReasonPassback, 0},
		{"hard: entry after exit", in("hall-in", t0.Add(4*time.Minute)), ReasonEnrolled, 0},
		{"soft: entry", in("lab", t0.Add(5*time.Minute)), ReasonEnrolled, 0},
		{"soft: second entry flagged", in("lab", t0.Add(6*time.Minute)), ReasonPassbackSoft, 0},
		{"timed: entry", in("gym", t0.Add(10*time.Minute)), ReasonEnrolled, 0},
		{"timed: exit does not matter", out("gym", t0.Add(11*time.Minute)), ReasonEnrolled, 0},
		{"timed: too soon", in("gym", t0.Add(39*time.Minute)), ReasonPassback, 0},
		{"timed: after the reentry time", in("gym", t0.Add(40*time.Minute)), ReasonEnrolled, 0},
		{"hard: inside again, denied", in("hall-in", t0.Add(45*time.Minute)), ReasonPassback, 0},
	})
	if err := s.Forgive(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, []step{
		{"hard: forgiven", in("hall-in", t0.Add(46*time.Minute)), ReasonEnrolled, 0},
		{"timed: forgiven", in("gym", t0.Add(47*time.Minute)), ReasonEnrolled, 0},
	})
}

func TestTickets(t *testing.T) {
	tap := func(ticket, gate string, dir Direction, now time.Time) Request {
		return Request{Credential: freeArea(ticket), Door: gate, Direction: dir, Now: now}
	}
	t0 := at(12, 18, 0)
	gate1 := openSite(t, Options{})
	gate2 := openSite(t, Options{})
	runSteps(t, gate1, []step{
		{"exit without entry changes nothing", tap("TKT-2", "gate1", DirectionOut, t0), ReasonTicket, 0},
		{"entry", tap("TKT-2", "gate1", DirectionIn, t0), ReasonTicket, 0},
		{"second entry", tap("TKT-2", "gate1", DirectionIn, t0.Add(time.Minute)), ReasonTicketUsed, 0},
		{"exit", tap("TKT-2", "gate1", DirectionOut, t0.Add(2*time.Minute)), ReasonTicket, 0},
		{"no re-entry at this event", tap("TKT-2", "gate1", DirectionIn, t0.Add(3*time.Minute)), ReasonTicketUsed, 0},
		{"re-entry event: entry", tap("TKT-1", "gate1", DirectionIn, t0.Add(4*time.Minute)), ReasonTicket, 0},
		{"re-entry event: again without exit", tap("TKT-1", "gate1", DirectionIn, t0.Add(5*time.Minute)), ReasonTicketUsed, 0},
		{"re-entry event: exit", tap("TKT-1", "gate1", DirectionOut, t0.Add(6*time.Minute)), ReasonTicket, 0},
		{"re-entry event: back in", tap("TKT-1", "gate1", DirectionIn, t0.Add(7*time.Minute)), ReasonTicket, 0},
	})
	// Gate 2 learns gate 1's marks through HQ.
	marks, next, err := gate1.UsedMarks(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 5 || next != 5 {
		t.Fatalf("UsedMarks(0) = %d marks, next %d; want 5, 5", len(marks), next)
	}
	if more, n2, _ := gate1.UsedMarks(next, 100); len(more) != 0 || n2 != next {
		t.Errorf("UsedMarks(%d) = %d marks, next %d; want none", next, len(more), n2)
	}
	n, err := gate2.MergeUsedMarks(context.Background(), marks)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("MergeUsedMarks changed %d, want 2 (one per ticket: each carries its latest mark)", n)
	}
	if n, _ := gate2.MergeUsedMarks(context.Background(), marks); n != 0 {
		t.Errorf("merging the same marks again changed %d", n)
	}
	runSteps(t, gate2, []step{
		{"used at gate 1, refused at gate 2", tap("TKT-2", "gate2", DirectionIn, t0.Add(10*time.Minute)), ReasonTicketUsed, 0},
		{"inside per gate 1", tap("TKT-1", "gate2", DirectionIn, t0.Add(10*time.Minute)), ReasonTicketUsed, 0},
		{"unused ticket", tap("TKT-3", "gate2", DirectionIn, t0.Add(10*time.Minute)), ReasonTicket, 0},
	})
	// Gate 2's own marks are what it sends on; merged ones are not echoed.
	own, _, _ := gate2.UsedMarks(0, 100)
	if len(own) != 1 || !bytes.Equal(own[0].Ticket, append([]byte{byte(credential.KindFreeArea)}, "TKT-3"...)) || own[0].Door != "gate2" {
		t.Errorf("gate 2's own marks = %+v, want the TKT-3 entry", own)
	}
	bad := []UsedMark{{Ticket: []byte{9}, State: MarkIn, At: t0}}
	if _, err := gate2.MergeUsedMarks(context.Background(), bad); err == nil {
		t.Error("a mark with an invalid ticket key was merged")
	}
}

func TestFallbacks(t *testing.T) {
	fresh := at(8, 10, 0)  // within 30 days of RevocationsAt
	stale := at(42, 10, 0) // Monday 2025-05-12
	tests := []struct {
		name string
		opts DoorOptions
		req  Request
		want Reason
	}{
		{"fresh data", DoorOptions{}, Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: fresh}, ReasonEnrolled},
		{"stale, deny certificates", DoorOptions{}, Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: stale}, ReasonRevocationsStale},
		{"stale, free-area ID unaffected", DoorOptions{}, Request{Credential: freeArea("EMP-1"), Door: "front", Now: stale}, ReasonEnrolled},
		{"stale, grant and flag", DoorOptions{OnStaleRevocations: FallbackGrantFlag}, Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: stale}, ReasonGrantedStaleRevocations},
		{"stale, still revoked", DoorOptions{OnStaleRevocations: FallbackGrantFlag}, Request{Credential: cert(1, 0xF0), Door: "hall-in", Now: stale}, ReasonRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openSite(t, Options{DefaultDoor: tt.opts})
			if d := s.DecideAt(tt.req); d.Reason != tt.want {
				t.Errorf("DecideAt = %+v, want %s", d, tt.want)
			}
		})
	}
	t.Run("clock went back", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.db")
		opts := Options{Log: discard, Doors: map[string]DoorOptions{"lab": {OnUntrustedClock: FallbackGrantFlag}}}
		s, err := OpenWithOptions(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		applyItems(t, s, 1, siteItems())
		if tt, ok := s.TrustTime(at(9, 10, 0)); !ok || !tt.Equal(at(9, 10, 0)) {
			t.Fatalf("TrustTime(first) = %s, %v", tt, ok)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		// A reboot without RTC: the clock restarts earlier.
		s, err = OpenWithOptions(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		back := at(7, 10, 0)
		if tt, ok := s.TrustTime(back); ok || !tt.Equal(at(9, 10, 0)) {
			t.Errorf("TrustTime(earlier) after reopen = %s, %v; want the stored time, false", tt, ok)
		}
		runSteps(t, s, []step{
			{"untrusted clock: deny", Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: back}, ReasonClockUntrusted, 0},
			{"untrusted clock: grant and flag", Request{Credential: cert(1, 0xB0), Door: "lab", Now: back}, ReasonGrantedClockUntrusted, 0},
			{"clock caught up", Request{Credential: cert(1, 0xB0), Door: "hall-in", Now: at(9, 10, 1)}, ReasonEnrolled, 0},
		})
	})
}
