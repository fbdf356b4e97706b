// Package keypad reads a card holder's PIN from a keypad next to the
// reader: a USB numeric keypad through Linux input events (Evdev) or a 3x4
// matrix keypad on GPIO through periph.io (Matrix). Both implement
// reader.PINSource with the same entry rules (see Key): digits fill the
// PIN, the entry ends at the PIN length or on Enter, Clear erases the
// digits typed (or cancels an empty entry), Cancel cancels, and the entry
// times out when no key is pressed for the configured time.
//
// The digits live only in a reader.PIN buffer that the caller zeroes; the
// package never logs them.
//
// Package reader must not import this package (the dependency rules keep
// periph.io out of reader); the controller wires a keypad into a
// reader.IdentifierConfig.
package keypad

import (
	"context"
	"fmt"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/reader"
)

// Key is one key press, in the keypad-independent form the entry rules
// use.
type Key int

// The keys. Key values 0 to 9 are the digits.
const (
	// KeyEnter confirms the entry.
	KeyEnter Key = 10 + iota
	// KeyClear erases every digit typed so far; on an empty entry it
	// cancels (a 3x4 keypad has no separate cancel key).
	KeyClear
	// KeyCancel cancels the entry.
	KeyCancel
	// KeyNone is a key with no meaning for PIN entry (ignored).
	KeyNone
)

// String names the key without telling digits apart (key presses may be
// logged; digits must not be).
func (k Key) String() string {
	switch {
	case k >= 0 && k <= 9:
		return "digit"
	case k == KeyEnter:
		return "enter"
	case k == KeyClear:
		return "clear"
	case k == KeyCancel:
		return "cancel"
	}
	return "none"
}

// DefaultTimeout is how long an entry waits for the next key.
const DefaultTimeout = 20 * time.Second

// Config holds the options both keypads share.
type Config struct {
	// Timeout is how long the entry waits for the first key and between
	// keys; 0 means DefaultTimeout.
	Timeout time.Duration
	// Clock times the entry; nil means the system clock.
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Clock == nil {
		c.Clock = clock.System{}
	}
	return c
}

// entry applies the entry rules to key presses.
type entry struct {
	pin *reader.PIN
}

func newEntry(maxLen int) *entry {
	if maxLen <= 0 {
		maxLen = reader.PINLength
	}
	return &entry{pin: reader.NewPIN(maxLen)}
}

// press applies one key. It returns the PIN when the entry is complete, or
// an error (matching reader.ErrPINCancelled) when it was cancelled; the
// PIN is zeroed on cancel.
func (e *entry) press(k Key) (*reader.PIN, error) {
	switch {
	case k >= 0 && k <= 9:
		if err := e.pin.Add(byte(k)); err != nil {
			return nil, nil // cannot happen: the entry ends at maxLen
		}
		if e.pin.Len() == e.pin.Cap() {
			return e.pin, nil
		}
	case k == KeyEnter:
		return e.pin, nil
	case k == KeyClear && e.pin.Len() > 0:
		e.pin.Zero()
	case k == KeyClear, k == KeyCancel:
		e.pin.Zero()
		return nil, fmt.Errorf("keypad: %w by the %v key", reader.ErrPINCancelled, k)
	}
	return nil, nil
}

// abort zeroes the entry and returns err.
func (e *entry) abort(err error) (*reader.PIN, error) {
	e.pin.Zero()
	return nil, err
}

func timeoutError(d time.Duration) error {
	return fmt.Errorf("keypad: %w: no key pressed for %v", reader.ErrPINTimeout, d)
}

// collect runs an entry on keys read from a channel, restarting the
// timeout at each key. A closed channel cancels the entry with closedErr.
func collect(ctx context.Context, cfg Config, maxLen int, keys <-chan Key, closedErr func() error) (*reader.PIN, error) {
	e := newEntry(maxLen)
	t := cfg.Clock.NewTimer(cfg.Timeout)
	defer func() { t.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return e.abort(fmt.Errorf("keypad: %w", ctx.Err()))
		case <-t.C():
			return e.abort(timeoutError(cfg.Timeout))
		case k, ok := <-keys:
			if !ok {
				return e.abort(fmt.Errorf("keypad: %w: %w", reader.ErrPINCancelled, closedErr()))
			}
			if k == KeyNone {
				continue
			}
			t.Stop()
			t = cfg.Clock.NewTimer(cfg.Timeout)
			pin, err := e.press(k)
			if pin != nil || err != nil {
				return pin, err
			}
		}
	}
}
