package pcsc_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/cardsim"
	"github.com/tobira-ac/tobira/reader/pcsc/pcsctest"
)

// These tests run through the real stack: ebfe/scard -> pcscd -> vpcd ->
// cardsim. pcsctest.Start serialises them with every other vpcd user. The
// identification modes over this stack are tested in package reader
// (TestPCSCIdentify, TestPCSCModes, TestPCSCRecovery).

// integrationTimeout bounds each integration test, so that a hung PC/SC
// call fails the test instead of stalling the run.
const integrationTimeout = 60 * time.Second

func TestPCSCSameTapNotReadTwice(t *testing.T) {
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
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
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
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
	p, ctx := pcsctest.Open(t, slog.LevelDebug, integrationTimeout)
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
