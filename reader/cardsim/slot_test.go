package cardsim

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tobira-ac/tobira/reader"
)

func TestSlot(t *testing.T) {
	s := NewSlot()
	c := New(Profile{TokenLabel: LabelMyNumberCard})
	c.Process(selectAP) // selection is lost when the slot powers the card up

	got := make(chan reader.Card, 1)
	go func() {
		card, err := s.NextCard(t.Context())
		if err != nil {
			t.Errorf("NextCard() error = %v", err)
		}
		got <- card
	}()
	s.Insert(c)
	card := <-got
	if card == nil {
		t.Fatal("no card")
	}
	if ans, err := card.Transmit(t.Context(), selectCert); err != nil || !bytes.Equal(ans, sw(reader.SWFileNotFound)) {
		t.Fatalf("Transmit() = % X, %v, want 6A82 (card was reset)", ans, err)
	}
	if ans, err := card.Transmit(t.Context(), selectAP); err != nil || !bytes.Equal(ans, sw(reader.SWOK)) {
		t.Fatalf("Transmit() = % X, %v", ans, err)
	}
	if err := card.Done(t.Context()); err != nil {
		t.Fatalf("Done() error = %v", err)
	}
	if _, err := card.Transmit(t.Context(), selectAP); !errors.Is(err, reader.ErrCardRemoved) {
		t.Fatalf("Transmit() after Done error = %v, want ErrCardRemoved", err)
	}

	// The card was taken once: the slot is empty now.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if card, err := s.NextCard(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("NextCard() on an empty slot = %v, %v, want context.Canceled", card, err)
	}
}

func TestSlotInsertReplaces(t *testing.T) {
	s := NewSlot()
	first := New(Profile{TokenLabel: LabelMyNumberCard})
	second := New(Profile{TokenLabel: LabelJuki})
	s.Insert(first)
	s.Insert(second)
	card, err := s.NextCard(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Transmit(t.Context(), selectAP); err != nil {
		t.Fatal(err)
	}
	if first.Commands() != 0 || second.Commands() != 1 {
		t.Errorf("commands: first %d, second %d; want the second card on the slot", first.Commands(), second.Commands())
	}
}
