// Package pcsc is the PC/SC transport of package reader: it talks to pcscd
// through github.com/ebfe/scard and yields reader.Card sessions. It is the
// only package of tobira that imports ebfe/scard (as periph.io keeps its
// drivers in host and its interfaces in conn): package reader stays pure Go
// and is tested with in-process cards, this package with pcscd and vpcd.
package pcsc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ebfe/scard"

	"github.com/tobira-ac/tobira/reader"
)

// statusWaitBackstop bounds one SCardGetStatusChange call. Waits are
// cancelled with SCardCancel when their context ends; the bound only covers
// the window in which a cancel can arrive before the wait has begun.
const statusWaitBackstop = time.Second

// Conn is a connection to the PC/SC service (pcscd) through one
// scard.Context, used to list readers. Each Source made from it opens a
// context of its own for waiting and card I/O: pcsc-lite serialises the
// calls on one context, so a wait for a card on one door's reader must not
// share a context with another door's card exchange. Close releases all of
// them.
type Conn struct {
	log  *slog.Logger
	sctx *scard.Context

	mu      sync.Mutex
	sources []*Source
	closed  bool
}

// Open connects to pcscd. log may be nil for slog.Default().
func Open(log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	sctx, err := scard.EstablishContext()
	if err != nil {
		return nil, fmt.Errorf("open PC/SC (is pcscd running?): %w", err)
	}
	return &Conn{log: log, sctx: sctx}, nil
}

// isServiceLost reports whether a PC/SC error means the context is no
// longer usable: pcscd stopped or restarted.
func isServiceLost(err error) bool {
	for _, e := range []scard.Error{scard.ErrNoService, scard.ErrServiceStopped, scard.ErrInvalidHandle} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Readers lists the readers pcscd knows; none is an empty list, not an
// error. After a pcscd restart the connection is re-established.
func (c *Conn) Readers() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("list PC/SC readers: connection closed")
	}
	names, err := c.sctx.ListReaders()
	if isServiceLost(err) {
		c.log.Info("PC/SC service lost; reconnecting", "err", err)
		if sctx, rerr := scard.EstablishContext(); rerr == nil {
			_ = c.sctx.Release()
			c.sctx = sctx
			names, err = c.sctx.ListReaders()
		}
	}
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list PC/SC readers: %w", err)
	}
	return names, nil
}

// Close releases the PC/SC contexts of p and of all its sources. Blocking
// NextCard and Done calls are cancelled; their callers should have ended
// them through their contexts first.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, s := range c.sources {
		if err := s.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.sctx.Release(); err != nil && !isServiceLost(err) {
		errs = append(errs, fmt.Errorf("release PC/SC context: %w", err))
	}
	return errors.Join(errs...)
}

// Source returns the card source for the reader named readerName. The name
// is checked when NextCard is called.
func (c *Conn) Source(readerName string) *Source {
	s := &Source{conn: c, reader: readerName, log: c.log.With("reader", readerName)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sources = append(c.sources, s)
	return s
}

// checkReader fails with reader.ErrReaderNotFound, listing the available
// readers, when name is not one of them.
func (c *Conn) checkReader(name string) error {
	names, err := c.Readers()
	if err != nil {
		return err
	}
	if slices.Contains(names, name) {
		return nil
	}
	avail := "none"
	if len(names) > 0 {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = fmt.Sprintf("%q", n)
		}
		avail = strings.Join(quoted, ", ")
	}
	return fmt.Errorf("%w: %q; available readers: %s", reader.ErrReaderNotFound, name, avail)
}

// Source yields the card sessions of one PC/SC reader. NextCard and the
// Done of the cards it returns must not be called concurrently (one door
// handles one card at a time).
type Source struct {
	conn   *Conn
	reader string
	log    *slog.Logger

	mu   sync.Mutex
	sctx *scard.Context // established on first use
	// waitAbsent is set when a session ended without seeing the card leave:
	// NextCard then waits for an empty reader, or for a new card event,
	// before taking a card again, so the same tap is not read twice.
	waitAbsent bool
	// lastEvents is the reader's card event counter when the last card was
	// connected (pcsc-lite and WinSCard keep it in the upper 16 bits of the
	// event state; it counts insertions and removals).
	lastEvents uint32
}

// cardEvents returns the card event counter of a reader event state.
func cardEvents(ev scard.StateFlag) uint32 { return uint32(ev) >> 16 }

// context returns the source's own PC/SC context, establishing it on first
// use.
func (s *Source) context() (*scard.Context, error) {
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	if s.conn.closed {
		return nil, fmt.Errorf("reader %q: PC/SC connection closed", s.reader)
	}
	if s.sctx == nil {
		sctx, err := scard.EstablishContext()
		if err != nil {
			return nil, fmt.Errorf("reader %q: open PC/SC context: %w", s.reader, err)
		}
		s.sctx = sctx
	}
	return s.sctx, nil
}

