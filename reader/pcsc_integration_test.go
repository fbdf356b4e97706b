package reader_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

// These tests run identification through the real stack: reader/pcsc ->
// pcscd -> vpcd -> cardsim. pcsctest.Start serialises them with every other
// vpcd user. The card source's own behaviour (same tap not read twice,
// cancel, unknown reader) is tested in package reader/pcsc.

// integrationTimeout bounds each integration test, so that a hung PC/SC
// call fails the test instead of stalling the run.
const integrationTimeout = 60 * time.Second

func TestPCSCIdentify(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
	names, err := p.Readers()
	if err != nil || !slices.Contains(names, pcsctest.Reader) {
		t.Fatalf("Readers() = %q, %v; want %q listed", names, err, pcsctest.Reader)
	}
	v := bothGenerations(t)
	src := p.Source(pcsctest.Reader)
	der := readFixture(t, "auth-gen1.der")

	// A good card: identified with the exact APDU count.
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: der})
	bridge := pcsctest.Insert(t, card)
	c, err := src.NextCard(ctx)
	if err != nil {
		t.Fatalf("NextCard() = %v", err)
	}
	id, err := reader.Identify(ctx, c, v, fixtureNow)
	if err != nil {
		t.Fatalf("Identify() = %v", err)
	}
	if got := id.Credential.SerialHex(); got != "1a2b3c4d" {
		t.Errorf("serial = %s, want 1a2b3c4d", got)
	}
	if want := 4 + ceilDiv(len(der), 256); id.APDUs != want || card.Commands() != want {
		t.Errorf("APDUs = %d, card saw %d, want %d", id.APDUs, card.Commands(), want)
	}
	done := make(chan error, 1)
	go func() { done <- c.Done(ctx) }()
	if err := bridge.Remove(); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Done() = %v", err)
	}
	if _, err := c.Transmit(ctx, []byte{0x00, 0xA4, 0x04, 0x0C}); !errors.Is(err, reader.ErrCardRemoved) {
		t.Errorf("Transmit() after Done = %v, want ErrCardRemoved", err)
	}

	// A card pulled in the middle of the certificate read.
	pulled := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: der})
	pulled.SetFault(cardsim.FaultRemove, 6)
	if err := bridge.Insert(ctx, pulled); err != nil {
		t.Fatalf("Insert() = %v", err)
	}
	c, err = src.NextCard(ctx)
	if err != nil {
		t.Fatalf("NextCard() = %v", err)
	}
	id, err = reader.Identify(ctx, c, v, fixtureNow)
	if got := matchedSentinels(err); len(got) != 1 || got[0] != reader.ErrCardRemoved {
		t.Fatalf("Identify() on a pulled card = %v, want ErrCardRemoved", err)
	}
	if id.APDUs != 7 {
		t.Errorf("APDUs = %d, want 7 (the 7th got no answer)", id.APDUs)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatalf("Done() after removal = %v", err)
	}
}

// BenchmarkPCSCIdentify measures one tap's exchange through pcscd and vpcd
// (the session stays open; Done and card arrival are not included).
func BenchmarkPCSCIdentify(b *testing.B) {
	pcsctest.Start(b)
	p, err := pcsc.Open(slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard, AuthCert: readFixture(b, "auth-gen1.der")})
	pcsctest.Insert(b, card)
	ctx, cancel := context.WithTimeout(b.Context(), integrationTimeout)
	defer cancel()
	c, err := p.Source(pcsctest.Reader).NextCard(ctx)
	if err != nil {
		b.Fatal(err)
	}
	v := bothGenerations(b)
	var apdus int
	var io, own time.Duration
	for b.Loop() {
		id, err := reader.Identify(ctx, c, v, fixtureNow)
		if err != nil {
			b.Fatal(err)
		}
		apdus = id.APDUs
		io += id.CardIO
		own += id.OwnWork()
	}
	b.ReportMetric(float64(apdus), "APDUs/op")
	b.ReportMetric(float64(io.Microseconds())/float64(b.N), "card-io-µs/op")
	b.ReportMetric(float64(own.Microseconds())/float64(b.N), "own-µs/op")
}
