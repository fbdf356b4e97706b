package keypad_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/keypad"
)

// board is a fake 3x4 keypad wired to gpiotest pins: a column reads low
// while a pressed key joins it to a row that is driven low.
type board struct {
	mu      sync.Mutex
	pressed map[[2]int]bool
	rows    []*gpiotest.Pin
}

// colPin is a column input of the board.
type colPin struct {
	*gpiotest.Pin
	b   *board
	col int
}

func (c *colPin) Read() gpio.Level {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	for r, row := range c.b.rows {
		if c.b.pressed[[2]int{r, c.col}] && row.Read() == gpio.Low {
			return gpio.Low
		}
	}
	return gpio.High // pull-up
}

func newBoard() (*board, []gpio.PinIO, []gpio.PinIO) {
	b := &board{pressed: map[[2]int]bool{}}
	var rows, cols []gpio.PinIO
	for r := range 4 {
		p := &gpiotest.Pin{N: fmt.Sprintf("ROW%d", r), Num: r}
		b.rows = append(b.rows, p)
		rows = append(rows, p)
	}
	for c := range 3 {
		cols = append(cols, &colPin{Pin: &gpiotest.Pin{N: fmt.Sprintf("COL%d", c), Num: 10 + c}, b: b, col: c})
	}
	return b, rows, cols
}

// position returns the row and column of a key label.
func position(label byte) [2]int {
	const layout = "123456789*0#"
	for i := range layout {
		if layout[i] == label {
			return [2]int{i / 3, i % 3}
		}
	}
	panic("no key " + string(label))
}

func (b *board) set(label byte, down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pressed[position(label)] = down
}

// scans lets the keypad run up to n scans, fewer if ReadPIN returns.
func scans(clk *clocktest.Fake, done <-chan struct{}, n int) {
	for range n {
		if !waitTimer(clk, done) {
			return
		}
		clk.Advance(keypad.DefaultScanInterval)
	}
}

func TestMatrix(t *testing.T) {
	tests := []struct {
		name    string
		keys    string // typed in order; each held for 4 scans, released for 4
		bounce  bool   // each press first bounces for one scan
		wantPIN string
		wantErr error
	}{
		{"four digits", "1234", false, "1234", nil},
		{"bouncing contacts", "9087", true, "9087", nil},
		{"clear then digits", "55*0246", false, "0246", nil},
		{"enter early", "12#", false, "12", nil},
		{"clear on empty cancels", "*", false, "", reader.ErrPINCancelled},
		{"cancel after clear", "1**", false, "", reader.ErrPINCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, rows, cols := newBoard()
			clk := clocktest.New(time.Unix(0, 0))
			m, err := keypad.NewMatrix(rows, cols, keypad.MatrixConfig{Config: keypad.Config{Clock: clk}})
			if err != nil {
				t.Fatal(err)
			}
			got, done := readPIN(t, m)
			scans(clk, done, 4) // idle: the matrix is seen released
			for i := range len(tt.keys) {
				k := tt.keys[i]
				if tt.bounce {
					b.set(k, true)
					scans(clk, done, 1)
					b.set(k, false)
					scans(clk, done, 1)
				}
				b.set(k, true)
				scans(clk, done, 4)
				b.set(k, false)
				if i < len(tt.keys)-1 {
					scans(clk, done, 4)
				}
			}
			r := <-got
			if !errors.Is(r.err, tt.wantErr) || (tt.wantErr == nil) != (r.err == nil) {
				t.Fatalf("ReadPIN() error = %v, want %v", r.err, tt.wantErr)
			}
			if tt.wantErr == nil {
				if r.pin.Len() != len(tt.wantPIN) || !r.pin.Equal([]byte(tt.wantPIN)) {
					t.Fatalf("ReadPIN() = %v, want the %d digits typed", r.pin, len(tt.wantPIN))
				}
			}
			for i, row := range rows {
				if row.Read() != gpio.High {
					t.Errorf("row %d left low after the entry", i)
				}
			}
		})
	}
}

func TestMatrixHeldKeyAndTimeout(t *testing.T) {
	b, rows, cols := newBoard()
	clk := clocktest.New(time.Unix(0, 0))
	m, err := keypad.NewMatrix(rows, cols, keypad.MatrixConfig{Config: keypad.Config{Clock: clk, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	// A key held from before the prompt does not count, however long.
	b.set('5', true)
	got, done := readPIN(t, m)
	scans(clk, done, 20)
	b.set('5', false)
	scans(clk, done, 4)
	b.set('#', true) // enter with no digit: an empty PIN
	scans(clk, done, 4)
	r := <-got
	if r.err != nil || r.pin.Len() != 0 {
		t.Fatalf("ReadPIN() = %v, %v; want an empty PIN (the held 5 ignored)", r.pin, r.err)
	}
	b.set('#', false)

	got, done = readPIN(t, m)
	scans(clk, done, int(time.Second/keypad.DefaultScanInterval))
	if r := <-got; !errors.Is(r.err, reader.ErrPINTimeout) {
		t.Fatalf("ReadPIN() with no key = %v, want ErrPINTimeout", r.err)
	}
}

func TestNewMatrixChecksPins(t *testing.T) {
	_, rows, cols := newBoard()
	if _, err := keypad.NewMatrix(rows[:3], cols, keypad.MatrixConfig{}); err == nil {
		t.Error("NewMatrix with 3 rows succeeded")
	}
	if _, err := keypad.NewMatrix(rows, append(cols[:2:2], nil), keypad.MatrixConfig{}); err == nil {
		t.Error("NewMatrix with a nil column succeeded")
	}
	if _, err := keypad.NewMatrix(rows, cols, keypad.MatrixConfig{}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		if c.Pull() != gpio.PullUp {
			t.Errorf("column %d pull = %v, want PullUp", i, c.Pull())
		}
	}
}
