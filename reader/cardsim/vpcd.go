package cardsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tobira-ac/tobira/internal/clock"
)

// DefaultVPCDAddr is where vpcd listens for the virtual card of reader
// "Virtual PCD 00 00"; slot 1 ("Virtual PCD 00 01") is port 35964.
const DefaultVPCDAddr = "127.0.0.1:35963"

// DefaultVPCDRetry is how long the bridge waits between attempts to reach
// vpcd, which only listens while pcscd has loaded it.
const DefaultVPCDRetry = 100 * time.Millisecond

// vpcd control messages (one byte, vpcd to card).
const (
	vpcdPowerOff = 0x00
	vpcdPowerOn  = 0x01
	vpcdReset    = 0x02
	vpcdGetATR   = 0x04
)

// VPCD connects simulated cards to vsmartcard's vpcd driver, so that pcscd
// sees them in a reader. The zero value is ready to use.
//
// Protocol: every message either way is a 2-byte big-endian length, then
// that many bytes. From vpcd, a 1-byte message is a control message (00
// power off, 01 power on, 02 reset, 04 get ATR, answered with the ATR);
// anything longer is a command APDU, answered with the response APDU.
// Closing the connection is removing the card.
type VPCD struct {
	// Clock times the retries; nil means the system clock.
	Clock clock.Clock
	// Log receives connection events; nil discards them.
	Log *slog.Logger
	// Retry is the wait between connection attempts; 0 means
	// DefaultVPCDRetry.
	Retry time.Duration
}

// ServeVPCD connects to vpcd at addr (e.g. DefaultVPCDAddr) as the virtual
// card and serves c until ctx ends (then closes the socket = card removed)
// or the connection fails. See VPCD.Serve.
func ServeVPCD(ctx context.Context, addr string, c *Card) error {
	return (&VPCD{}).Serve(ctx, addr, c)
}

// Serve connects to vpcd at addr, retrying until it listens or ctx ends,
// then answers vpcd's messages from c. It returns nil when ctx ends or when
// the card leaves (FaultRemove), having closed the connection in both
// cases, and an error when ctx ends before vpcd could be reached or when
// the connection fails.
func (v *VPCD) Serve(ctx context.Context, addr string, c *Card) error {
	return v.serve(ctx, addr, c, nil)
}

func (v *VPCD) logger() *slog.Logger {
	if v.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Log
}

// serve is Serve calling connected, if not nil, once the connection is up.
func (v *VPCD) serve(ctx context.Context, addr string, c *Card, connected func()) error {
	log := v.logger().With("vpcd", addr)
	conn, err := v.dial(ctx, addr, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	log.Info("card inserted into vpcd")
	if connected != nil {
		connected()
	}
	c.Reset()
	for {
		quickAck(conn)
		msg, err := readMessage(conn)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("card removed from vpcd")
				return nil
			}
			return fmt.Errorf("vpcd %s: read message: %w", addr, err)
		}
		var answer []byte
		switch {
		case len(msg) == 0:
			log.Warn("vpcd sent an empty message")
			continue
		case len(msg) == 1:
			switch msg[0] {
			case vpcdPowerOff, vpcdPowerOn, vpcdReset:
				c.Reset()
				continue
			case vpcdGetATR:
				answer = c.ATR()
			default:
				log.Warn("vpcd sent an unknown control message", "control", msg[0])
				continue
			}
		default:
			var muted <-chan struct{}
			for answer, muted = c.process1(msg); muted != nil; answer, muted = c.process1(msg) {
				log.Info("card mute (fault)")
				select {
				case <-muted:
				case <-ctx.Done():
					log.Info("card removed from vpcd")
					return nil
				}
			}
			if answer == nil {
				log.Info("card left vpcd (fault)")
				return nil
			}
		}
		if err := writeMessage(conn, answer); err != nil {
			if ctx.Err() != nil {
				log.Info("card removed from vpcd")
				return nil
			}
			return fmt.Errorf("vpcd %s: write answer: %w", addr, err)
		}
	}
}

