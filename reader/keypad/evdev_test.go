package keypad_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tobira-ac/tobira/internal/clock/clocktest"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/reader/keypad"
)

var updateRecordings = flag.Bool("update-recordings", false, "rewrite the input event recordings in testdata/")

// Linux key codes used by the recordings.
const (
	kEsc     = 1
	kKP1     = 79
	kKP2     = 80
	kKP3     = 81
	kKP4     = 75
	kKP5     = 76
	kKP6     = 77
	kKP7     = 71
	kKP8     = 72
	kKP9     = 73
	kKPDot   = 83
	kKPEnter = 96
	kA       = 30
)

// event encodes one 64-bit input_event.
func event(sec int64, typ, code uint16, value int32) []byte {
	b := make([]byte, 24)
	binary.NativeEndian.PutUint64(b[0:], uint64(sec))
	binary.NativeEndian.PutUint64(b[8:], 500)
	binary.NativeEndian.PutUint16(b[16:], typ)
	binary.NativeEndian.PutUint16(b[18:], code)
	binary.NativeEndian.PutUint32(b[20:], uint32(value))
	return b
}

// taps records press, SYN, release, SYN for each key, as a keyboard sends.
func taps(codes ...uint16) []byte {
	var out []byte
	for i, c := range codes {
		out = append(out, event(int64(i), 4, 4, 0x70059)...) // EV_MSC scan code
		out = append(out, event(int64(i), 1, c, 1)...)
		out = append(out, event(int64(i), 0, 0, 0)...)
		if i == 0 {
			out = append(out, event(int64(i), 1, c, 2)...) // auto-repeat: ignored
		}
		out = append(out, event(int64(i), 1, c, 0)...)
		out = append(out, event(int64(i), 0, 0, 0)...)
	}
	return out
}

var recordings = map[string][]byte{
	"kp-1234.events":        taps(kKP1, kKP2, kKP3, kKP4),
	"kp-clear-5678.events":  taps(kKP9, kKP9, kKPDot, kKP5, kKP6, kKP7, kKP8),
	"kp-12-enter.events":    taps(kKP1, kA, kKP2, kKPEnter),
	"kp-1-esc.events":       taps(kKP1, kEsc),
	"kp-clear-empty.events": taps(kKPDot),
}

func TestGenerateRecordings(t *testing.T) {
	if !*updateRecordings {
		t.Skip("run with -update-recordings to rewrite testdata/")
	}
	for name, data := range recordings {
		if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitTimer waits until the code under test has armed a timer on clk, or
// has finished (done closed): it reports whether a timer is armed.
func waitTimer(clk *clocktest.Fake, done <-chan struct{}) bool {
	for clk.Pending() == 0 {
		select {
		case <-done:
			return false
		default:
			runtime.Gosched()
		}
	}
	return true
}

// readPIN runs kp.ReadPIN in a goroutine; done is closed when it returns.
func readPIN(t *testing.T, kp reader.PINSource) (got chan result, done chan struct{}) {
	got, done = make(chan result, 1), make(chan struct{})
	go func() {
		defer close(done)
		pin, err := kp.ReadPIN(t.Context(), 4)
		got <- result{pin, err}
	}()
	return got, done
}

type result struct {
	pin *reader.PIN
	err error
}

func TestEvdevRecordings(t *testing.T) {
	if keypad.EventSize != 24 {
		t.Skipf("recordings are 64-bit input events; this machine's are %d bytes", keypad.EventSize)
	}
	tests := []struct {
		file    string
		wantLen int
		wantErr error
	}{
		{"kp-1234.events", 4, nil},
		{"kp-clear-5678.events", 4, nil},
		{"kp-12-enter.events", 2, nil},
		{"kp-1-esc.events", 0, reader.ErrPINCancelled},
		{"kp-clear-empty.events", 0, reader.ErrPINCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, recordings[tt.file]) {
				t.Fatalf("testdata/%s is stale: run go test -update-recordings", tt.file)
			}
			clk := clocktest.New(time.Unix(0, 0))
			pr, pw := io.Pipe()
			kp := keypad.NewEvdev(pr, "pipe", keypad.Config{Clock: clk, Timeout: time.Minute}, nil)
			defer kp.Close()
			// A key typed before the prompt is dropped.
			if _, err := pw.Write(taps(kKP7)); err != nil {
				t.Fatal(err)
			}
			got, done := readPIN(t, kp)
			waitTimer(clk, done)
			go pw.Write(data) // the rest stays unread in the pipe when the entry ends early
			r := <-got
			if !errors.Is(r.err, tt.wantErr) || (tt.wantErr == nil) != (r.err == nil) {
				t.Fatalf("ReadPIN() error = %v, want %v", r.err, tt.wantErr)
			}
			if tt.wantErr == nil && r.pin.Len() != tt.wantLen {
				t.Fatalf("ReadPIN() = %v, want %d digits", r.pin, tt.wantLen)
			}
			pr.Close()
		})
	}
}

