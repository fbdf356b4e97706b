// Package cardsim is a software My Number Card: it answers the JPKI
// application's commands (SELECT, READ BINARY, VERIFY) from a Profile, with
// the PIN tries counter and the access rules of a real card, and it can be
// told to misbehave (answer garbage, truncate data, leave the reader) for
// tests. A Card serves in process as a reader.Transmitter, through a Slot
// as a reader.Card source, or to pcscd through the vpcd driver (ServeVPCD,
// Bridge).
//
// The simulator has its own copy of the card's identifiers, taken from the
// project's JPKI notes, so that a mistake in package reader is not hidden
// by sharing it.
package cardsim

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/tobira-ac/tobira/reader"
)

// DefaultATR is the contact ATR seen on real My Number Cards, used when a
// Profile gives none. Readers must not identify the card by it.
var DefaultATR = []byte{0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14}

// DefaultPIN is the user-authentication PIN of a Profile that gives none.
const DefaultPIN = "1234"

// MaxTries is the number of PIN tries of a fresh card.
const MaxTries = 3

// Card labels of EF 0006 (see reader.TokenType).
const (
	// LabelMyNumberCard is the token label of a My Number Card.
	LabelMyNumberCard = "JPKIAPICCTOKEN2"
	// LabelJuki is the token label of an old 住基 card.
	LabelJuki = "JPKIAPICCTOKEN"
	// LabelAndroid is the token label of the Android smartphone certificate.
	LabelAndroid = "JPKIAPGPSETOKEN"
	// LabelIOS is the token label of the iPhone smartphone certificate.
	LabelIOS = "JPKIAPIOSTOKEN"
)

// Identifiers of the JPKI application, from the project's JPKI notes.
var aidJPKI = []byte{0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01}

const (
	fidSignCert     uint16 = 0x0001
	fidToken        uint16 = 0x0006
	fidAuthCert     uint16 = 0x000A
	fidAuthCACert   uint16 = 0x000B
	fidAuthKey      uint16 = 0x0017
	fidAuthPIN      uint16 = 0x0018
	fidSignKey      uint16 = 0x001A
	fidSignPassword uint16 = 0x001B
)

// Profile describes one simulated card.
type Profile struct {
	// TokenLabel is the EF 0006 label, e.g. LabelMyNumberCard. "" makes a
	// card without JPKI-AP: selecting it answers 6A82.
	TokenLabel string
	// AuthCert is the DER user-authentication certificate in EF 000A; nil
	// leaves EF 000A out (selecting it answers 6A82).
	AuthCert []byte
	// CACert is the DER CA certificate in EF 000B; nil leaves it out.
	CACert []byte
	// PIN is the 4-digit user-authentication PIN of EF 0018; "" means
	// DefaultPIN.
	PIN string
	// Tries is the number of PIN tries left: 0 means a fresh card
	// (MaxTries), a negative value a blocked card (no tries left).
	Tries int
	// ATR is the answer to reset; nil means DefaultATR.
	ATR []byte
}

// Fault is a misbehaviour a Card can be told to show, for tests.
type Fault int

// The faults.
const (
	// FaultNone is normal behaviour.
	FaultNone Fault = iota
	// FaultGarbage answers every command with the single byte FF (not even
	// a status word).
	FaultGarbage
	// FaultTruncate answers with only the first half of the response data,
	// still with the status word 90 00 or whatever the card meant to send.
	FaultTruncate
	// FaultRemove makes the card leave the reader: no answer at all
	// (Process returns nil, Transmit reader.ErrCardRemoved, and the vpcd
	// bridge closes its connection).
	FaultRemove
)

// String names the fault.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultGarbage:
		return "garbage"
	case FaultTruncate:
		return "truncate"
	case FaultRemove:
		return "remove"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

type fileKind int

const (
	fileBinary fileKind = iota // readable with READ BINARY
	fileSecret                 // needs a password the simulator never grants (6982)
	filePIN                    // a PIN EF: VERIFY target, not readable (6981)
)

type file struct {
	kind fileKind
	data []byte
}

