package cardsim

import (
	"context"
	"fmt"
	"sync"

	"github.com/tobira-ac/tobira/reader"
)

// Slot is an in-process reader slot: Insert puts a card on it; NextCard
// returns it (as a reader.Card whose Done returns at once and removes the
// card). Used by the demo and controller tests. It is safe for concurrent
// use.
type Slot struct {
	mu      sync.Mutex
	card    *Card
	arrived chan struct{} // closed when a card is inserted; replaced after
}

// NewSlot returns an empty slot.
func NewSlot() *Slot { return &Slot{arrived: make(chan struct{})} }

// Insert puts c on the slot, replacing a card that was inserted but not yet
// taken by NextCard. The card is reset (powered up) when NextCard takes it.
func (s *Slot) Insert(c *Card) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.card = c
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// NextCard waits until a card is on the slot or ctx ends, and returns a
// session with it. Each inserted card is returned once.
func (s *Slot) NextCard(ctx context.Context) (reader.Card, error) {
	for {
		s.mu.Lock()
		c, arrived := s.card, s.arrived
		s.card = nil
		s.mu.Unlock()
		if c != nil {
			c.Reset()
			return &session{card: c}, nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for card on in-process slot: %w", ctx.Err())
		}
	}
}

// session is one card session on a Slot.
type session struct {
	mu   sync.Mutex
	card *Card // nil after Done
}

// Transmit sends cmd to the card, or fails with reader.ErrCardRemoved after
// Done.
func (s *session) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	s.mu.Lock()
	c := s.card
	s.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("cardsim slot transmit after Done: %w", reader.ErrCardRemoved)
	}
	return c.Transmit(ctx, cmd)
}

// Done ends the session at once: the card is off the slot.
func (s *session) Done(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.card = nil
	return nil
}