// TestEvdevDigits checks the digits themselves, through a PIN verified by
// a fake that compares (the PIN type does not reveal them otherwise).
func TestEvdevDigits(t *testing.T) {
	if keypad.EventSize != 24 {
		t.Skip("64-bit input events only")
	}
	for file, want := range map[string]string{"kp-1234.events": "1234", "kp-clear-5678.events": "5678"} {
		clk := clocktest.New(time.Unix(0, 0))
		pr, pw := io.Pipe()
		kp := keypad.NewEvdev(pr, "pipe", keypad.Config{Clock: clk}, nil)
		got, done := readPIN(t, kp)
		waitTimer(clk, done)
		go pw.Write(recordings[file])
		r := <-got
		if r.err != nil {
			t.Fatalf("%s: %v", file, r.err)
		}
		if digits := reveal(r.pin); digits != want {
			t.Errorf("%s: PIN %s, want %s", file, digits, want)
		}
		kp.Close()
	}
}

// reveal recovers the digits by guessing them one prefix at a time: the
// only way out of a PIN is to send it, which this models with Add on a
// copy. It tries every 4-digit string and compares through Equal.
func reveal(p *reader.PIN) string {
	for i := range 10000 {
		s := []byte{byte('0' + i/1000), byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)}
		if p.Equal(s) {
			return string(s)
		}
	}
	return "?"
}

func TestEvdevTimeoutAndCancel(t *testing.T) {
	clk := clocktest.New(time.Unix(0, 0))
	pr, pw := io.Pipe()
	kp := keypad.NewEvdev(pr, "pipe", keypad.Config{Clock: clk, Timeout: 5 * time.Second}, nil)
	got, done := readPIN(t, kp)
	waitTimer(clk, done)
	clk.Advance(5 * time.Second)
	if r := <-got; !errors.Is(r.err, reader.ErrPINTimeout) {
		t.Fatalf("ReadPIN() with no key = %v, want ErrPINTimeout", r.err)
	}
	// The device going away cancels the entry.
	got, done = readPIN(t, kp)
	waitTimer(clk, done)
	pw.CloseWithError(errors.New("device unplugged"))
	if r := <-got; !errors.Is(r.err, reader.ErrPINCancelled) {
		t.Fatalf("ReadPIN() on an unplugged keypad = %v, want ErrPINCancelled", r.err)
	}
	if err := kp.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if _, err := kp.ReadPIN(t.Context(), 4); !errors.Is(err, reader.ErrPINCancelled) {
		t.Errorf("ReadPIN() after Close = %v, want ErrPINCancelled", err)
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		ev   keypad.Event
		want keypad.Key
	}{
		{keypad.Event{Type: 1, Code: kKP5, Value: 1}, 5},
		{keypad.Event{Type: 1, Code: 82, Value: 1}, 0},
		{keypad.Event{Type: 1, Code: 11, Value: 1}, 0},
		{keypad.Event{Type: 1, Code: 2, Value: 1}, 1},
		{keypad.Event{Type: 1, Code: 10, Value: 1}, 9},
		{keypad.Event{Type: 1, Code: kKP9, Value: 1}, 9},
		{keypad.Event{Type: 1, Code: kKP1, Value: 1}, 1},
		{keypad.Event{Type: 1, Code: kKPEnter, Value: 1}, keypad.KeyEnter},
		{keypad.Event{Type: 1, Code: 28, Value: 1}, keypad.KeyEnter},
		{keypad.Event{Type: 1, Code: kKPDot, Value: 1}, keypad.KeyClear},
		{keypad.Event{Type: 1, Code: 14, Value: 1}, keypad.KeyClear},
		{keypad.Event{Type: 1, Code: kEsc, Value: 1}, keypad.KeyCancel},
		{keypad.Event{Type: 1, Code: 74, Value: 1}, keypad.KeyCancel},
		{keypad.Event{Type: 1, Code: kKP5, Value: 0}, keypad.KeyNone},
		{keypad.Event{Type: 1, Code: kKP5, Value: 2}, keypad.KeyNone},
		{keypad.Event{Type: 4, Code: 4, Value: 1}, keypad.KeyNone},
		{keypad.Event{Type: 1, Code: kA, Value: 1}, keypad.KeyNone},
	}
	for _, tt := range tests {
		if got := keypad.KeyOf(tt.ev); got != tt.want {
			t.Errorf("KeyOf(%+v) = %v (%d), want %v (%d)", tt.ev, got, got, tt.want, tt.want)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	f.Add(event(1, 1, kKP1, 1))
	f.Add([]byte{1, 2, 3})
	f.Add(taps(kKP1, kEsc))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := keypad.ParseEvent(b)
		if len(b) < keypad.EventSize {
			if !errors.Is(err, keypad.ErrShortEvent) {
				t.Fatalf("ParseEvent(%d bytes) error = %v, want ErrShortEvent", len(b), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseEvent(%d bytes) = %v", len(b), err)
		}
		if k := keypad.KeyOf(ev); k < 0 || k > keypad.KeyNone {
			t.Fatalf("KeyOf(%+v) = %d out of range", ev, k)
		}
	})
}
