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
	"crypto"
	"crypto/rsa"
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
	// AuthKey is the user-authentication private key of EF 0017: with it,
	// COMPUTE DIGITAL SIGNATURE (80 2A 00 80) signs the given DigestInfo
	// with PKCS #1 v1.5 type-1 padding once the PIN is verified. nil makes
	// a card that cannot sign (69 85 after a verified PIN).
	AuthKey *rsa.PrivateKey
	// CertNeedsPIN makes EF 000A readable only after the PIN is verified,
	// as on some smartphone tokens (READ BINARY answers 69 82 before).
	CertNeedsPIN bool
	// PIN is the 4-digit user-authentication PIN of EF 0018; "" means
	// DefaultPIN.
	PIN string
	// Tries is the number of PIN tries left: 0 means a fresh card
	// (MaxTries), a negative value a blocked card (no tries left).
	Tries int
	// ATR is the answer to reset; nil means DefaultATR.
	ATR []byte
	// FreeArea, if set, is an organisation's application in the card's free
	// area.
	FreeArea *FreeArea
}

// FreeArea is a simulated free-area (card-AP) application: one binary EF
// holding the organisation's data, optionally behind a PIN of its own.
type FreeArea struct {
	// AID is the application identifier.
	AID []byte
	// File is the FID of the data EF.
	File uint16
	// Data is the content of the data EF.
	Data []byte
	// PINFile is the FID of the application's PIN EF; 0 means the data is
	// readable without a PIN.
	PINFile uint16
	// PIN is the application's 4-digit PIN; "" means DefaultPIN.
	PIN string
	// Tries is the PIN tries left, as Profile.Tries.
	Tries int
}

// The free-area application of DemoFreeArea and DemoFreeAreaProfile. The
// AID is a proprietary (F-prefixed) one made up for tests: "TOBIRA" 01.
var (
	DemoFreeAreaAID = []byte{0xF0, 0x54, 0x4F, 0x42, 0x49, 0x52, 0x41, 0x01}
)

// Demo free-area file identifiers.
const (
	DemoFreeAreaFile    uint16 = 0x0101
	DemoFreeAreaPINFile uint16 = 0x0102
)

// DemoFreeAreaSize is the size of the data EF of DemoFreeArea.
const DemoFreeAreaSize = 64

// DemoFreeArea returns a free-area application holding userID (up to 50
// bytes) as the value of tag C1 inside a template 70 (preceded by a version
// object C0 01 01) in an EF of DemoFreeAreaSize bytes padded with FF,
// behind the PIN pin when it is not "".
func DemoFreeArea(userID, pin string) *FreeArea {
	userID = userID[:min(len(userID), 50)]
	inner := append([]byte{0xC0, 0x01, 0x01, 0xC1, byte(len(userID))}, userID...)
	data := append([]byte{0x70, byte(len(inner))}, inner...)
	data = append(data, bytes.Repeat([]byte{0xFF}, DemoFreeAreaSize-len(data))...)
	fa := &FreeArea{AID: DemoFreeAreaAID, File: DemoFreeAreaFile, Data: data}
	if pin != "" {
		fa.PINFile, fa.PIN = DemoFreeAreaPINFile, pin
	}
	return fa
}