// dropContext releases the source's context after pcscd was lost, so the
// next call establishes a new one.
func (s *Source) dropContext(cause error) {
	s.conn.mu.Lock()
	defer s.conn.mu.Unlock()
	s.log.Info("PC/SC service lost; the next wait reconnects", "err", cause)
	if s.sctx != nil {
		_ = s.sctx.Release()
		s.sctx = nil
	}
}

// release cancels and releases the source's context; the caller holds
// s.conn.mu.
func (s *Source) release() error {
	if s.sctx == nil {
		return nil
	}
	_ = s.sctx.Cancel() // wake a blocked wait; nothing to do if none
	// A context of a pcscd that has gone away holds nothing to release.
	if err := s.sctx.Release(); err != nil && !isServiceLost(err) {
		return fmt.Errorf("reader %q: release PC/SC context: %w", s.reader, err)
	}
	s.sctx = nil
	return nil
}

// waitChange calls SCardGetStatusChange on rs, cancelling it when ctx ends.
func waitChange(ctx context.Context, sctx *scard.Context, rs []scard.ReaderState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = sctx.Cancel() })
	defer stop()
	err := sctx.GetStatusChange(rs, statusWaitBackstop)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// NextCard blocks until a card is present in the reader (waiting in
// SCardGetStatusChange, not polling) or ctx ends, connects to it in shared
// mode with T=0 or T=1, and returns the session. A card still present from
// a session whose Done did not see it leave is not taken again: NextCard
// first waits for the reader to be empty, or for the reader's card event
// counter to show that a card was taken away and presented again. A name
// that pcscd does not list gives reader.ErrReaderNotFound with the available
// readers.
func (s *Source) NextCard(ctx context.Context) (reader.Card, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sctx, err := s.context()
	if err != nil {
		return nil, err
	}
	if err := s.conn.checkReader(s.reader); err != nil {
		return nil, err
	}
	state := scard.StateUnaware
	for {
		rs := []scard.ReaderState{{Reader: s.reader, CurrentState: state}}
		err := waitChange(ctx, sctx, rs)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("wait for card in reader %q: %w", s.reader, ctx.Err())
		case errors.Is(err, scard.ErrTimeout), errors.Is(err, scard.ErrCancelled):
			continue
		case errors.Is(err, scard.ErrUnknownReader):
			return nil, fmt.Errorf("wait for card: %w: %q disappeared", reader.ErrReaderNotFound, s.reader)
		case isServiceLost(err):
			s.dropContext(err)
			return nil, fmt.Errorf("wait for card in reader %q: %w", s.reader, err)
		case err != nil:
			return nil, fmt.Errorf("wait for card in reader %q: %w", s.reader, err)
		}
		ev := rs[0].EventState
		state = ev &^ scard.StateChanged
		if ev&(scard.StateUnknown|scard.StateIgnore) != 0 {
			return nil, fmt.Errorf("wait for card: %w: %q disappeared", reader.ErrReaderNotFound, s.reader)
		}
		if s.waitAbsent {
			switch {
			case ev&scard.StateEmpty != 0:
				s.waitAbsent = false
				continue
			case cardEvents(ev) != s.lastEvents:
				// Removed and presented again between two waits.
				s.waitAbsent = false
			default:
				continue
			}
		}
		if ev&scard.StatePresent == 0 || ev&scard.StateMute != 0 {
			continue
		}
		sc, err := sctx.Connect(s.reader, scard.ShareShared, scard.ProtocolAny)
		if err != nil {
			if isRemoval(err) {
				continue
			}
			if isServiceLost(err) {
				s.dropContext(err)
				return nil, fmt.Errorf("connect to card in reader %q: %w", s.reader, err)
			}
			// A card that cannot be talked to (mute, held exclusively by
			// another program) is skipped until the reader state changes.
			s.log.Warn("cannot connect to card", "err", err)
			continue
		}
		s.lastEvents = cardEvents(ev)
		s.log.Debug("card connected", "atr", fmt.Sprintf("%X", rs[0].Atr), "protocol", sc.ActiveProtocol(), "events", s.lastEvents)
		return &card{src: s, card: sc, busy: make(chan struct{}, 1)}, nil
	}
}

// waitEmpty waits until the reader has no card (or is gone). It must not
// run concurrently with NextCard (it uses the source's context).
func (s *Source) waitEmpty(ctx context.Context) error {
	sctx, err := s.context()
	if err != nil {
		return err
	}
	err = waitState(ctx, sctx, s.reader, scard.StateEmpty|scard.StateUnknown|scard.StateIgnore|scard.StateUnavailable)
	if errors.Is(err, scard.ErrUnknownReader) {
		return nil
	}
	return err
}

// waitState waits on sctx until the state of the reader named name has one
// of the flags in until, or ctx ends.
func waitState(ctx context.Context, sctx *scard.Context, name string, until scard.StateFlag) error {
	state := scard.StateUnaware
	for {
		rs := []scard.ReaderState{{Reader: name, CurrentState: state}}
		err := waitChange(ctx, sctx, rs)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, scard.ErrTimeout), errors.Is(err, scard.ErrCancelled):
			continue
		case err != nil:
			return err
		}
		ev := rs[0].EventState
		if ev&until != 0 {
			return nil
		}
		state = ev &^ scard.StateChanged
	}
}

