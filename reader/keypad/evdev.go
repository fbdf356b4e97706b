package keypad

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"github.com/tobira-ac/tobira/reader"
)

// EventSize is the size of one Linux struct input_event on this machine:
// a struct timeval (two C longs), then type and code (uint16 each) and
// value (int32). 24 bytes on 64-bit Linux, 16 on 32-bit.
const EventSize = 2*strconv.IntSize/8 + 8

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey = 0x01 // EV_KEY

	keyEsc        = 1
	key1          = 2 // KEY_1..KEY_9 are 2..10, KEY_0 is 11
	key0          = 11
	keyBackspace  = 14
	keyEnter      = 28
	keyKPAsterisk = 55
	keyKP7        = 71
	keyKP8        = 72
	keyKP9        = 73
	keyKPMinus    = 74
	keyKP4        = 75
	keyKP5        = 76
	keyKP6        = 77
	keyKP1        = 79
	keyKP2        = 80
	keyKP3        = 81
	keyKP0        = 82
	keyKPDot      = 83
	keyKPEnter    = 96
	keyKPSlash    = 98
	keyDelete     = 111
)

// Event is one decoded input_event (the timestamp is dropped).
type Event struct {
	// Type is the event type (EV_KEY is 1).
	Type uint16
	// Code is the key code for EV_KEY.
	Code uint16
	// Value is 1 for a press, 0 for a release, 2 for auto-repeat.
	Value int32
}

// ErrShortEvent is returned by ParseEvent for fewer than EventSize bytes.
var ErrShortEvent = errors.New("short input event")

// ParseEvent decodes one native-endian input_event of EventSize bytes.
func ParseEvent(b []byte) (Event, error) {
	if len(b) < EventSize {
		return Event{}, fmt.Errorf("%w: %d bytes, want %d", ErrShortEvent, len(b), EventSize)
	}
	b = b[EventSize-8 : EventSize]
	return Event{
		Type:  binary.NativeEndian.Uint16(b[0:2]),
		Code:  binary.NativeEndian.Uint16(b[2:4]),
		Value: int32(binary.NativeEndian.Uint32(b[4:8])),
	}, nil
}

// KeyOf maps a key-press event to a Key: the digit keys of the keypad and
// of the main row, Enter and keypad Enter (KeyEnter), Backspace, Delete,
// keypad "." and "*" (KeyClear), Esc, keypad "-" and "/" (KeyCancel).
// Releases, repeats and other events give KeyNone.
func KeyOf(ev Event) Key {
	if ev.Type != evKey || ev.Value != 1 {
		return KeyNone
	}
	switch c := ev.Code; {
	case c >= key1 && c < key0:
		return Key(c - key1 + 1)
	case c == key0, c == keyKP0:
		return 0
	case c == keyKP1, c == keyKP2, c == keyKP3:
		return Key(c - keyKP1 + 1)
	case c == keyKP4, c == keyKP5, c == keyKP6:
		return Key(c - keyKP4 + 4)
	case c == keyKP7, c == keyKP8, c == keyKP9:
		return Key(c - keyKP7 + 7)
	case c == keyEnter, c == keyKPEnter:
		return KeyEnter
	case c == keyBackspace, c == keyDelete, c == keyKPDot, c == keyKPAsterisk:
		return KeyClear
	case c == keyEsc, c == keyKPMinus, c == keyKPSlash:
		return KeyCancel
	}
	return KeyNone
}

// Evdev is a USB (or any Linux input) keypad read from
// /dev/input/event*. One goroutine reads the device until Close; keys
// pressed while no ReadPIN is waiting are dropped when the next ReadPIN
// starts, so a key typed before the prompt never becomes part of a PIN.
// ReadPIN calls must not overlap.
type Evdev struct {
	cfg  Config
	r    io.ReadCloser
	name string
	log  *slog.Logger

	keys chan Key
	done chan struct{} // closed when the reading goroutine has ended

	mu  sync.Mutex
	err error // why reading ended
}

// eviocgrab is the EVIOCGRAB ioctl request: _IOW('E', 0x90, int).
const eviocgrab = 1<<30 | 4<<16 | 'E'<<8 | 0x90

// OpenEvdev opens the input device at path (e.g.
// /dev/input/by-id/usb-...-event-kbd) and grabs it, so that the digits
// typed do not also reach a console or another program. log may be nil.
func OpenEvdev(path string, cfg Config, log *slog.Logger) (*Evdev, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open keypad: %w", err)
	}
	raw, err := f.SyscallConn()
	if err == nil {
		var ioctlErr error
		err = raw.Control(func(fd uintptr) {
			one := 1
			if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, eviocgrab, uintptr(unsafe.Pointer(&one))); e != 0 {
				ioctlErr = e
			}
		})
		if err == nil {
			err = ioctlErr
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("grab keypad %s: %w", path, err)
	}
	return NewEvdev(f, path, cfg, log), nil
}

// NewEvdev reads input events from r (a device, or a pipe in tests); name
// names it in errors. Close closes r.
func NewEvdev(r io.ReadCloser, name string, cfg Config, log *slog.Logger) *Evdev {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Evdev{cfg: cfg.withDefaults(), r: r, name: name, log: log.With("keypad", name),
		keys: make(chan Key, 32), done: make(chan struct{})}
	go e.run()
	return e
}

// run reads events until the device fails or is closed.
func (e *Evdev) run() {
	defer close(e.done)
	defer close(e.keys)
	buf := make([]byte, EventSize)
	for {
		if _, err := io.ReadFull(e.r, buf); err != nil {
			e.mu.Lock()
			e.err = fmt.Errorf("read keypad %s: %w", e.name, err)
			e.mu.Unlock()
			e.log.Warn("keypad stopped", "err", err)
			return
		}
		ev, _ := ParseEvent(buf)
		k := KeyOf(ev)
		clear(buf) // a key code is a digit
		if k == KeyNone {
			continue
		}
		select {
		case e.keys <- k:
		default: // nobody reading and the buffer is full: drop
		}
	}
}

// ReadPIN implements reader.PINSource.
func (e *Evdev) ReadPIN(ctx context.Context, maxLen int) (*reader.PIN, error) {
drain:
	for {
		select {
		case _, ok := <-e.keys:
			if !ok {
				break drain
			}
		default:
			break drain
		}
	}
	return collect(ctx, e.cfg, maxLen, e.keys, e.readErr)
}

func (e *Evdev) readErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		return fmt.Errorf("keypad %s closed", e.name)
	}
	return e.err
}

// Close closes the device and waits for the reading goroutine to end.
func (e *Evdev) Close() error {
	err := e.r.Close()
	<-e.done
	if err != nil {
		return fmt.Errorf("close keypad %s: %w", e.name, err)
	}
	return nil
}