// DemoFreeAreaProfile returns the reader profile that reads the ID of
// DemoFreeArea; withPIN selects PIN verification.
func DemoFreeAreaProfile(withPIN bool) reader.FreeAreaProfile {
	p := reader.FreeAreaProfile{
		Name: "tobira demo", AID: fmt.Sprintf("%X", DemoFreeAreaAID), File: fmt.Sprintf("%04X", DemoFreeAreaFile),
		Offset: 0, Length: DemoFreeAreaSize, TLVPath: []string{"70", "C1"},
	}
	if withPIN {
		p.Auth, p.PINFile = "verify_pin", fmt.Sprintf("%04X", DemoFreeAreaPINFile)
	}
	return p
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
	// FaultMute makes the card stop answering while staying in the reader:
	// Transmit blocks until its context ends (or the fault is cleared),
	// Process returns nil and the vpcd bridge sends nothing, keeping the
	// connection open.
	FaultMute
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
	case FaultMute:
		return "mute"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

type fileKind int

const (
	fileBinary fileKind = iota // readable with READ BINARY
	fileSecret                 // needs a password the simulator never grants (6982)
	filePIN                    // a PIN EF: VERIFY target, not readable (6981)
	fileKey                    // a private key EF: 80 2A signs once its PIN is verified
)

// pinState is one PIN with its counter and the session's login state.
type pinState struct {
	pin      []byte
	tries    int
	verified bool
}

func newPIN(pin string, tries int) *pinState {
	p := &pinState{pin: []byte(pin), tries: tries}
	if len(p.pin) == 0 {
		p.pin = []byte(DefaultPIN)
	}
	switch {
	case p.tries == 0:
		p.tries = MaxTries
	case p.tries < 0:
		p.tries = 0
	}
	return p
}

type file struct {
	kind fileKind
	data []byte
	pin  *pinState       // filePIN: the PIN; fileKey and gated files: the PIN that unlocks
	key  *rsa.PrivateKey // fileKey
}

// application is one selectable application (DF) of the card.
type application struct {
	aid   []byte
	files map[uint16]file
	pins  []*pinState
}

// Card is a software My Number Card. It is safe for concurrent use; each
// command is processed atomically.
type Card struct {
	mu       sync.Mutex
	apps     []*application
	authPIN  *pinState
	atr      []byte
	commands int
	signs    int

	cur        *application // selected application, nil if none
	current    uint16
	hasCurrent bool

	fault      Fault
	faultAfter int
	mute       chan struct{} // closed by SetFault to wake muted Transmits
}

// New returns a card with profile p. The certificate bytes are copied.
func New(p Profile) *Card {
	c := &Card{atr: bytes.Clone(p.ATR), mute: make(chan struct{})}
	if c.atr == nil {
		c.atr = bytes.Clone(DefaultATR)
	}
	c.authPIN = newPIN(p.PIN, p.Tries)
	if p.TokenLabel != "" {
		jpki := &application{aid: aidJPKI, pins: []*pinState{c.authPIN}, files: map[uint16]file{
			fidSignCert:     {kind: fileSecret},
			fidAuthKey:      {kind: fileKey, pin: c.authPIN, key: p.AuthKey},
			fidAuthPIN:      {kind: filePIN, pin: c.authPIN},
			fidSignKey:      {kind: fileSecret},
			fidSignPassword: {kind: filePIN, pin: newPIN("SIGNPASSWORD", 5)},
		}}
		token := bytes.Repeat([]byte{' '}, 32)
		copy(token, p.TokenLabel)
		// Trailing bytes after the label, as on real cards (content opaque).
		token = append(token, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00)
		jpki.files[fidToken] = file{kind: fileBinary, data: token}
		if p.AuthCert != nil {
			f := file{kind: fileBinary, data: bytes.Clone(p.AuthCert)}
			if p.CertNeedsPIN {
				f.pin = c.authPIN
			}
			jpki.files[fidAuthCert] = f
		}
		if p.CACert != nil {
			jpki.files[fidAuthCACert] = file{kind: fileBinary, data: bytes.Clone(p.CACert)}
		}
		c.apps = append(c.apps, jpki)
	}
	if fa := p.FreeArea; fa != nil && len(fa.AID) > 0 {
		app := &application{aid: bytes.Clone(fa.AID), files: map[uint16]file{}}
		f := file{kind: fileBinary, data: bytes.Clone(fa.Data)}
		if fa.PINFile != 0 {
			pin := newPIN(fa.PIN, fa.Tries)
			app.pins = append(app.pins, pin)
			app.files[fa.PINFile] = file{kind: filePIN, pin: pin}
			f.pin = pin
		}
		app.files[fa.File] = f
		c.apps = append(c.apps, app)
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

// Signatures returns the number of signatures the card has made.
func (c *Card) Signatures() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signs
}

// Tries returns the number of user-authentication PIN tries left.
func (c *Card) Tries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.authPIN.tries
}

// SetFault makes the card show fault f on every command after the first
// after commands it has processed (counting from the card's first command
// ever, see Commands). SetFault(FaultNone, 0) restores normal behaviour.
func (c *Card) SetFault(f Fault, after int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fault, c.faultAfter = f, after
	close(c.mute)
	c.mute = make(chan struct{})
}

// Reset models a power cycle or warm reset: the selection and the PIN
// login state are lost, the PIN tries counters are kept.
func (c *Card) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.hasCurrent, c.current = nil, false, 0
	c.logout()
}

// logout clears every PIN's login state; the caller holds c.mu.
func (c *Card) logout() {
	for _, a := range c.apps {
		for _, p := range a.pins {
			p.verified = false
		}
	}
}

// Transmit processes cmd like Process, so a *Card is a reader.Transmitter.
// It fails with reader.ErrCardRemoved when FaultRemove is in force, blocks
// until ctx ends when FaultMute is, and fails with the context's error when
// ctx has ended.
func (c *Card) Transmit(ctx context.Context, cmd []byte) ([]byte, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("cardsim transmit: %w", err)
		}
		r, muted := c.process1(cmd)
		if muted == nil {
			if r == nil {
				return nil, fmt.Errorf("cardsim transmit: %w", reader.ErrCardRemoved)
			}
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("cardsim transmit to a mute card: %w", ctx.Err())
		case <-muted: // fault changed: try again
		}
	}
}