// Card is a software My Number Card. It is safe for concurrent use; each
// command is processed atomically.
type Card struct {
	mu       sync.Mutex
	hasAP    bool
	files    map[uint16]file
	pin      []byte
	atr      []byte
	tries    int
	commands int

	apSelected bool
	current    uint16
	hasCurrent bool

	fault      Fault
	faultAfter int
}

// New returns a card with profile p. The certificate bytes are copied.
func New(p Profile) *Card {
	c := &Card{
		hasAP: p.TokenLabel != "",
		pin:   []byte(p.PIN),
		atr:   bytes.Clone(p.ATR),
		tries: p.Tries,
		files: map[uint16]file{
			fidSignCert:     {kind: fileSecret},
			fidAuthKey:      {kind: fileSecret},
			fidAuthPIN:      {kind: filePIN},
			fidSignKey:      {kind: fileSecret},
			fidSignPassword: {kind: filePIN},
		},
	}
	if len(c.pin) == 0 {
		c.pin = []byte(DefaultPIN)
	}
	if c.atr == nil {
		c.atr = bytes.Clone(DefaultATR)
	}
	switch {
	case c.tries == 0:
		c.tries = MaxTries
	case c.tries < 0:
		c.tries = 0
	}
	if c.hasAP {
		token := bytes.Repeat([]byte{' '}, 32)
		copy(token, p.TokenLabel)
		// Trailing bytes after the label, as on real cards (content opaque).
		token = append(token, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)
		c.files[fidToken] = file{kind: fileBinary, data: token}
	}
	if p.AuthCert != nil {
		c.files[fidAuthCert] = file{kind: fileBinary, data: bytes.Clone(p.AuthCert)}
	}
	if p.CACert != nil {
		c.files[fidAuthCACert] = file{kind: fileBinary, data: bytes.Clone(p.CACert)}
	}
	return c
}

// ATR returns the card's answer to reset.
func (c *Card) ATR() []byte { return bytes.Clone(c.atr) }

// Commands returns the number of command APDUs processed so far.
func (c *Card) Commands() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commands
}

// Tries returns the number of PIN tries left.
func (c *Card) Tries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries
}

// SetFault makes the card show fault f on every command after the first
// after commands it has processed (counting from the card's first command
// ever, see Commands). SetFault(FaultNone, 0) restores normal behaviour.
func (c *Card) SetFault(f Fault, after int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fault, c.faultAfter = f, after
}

// Reset models a power cycle or warm reset: the selection is lost, the PIN
// tries counter is kept.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apSelected, c.hasCurrent, c.current = false, false, 0
}

// Transmit processes cmd like Process, so a *Card is a reader.Transmitter.
// It fails with reader.ErrCardRemoved when FaultRemove is in force and with
// the context's error when ctx has ended.
func (c *Card) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cardsim transmit: %w", err)
	}
	r := c.Process(cmd)
	if r == nil {
		return nil, fmt.Errorf("cardsim transmit: %w", reader.ErrCardRemoved)
	}
	return r, nil
}

// Process answers one command APDU with a response APDU (data, SW1, SW2).
// It never panics, whatever cmd holds. It returns nil only when FaultRemove
// is in force (the card has left).
func (c *Card) Process(cmd []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands++
	fault := FaultNone
	if c.commands > c.faultAfter {
		fault = c.fault
	}
	switch fault {
	case FaultRemove:
		return nil
	case FaultGarbage:
		return []byte{0xFF}
	}
	data, sw := c.process(cmd)
	if fault == FaultTruncate {
		data = data[:len(data)/2]
	}
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, byte(sw>>8), byte(sw))
}

// apdu is a parsed short command APDU.
type apdu struct {
	cla, ins, p1, p2 byte
	data             []byte
	ne               int // 0 when there is no Le field
}