// WaitCard waits until pcscd reports a card in the reader named readerName
// (present true) or the reader empty (present false), or ctx ends. It opens
// a PC/SC context of its own, so it may run beside the waits of a Source.
// pcscd polls some readers (vpcd among them), so a card taken away and
// presented again at once can go unseen: tests that need pcscd to see a
// removal wait for it here.
func WaitCard(ctx context.Context, readerName string, present bool) error {
	want, what := scard.StateEmpty, "empty"
	if present {
		want, what = scard.StatePresent, "holding a card"
	}
	sctx, err := scard.EstablishContext()
	if err != nil {
		return fmt.Errorf("wait for reader %q to be %s: open PC/SC context: %w", readerName, what, err)
	}
	defer func() { _ = sctx.Release() }()
	if err := waitState(ctx, sctx, readerName, want); err != nil {
		return fmt.Errorf("wait for reader %q to be %s: %w", readerName, what, err)
	}
	return nil
}

// isRemoval reports whether a PC/SC error means the card (or its reader)
// is gone.
func isRemoval(err error) bool {
	for _, e := range []scard.Error{
		scard.ErrRemovedCard, scard.ErrResetCard, scard.ErrNoSmartcard,
		scard.ErrUnpoweredCard, scard.ErrReaderUnavailable, scard.ErrUnknownReader,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// card is one card session on a PC/SC reader.
type card struct {
	src  *Source
	card *scard.Card
	// busy is held (a token in the channel) while a PC/SC call on card runs,
	// including a transmit whose caller gave up when its context ended.
	busy         chan struct{}
	disconnected bool // guarded by busy
}

type transmitResult struct {
	answer []byte
	err    error
}

// Transmit sends cmd and returns the answer. When ctx ends first it
// returns at once; the transmit in flight finishes in the background and
// Done waits for it. Removal errors are mapped to reader.ErrCardRemoved.
func (c *card) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	select {
	case c.busy <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("transmit to reader %q: %w", c.src.reader, ctx.Err())
	}
	if c.disconnected {
		<-c.busy
		return nil, fmt.Errorf("transmit to reader %q after Done: %w", c.src.reader, reader.ErrCardRemoved)
	}
	ch := make(chan transmitResult, 1)
	go func() {
		defer func() { <-c.busy }()
		answer, err := c.card.Transmit(cmd)
		switch {
		case err != nil:
			err = c.transmitError(ctx, cmd, err)
		case len(answer) < 2 && c.leftReader(ctx):
			// vpcd answers with no bytes at all when the card has left.
			err = c.transmitError(ctx, cmd, scard.ErrRemovedCard)
		}
		ch <- transmitResult{answer, err}
	}()
	select {
	case r := <-ch:
		return r.answer, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("transmit to reader %q: %w", c.src.reader, ctx.Err())
	}
}

// transmitError describes a failed transmit, mapping it to
// reader.ErrCardRemoved when the card is gone. Only the command header is
// named: the data may be a PIN.
func (c *card) transmitError(ctx context.Context, cmd []byte, err error) error {
	hdr := cmd[:min(len(cmd), 4)]
	// Readers often report a card pulled mid-command as a communication
	// error before they report the removal itself: ask the reader.
	if isRemoval(err) || c.leftReader(ctx) {
		return fmt.Errorf("transmit % X to reader %q: %w (%w)", hdr, c.src.reader, reader.ErrCardRemoved, err)
	}
	return fmt.Errorf("transmit % X to reader %q: %w", hdr, c.src.reader, err)
}

// removalSettle bounds the wait, after a failed or empty transmit, for the
// reader to report whether the card has left. pcscd polls readers without
// hot-plug notification (vpcd among them) every 400 ms.
const removalSettle = time.Second

// leftReader reports whether the card has left the reader, waiting up to
// removalSettle (bounded by ctx) for the reader to notice.
func (c *card) leftReader(ctx context.Context) bool {
	st, err := c.card.Status()
	switch {
	case err != nil && isRemoval(err):
		return true
	case err == nil && st.State&scard.Present == 0:
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, removalSettle)
	defer cancel()
	return c.src.waitEmpty(ctx) == nil
}

// Done disconnects (leaving the card powered) and waits, bounded by ctx,
// until the card has left the reader. If ctx ends first, the source waits
// for an empty reader before its next card.
func (c *card) Done(ctx context.Context) error {
	s := c.src
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case c.busy <- struct{}{}:
	case <-ctx.Done():
		s.waitAbsent = true
		return fmt.Errorf("end session on reader %q: transmit still running: %w", s.reader, ctx.Err())
	}
	if !c.disconnected {
		c.disconnected = true
		if err := c.card.Disconnect(scard.LeaveCard); err != nil && !isRemoval(err) {
			s.log.Warn("disconnect card", "err", err)
		}
	}
	<-c.busy
	if err := s.waitEmpty(ctx); err != nil {
		s.waitAbsent = true
		return fmt.Errorf("wait for card to leave reader %q: %w", s.reader, err)
	}
	return nil
}