// Muted reports whether FaultMute is in force for the next command.
func (c *Card) Muted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault == FaultMute && c.commands+1 > c.faultAfter
}

// Process answers one command APDU with a response APDU (data, SW1, SW2).
// It never panics, whatever cmd holds. It returns nil only when FaultRemove
// or FaultMute is in force (the card has left, or does not answer).
func (c *Card) Process(cmd []byte) []byte {
	r, _ := c.process1(cmd)
	return r
}

// process1 is Process that also returns, when the card is mute, a channel
// closed on the next SetFault.
func (c *Card) process1(cmd []byte) ([]byte, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands++
	fault := FaultNone
	if c.commands > c.faultAfter {
		fault = c.fault
	}
	switch fault {
	case FaultRemove:
		return nil, nil
	case FaultMute:
		c.commands-- // not processed
		return nil, c.mute
	case FaultGarbage:
		return []byte{0xFF}, nil
	}
	data, sw := c.process(cmd)
	if fault == FaultTruncate {
		data = data[:len(data)/2]
	}
	out := make([]byte, 0, len(data)+2)
	out = append(out, data...)
	return append(out, byte(sw>>8), byte(sw)), nil
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

// Status words the simulator uses beyond those package reader names.
const (
	swConditionsNotSatisfied uint16 = 0x6985
	swWrongData              uint16 = 0x6A80
)

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
			return c.sign(a)
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
		for _, app := range c.apps {
			if bytes.Equal(a.data, app.aid) {
				if c.cur != app {
					c.logout()
				}
				c.cur, c.hasCurrent, c.current = app, false, 0
				return reader.SWOK
			}
		}
		return reader.SWFileNotFound
	case 0x02: // EF by FID under the current DF
		if len(a.data) != 2 {
			return reader.SWWrongLength
		}
		fid := uint16(a.data[0])<<8 | uint16(a.data[1])
		if c.cur == nil {
			return reader.SWFileNotFound
		}
		if _, ok := c.cur.files[fid]; !ok {
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
	f := c.cur.files[c.current]
	switch f.kind {
	case fileSecret, fileKey:
		return nil, reader.SWSecurityNotSatisfied
	case filePIN:
		return nil, reader.SWCommandIncompatible
	}
	if f.pin != nil && !f.pin.verified {
		return nil, reader.SWSecurityNotSatisfied
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
	if !c.hasCurrent || c.cur.files[c.current].kind != filePIN {
		return reader.SWNoCurrentEF
	}
	p := c.cur.files[c.current].pin
	if a.ne != 0 {
		return reader.SWWrongLength
	}
	if a.data == nil { // tries-left query
		return 0x63C0 | uint16(min(p.tries, 15))
	}
	if len(a.data) != len(p.pin) {
		return reader.SWWrongLength
	}
	if p.tries == 0 {
		return reader.SWAuthBlocked
	}
	if bytes.Equal(a.data, p.pin) {
		p.tries = MaxTries
		p.verified = true
		return reader.SWOK
	}
	p.tries--
	p.verified = false
	return 0x63C0 | uint16(p.tries)
}

// sign answers COMPUTE DIGITAL SIGNATURE (80 2A 00 80): the data (a
// DigestInfo) is signed with PKCS #1 v1.5 type-1 padding by the key of the
// current key EF, once that key's PIN has been verified.
func (c *Card) sign(a apdu) ([]byte, uint16) {
	if !c.hasCurrent || c.cur.files[c.current].kind != fileKey {
		return nil, reader.SWSecurityNotSatisfied // also: no key EF selected
	}
	f := c.cur.files[c.current]
	if !f.pin.verified {
		return nil, reader.SWSecurityNotSatisfied
	}
	if a.p1 != 0x00 || a.p2 != 0x80 {
		return nil, reader.SWWrongP1P2
	}
	if f.key == nil {
		return nil, swConditionsNotSatisfied
	}
	if len(a.data) == 0 || a.ne == 0 {
		return nil, reader.SWWrongLength
	}
	if a.ne < min(f.key.Size(), 256) {
		return nil, reader.SWWrongLength
	}
	sig, err := rsa.SignPKCS1v15(nil, f.key, crypto.Hash(0), a.data)
	if err != nil { // data too long for the key
		return nil, swWrongData
	}
	c.signs++
	return sig, reader.SWOK
}