// parseAPDU parses a short command APDU (cases 1 to 4); extended length and
// inconsistent lengths give 67 00.
func parseAPDU(b []byte) (apdu, uint16) {
	if len(b) < 4 {
		return apdu{}, reader.SWWrongLength
	}
	a := apdu{cla: b[0], ins: b[1], p1: b[2], p2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
	case len(body) == 1: // case 2
		a.ne = int(body[0])
		if a.ne == 0 {
			a.ne = 256
		}
	default:
		lc := int(body[0])
		if lc == 0 { // extended length: not supported
			return apdu{}, reader.SWWrongLength
		}
		switch len(body) {
		case 1 + lc: // case 3
			a.data = body[1:]
		case 2 + lc: // case 4
			a.data = body[1 : 1+lc]
			a.ne = int(body[1+lc])
			if a.ne == 0 {
				a.ne = 256
			}
		default:
			return apdu{}, reader.SWWrongLength
		}
	}
	return a, 0
}

// process answers one command; the caller holds c.mu.
func (c *Card) process(cmd []byte) ([]byte, uint16) {
	a, sw := parseAPDU(cmd)
	if sw != 0 {
		return nil, sw
	}
	switch a.cla {
	case 0x00:
		switch a.ins {
		case 0xA4:
			return nil, c.selectFile(a)
		case 0xB0:
			return c.readBinary(a)
		case 0x20:
			return nil, c.verify(a)
		}
		return nil, reader.SWINSNotSupported
	case 0x80:
		if a.ins == 0x2A {
			// Signing with the auth key is a later feature; the simulator
			// acts as if the PIN were never verified.
			return nil, reader.SWSecurityNotSatisfied
		}
		return nil, reader.SWINSNotSupported
	}
	return nil, reader.SWCLANotSupported
}

func (c *Card) selectFile(a apdu) uint16 {
	if a.p2 != 0x0C {
		return reader.SWWrongP1P2
	}
	switch a.p1 {
	case 0x04: // by AID
		if len(a.data) == 0 {
			return reader.SWWrongLength
		}
		if !c.hasAP || !bytes.Equal(a.data, aidJPKI) {
			return reader.SWFileNotFound
		}
		c.apSelected, c.hasCurrent, c.current = true, false, 0
		return reader.SWOK
	case 0x02: // EF by FID under the current DF
		if len(a.data) != 2 {
			return reader.SWWrongLength
		}
		fid := uint16(a.data[0])<<8 | uint16(a.data[1])
		if !c.apSelected {
			return reader.SWFileNotFound
		}
		if _, ok := c.files[fid]; !ok {
			return reader.SWFileNotFound
		}
		c.hasCurrent, c.current = true, fid
		return reader.SWOK
	}
	return reader.SWWrongP1P2
}

func (c *Card) readBinary(a apdu) ([]byte, uint16) {
	if a.p1&0x80 != 0 { // short EF identifier addressing: not modelled
		return nil, reader.SWWrongP1P2
	}
	if a.data != nil || a.ne == 0 {
		return nil, reader.SWWrongLength
	}
	if !c.hasCurrent {
		return nil, reader.SWNoCurrentEF
	}
	f := c.files[c.current]
	switch f.kind {
	case fileSecret:
		return nil, reader.SWSecurityNotSatisfied
	case filePIN:
		return nil, reader.SWCommandIncompatible
	}
	off := int(a.p1)<<8 | int(a.p2)
	if off >= len(f.data) {
		return nil, reader.SWWrongOffset
	}
	end := min(off+a.ne, len(f.data))
	return bytes.Clone(f.data[off:end]), reader.SWOK
}

func (c *Card) verify(a apdu) uint16 {
	if a.p1 != 0x00 || a.p2 != 0x80 {
		return reader.SWWrongP1P2
	}
	if !c.hasCurrent || c.current != fidAuthPIN {
		return reader.SWNoCurrentEF
	}
	if a.ne != 0 {
		return reader.SWWrongLength
	}
	if a.data == nil { // tries-left query
		return 0x63C0 | uint16(c.tries)
	}
	if len(a.data) != 4 {
		return reader.SWWrongLength
	}
	if c.tries == 0 {
		return reader.SWAuthBlocked
	}
	if bytes.Equal(a.data, c.pin) {
		c.tries = MaxTries
		return reader.SWOK
	}
	c.tries--
	return 0x63C0 | uint16(c.tries)
}
