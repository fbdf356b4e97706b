package reader_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsctest"
)

// These tests run through the real stack: ebfe/scard -> pcscd -> vpcd ->
// cardsim. pcsctest.Start serialises them with every other vpcd user.

// integrationTimeout bounds each integration test, so that a hung PC/SC
// call fails the test instead of stalling the run.
const integrationTimeout = 60 * time.Second

func TestPCSCIdentify(t *testing.T) {
	p, ctx := pcsctest.OpenPCSC(t, slog.LevelDebug, integrationTimeout)
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

func TestPCSCSameTapNotReadTwice(t *testing.T) {
	p, ctx := pcsctest.OpenPCSC(t, slog.LevelDebug, integrationTimeout)
	src := p.Source(pcsctest.Reader)
	card := cardsim.New(cardsim.Profile{TokenLabel: cardsim.LabelMyNumberCard})
	bridge := pcsctest.Insert(t, card)
	c, err := src.NextCard(ctx)
	if err != nil {
		t.Fatalf("NextCard() = %v", err)
	}

	// Done gives up while the card stays in the reader...
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := c.Done(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Done() with the card still in = %v, want DeadlineExceeded", err)
	}
	// ...so NextCard must not hand out the same card again.
	short2, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if c2, err := src.NextCard(short2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("NextCard() with the old card still in = %v, %v; want DeadlineExceeded", c2, err)
	}
	// Once it has left and come back, it is a new tap.
	if err := bridge.Remove(); err != nil {
		t.Fatal(err)
	}
	pcsctest.WaitCard(t, false)
	if err := bridge.Insert(ctx, card); err != nil {
		t.Fatal(err)
	}
	c, err = src.NextCard(ctx)
	if err != nil {
		t.Fatalf("NextCard() after re-insertion = %v", err)
	}
	if ans, err := c.Transmit(ctx, []byte{0x00, 0xA4, 0x04, 0x0C, 0x0A, 0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01}); err != nil || len(ans) != 2 || ans[0] != 0x90 {
		t.Fatalf("Transmit() = % X, %v", ans, err)
	}
	if err := bridge.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := c.Done(ctx); err != nil {
		t.Fatalf("Done() = %v", err)
	}
}

func TestPCSCNextCardCancelled(t *testing.T) {
	p, ctx := pcsctest.OpenPCSC(t, slog.LevelDebug, integrationTimeout)
	src := p.Source(pcsctest.Reader)
	ctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		_, err := src.NextCard(ctx)
		got <- err
	}()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("NextCard() = %v, want context.Canceled", err)
	}
}

func TestPCSCReaderNotFound(t *testing.T) {
	p, ctx := pcsctest.OpenPCSC(t, slog.LevelDebug, integrationTimeout)
	_, err := p.Source("No Such Reader 00 00").NextCard(ctx)
	if !errors.Is(err, reader.ErrReaderNotFound) {
		t.Fatalf("NextCard() = %v, want ErrReaderNotFound", err)
	}
	for _, want := range []string{`"No Such Reader 00 00"`, `"` + pcsctest.Reader + `"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// BenchmarkPCSCIdentify measures one tap's exchange through pcscd and vpcd
// (the session stays open; Done and card arrival are not included).
func BenchmarkPCSCIdentify(b *testing.B) {
	pcsctest.Start(b)
	p, err := reader.OpenPCSC(slog.New(slog.DiscardHandler))
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
