package policy_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// A small snapshot: staff may pass the front door on weekdays from 08:00 to
// 19:00 (site time, Asia/Tokyo); one of alice's two cards is revoked.
// DecideAt answers from the stored snapshot alone, with the reason.
func ExampleStore_DecideAt() {
	dir, err := os.MkdirTemp("", "policy-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := policy.Open(filepath.Join(dir, "policy.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	issuer := bytes.Repeat([]byte{0x11}, credential.KeyIDLen)
	card := func(serial byte) credential.Credential {
		return credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: issuer, Serial: []byte{serial}}
	}
	weekdays := []string{"mon", "tue", "wed", "thu", "fri"}
	err = store.ApplyFull(context.Background(), policy.Snapshot{
		Version:   1,
		Site:      &policy.Site{TimeZone: "Asia/Tokyo"},
		Schedules: []policy.Schedule{{ID: "office", Windows: []policy.Window{{Days: weekdays, Start: "08:00", End: "19:00"}}}},
		Doors:     []policy.Door{{ID: "front", Groups: []string{"offices"}}},
		Levels:    []policy.AccessLevel{{ID: "staff-offices", Group: "staff", DoorGroup: "offices", Schedule: "office"}},
		People:    []policy.Person{{ID: "alice", Groups: []string{"staff"}}},
		Allow:     []policy.Entry{{Credential: card(1), Person: "alice"}, {Credential: card(2), Person: "alice"}},
		Revoked:   []policy.Revocation{{IssuerKeyID: issuer, Serial: []byte{2}}},
	})
	if err != nil {
		log.Fatal(err)
	}

	jst := time.FixedZone("JST", 9*60*60)
	monday := func(hh, mm int) time.Time { return time.Date(2025, 4, 7, hh, mm, 0, 0, jst) }
	for _, tap := range []struct {
		who  string
		card credential.Credential
		at   time.Time
	}{
		{"alice, Monday 09:30", card(1), monday(9, 30)},
		{"her revoked card", card(2), monday(9, 31)},
		{"alice, Monday 21:00", card(1), monday(21, 0)},
		{"an unknown card", card(3), monday(21, 1)},
	} {
		d := store.DecideAt(policy.Request{Credential: tap.card, Door: "front", Direction: policy.DirectionIn, Now: tap.at})
		fmt.Printf("%-20s granted=%-5v reason=%s\n", tap.who, d.Granted, d.Reason)
	}
	// Output:
	// alice, Monday 09:30  granted=true  reason=enrolled
	// her revoked card     granted=false reason=revoked
	// alice, Monday 21:00  granted=false reason=outside_schedule
	// an unknown card      granted=false reason=not_enrolled
}
