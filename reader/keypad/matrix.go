package keypad

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/tobira-ac/tobira/reader"
)

// Layout3x4 is the key layout of a common 3x4 matrix keypad, by row and
// column: "*" is KeyClear (cancel on an empty entry) and "#" KeyEnter.
var Layout3x4 = [4][3]Key{
	{1, 2, 3},
	{4, 5, 6},
	{7, 8, 9},
	{KeyClear, 0, KeyEnter},
}

// Matrix scanning defaults.
const (
	// DefaultScanInterval is the time between two scans of the matrix.
	DefaultScanInterval = 10 * time.Millisecond
	// DefaultDebounce is the number of consecutive scans a key must be
	// seen down (or up) before it counts as pressed (or released).
	DefaultDebounce = 3
)

// MatrixConfig configures a Matrix.
type MatrixConfig struct {
	Config
	// ScanInterval is the time between scans; 0 means DefaultScanInterval.
	ScanInterval time.Duration
	// Debounce is the number of scans a change must last; 0 means
	// DefaultDebounce.
	Debounce int
}

// Matrix is a 3x4 matrix keypad on GPIO. The four row pins are outputs,
// held high and pulled low one at a time; the three column pins are inputs
// with pull-ups, so a pressed key reads low on its column while its row is
// low. The matrix is scanned only while ReadPIN runs, on the injected
// clock. One key is recognised at a time; holding a key gives one press.
// ReadPIN calls must not overlap.
type Matrix struct {
	cfg  MatrixConfig
	rows [4]gpio.PinIO
	cols [3]gpio.PinIO
}

// NewMatrix configures rows (4 pins, top to bottom) as outputs driven high
// and cols (3 pins, left to right) as inputs with pull-ups.
func NewMatrix(rows, cols []gpio.PinIO, cfg MatrixConfig) (*Matrix, error) {
	if len(rows) != 4 || len(cols) != 3 {
		return nil, fmt.Errorf("new matrix keypad: %d rows and %d columns, want 4 and 3", len(rows), len(cols))
	}
	m := &Matrix{cfg: cfg}
	m.cfg.Config = cfg.Config.withDefaults()
	if m.cfg.ScanInterval <= 0 {
		m.cfg.ScanInterval = DefaultScanInterval
	}
	if m.cfg.Debounce <= 0 {
		m.cfg.Debounce = DefaultDebounce
	}
	for i, p := range rows {
		if p == nil {
			return nil, fmt.Errorf("new matrix keypad: row %d pin is nil", i)
		}
		if err := p.Out(gpio.High); err != nil {
			return nil, fmt.Errorf("new matrix keypad: row %d pin %s: drive high: %w", i, p, err)
		}
		m.rows[i] = p
	}
	for i, p := range cols {
		if p == nil {
			return nil, fmt.Errorf("new matrix keypad: column %d pin is nil", i)
		}
		if err := p.In(gpio.PullUp, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("new matrix keypad: column %d pin %s: input with pull-up: %w", i, p, err)
		}
		m.cols[i] = p
	}
	return m, nil
}

// errNoKey is scan's "no key down".
var errNoKey = errors.New("no key down")

// scan drives each row low in turn and returns the first key whose column
// reads low; errNoKey when none is down.
func (m *Matrix) scan() (Key, error) {
	for r, row := range m.rows {
		if err := row.Out(gpio.Low); err != nil {
			return KeyNone, fmt.Errorf("matrix keypad: row %d pin %s: drive low: %w", r, row, err)
		}
		found := -1
		for c, col := range m.cols {
			if col.Read() == gpio.Low {
				found = c
				break
			}
		}
		if err := row.Out(gpio.High); err != nil {
			return KeyNone, fmt.Errorf("matrix keypad: row %d pin %s: drive high: %w", r, row, err)
		}
		if found >= 0 {
			return Layout3x4[r][found], nil
		}
	}
	return KeyNone, errNoKey
}

// ReadPIN implements reader.PINSource. A key held down when the entry
// starts counts only once it has been released and pressed again.
func (m *Matrix) ReadPIN(ctx context.Context, maxLen int) (*reader.PIN, error) {
	e := newEntry(maxLen)
	clk := m.cfg.Clock
	lastKey := clk.Now()
	down := true // assume a key may be held: wait for a clean release first
	stable := 0  // consecutive scans agreeing with the opposite of down
	var candidate Key = KeyNone
	for {
		t := clk.NewTimer(m.cfg.ScanInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return e.abort(fmt.Errorf("keypad: %w", ctx.Err()))
		case <-t.C():
		}
		k, err := m.scan()
		if err != nil && !errors.Is(err, errNoKey) {
			return e.abort(fmt.Errorf("%w: %w", reader.ErrPINCancelled, err))
		}
		pressed := err == nil
		switch {
		case down && !pressed, !down && pressed && (stable == 0 || k == candidate):
			stable++
			candidate = k
		default:
			stable, candidate = 0, KeyNone
		}
		if stable >= m.cfg.Debounce {
			down, stable = !down, 0
			if down {
				lastKey = clk.Now()
				pin, err := e.press(candidate)
				if pin != nil || err != nil {
					return pin, err
				}
			}
		}
		if clk.Now().Sub(lastKey) >= m.cfg.Timeout {
			return e.abort(timeoutError(m.cfg.Timeout))
		}
	}
}