// dial connects to addr, retrying every v.Retry until ctx ends.
func (v *VPCD) dial(ctx context.Context, addr string, log *slog.Logger) (net.Conn, error) {
	clk := v.Clock
	if clk == nil {
		clk = clock.System{}
	}
	retry := v.Retry
	if retry <= 0 {
		retry = DefaultVPCDRetry
	}
	var d net.Dialer
	for attempt := 1; ; attempt++ {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to vpcd at %s (is pcscd with vpcd running?): %w (last attempt: %w)", addr, ctx.Err(), err)
		}
		if attempt == 1 {
			log.Info("vpcd not reachable yet, retrying", "err", err)
		}
		t := clk.NewTimer(retry)
		select {
		case <-t.C():
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect to vpcd at %s (is pcscd with vpcd running?): %w (last attempt: %w)", addr, ctx.Err(), err)
		}
	}
}

// readMessage reads one length-prefixed vpcd message.
func readMessage(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("message of %d bytes: %w", len(msg), err)
	}
	return msg, nil
}

// writeMessage writes one length-prefixed vpcd message.
func writeMessage(w io.Writer, msg []byte) error {
	if len(msg) > 0xFFFF {
		return fmt.Errorf("message of %d bytes exceeds the 2-byte length", len(msg))
	}
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	_, err := w.Write(buf)
	return err
}

// Errors of Bridge.
var (
	// ErrCardInserted means Insert was called while a card is on the slot.
	ErrCardInserted = errors.New("a card is already inserted")
	// ErrNoCard means Remove was called with no card on the slot.
	ErrNoCard = errors.New("no card inserted")
)

// Bridge holds at most one simulated card on one vpcd slot: Insert
// connects a card, Remove disconnects it. It is safe for concurrent use.
type Bridge struct {
	vpcd VPCD
	addr string

	mu     sync.Mutex
	cancel context.CancelFunc // nil when no card is inserted
	done   chan error         // result of the serving goroutine
}

// NewBridge returns a Bridge for the vpcd slot at addr, using v's options.
func NewBridge(addr string, v VPCD) *Bridge { return &Bridge{vpcd: v, addr: addr} }

// Insert connects c to vpcd and returns once vpcd has accepted it, or with
// an error when ctx ends first. The card then stays inserted, independent of
// ctx, until Remove or Close, or until the card leaves by itself
// (FaultRemove) or vpcd drops it.
func (b *Bridge) Insert(ctx context.Context, c *Card) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.insertedLocked() {
		return fmt.Errorf("insert card into vpcd %s: %w", b.addr, ErrCardInserted)
	}
	serveCtx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- b.vpcd.serve(serveCtx, b.addr, c, func() { close(connected) }) }()
	select {
	case <-connected:
		b.cancel, b.done = cancel, done
		return nil
	case <-ctx.Done():
		cancel()
		<-done
		return fmt.Errorf("insert card into vpcd %s: %w", b.addr, ctx.Err())
	}
}

// insertedLocked reports whether a card is being served; it forgets a card
// whose serving ended by itself. The caller holds b.mu.
func (b *Bridge) insertedLocked() bool {
	if b.cancel == nil {
		return false
	}
	select {
	case <-b.done:
		b.cancel()
		b.cancel, b.done = nil, nil
		return false
	default:
		return true
	}
}

// Inserted reports whether a card is on the slot.
func (b *Bridge) Inserted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.insertedLocked()
}

// Remove disconnects the inserted card and waits until the connection is
// closed. It returns ErrNoCard when no card is inserted, or the serving
// error if the connection had failed.
func (b *Bridge) Remove() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel == nil {
		return fmt.Errorf("remove card from vpcd %s: %w", b.addr, ErrNoCard)
	}
	b.cancel()
	err := <-b.done
	b.cancel, b.done = nil, nil
	if err != nil {
		return fmt.Errorf("remove card from vpcd %s: %w", b.addr, err)
	}
	return nil
}

// Close removes the card if one is inserted.
func (b *Bridge) Close() error {
	err := b.Remove()
	if errors.Is(err, ErrNoCard) {
		return nil
	}
	return err
}
