package reader

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tobira-ac/tobira/internal/credential"
)

// MaxFreeAreaRead bounds the bytes a free-area profile reads from its file.
const MaxFreeAreaRead = 4096

// FreeAreaProfile says where an organisation's user ID lives in the card's
// free area (空き領域). The real layout of a card application written by
// J-LIS's card-AP system is not public, so it is configuration. The field
// tags are the TOML keys of the [door.free_area] table (see docs/READER.md).
type FreeAreaProfile struct {
	// Name names the profile in errors and logs.
	Name string `toml:"name"`
	// AID is the application identifier, hex (5 to 16 bytes), selected with
	// 00 A4 04 0C.
	AID string `toml:"aid"`
	// File is the EF holding the ID, 4 hex digits, selected with 00 A4 02 0C.
	File string `toml:"file"`
	// Offset and Length give the bytes read from File with READ BINARY
	// (Length 1..MaxFreeAreaRead; Offset+Length at most 32767).
	Offset int `toml:"offset"`
	Length int `toml:"length"`
	// TLVPath, if set, is a path of BER-TLV tags (hex, e.g. ["70", "5F20"])
	// applied to the bytes read: the ID is the value of the last tag.
	TLVPath []string `toml:"tlv_path"`
	// Auth is "none" (default) or "verify_pin": verify the holder's PIN
	// (4 digits, from the door's keypad) against PINFile before reading.
	Auth string `toml:"auth"`
	// PINFile is the PIN EF for Auth "verify_pin", 4 hex digits.
	PINFile string `toml:"pin_file"`
	// Encoding turns the ID bytes into the credential ID: "ascii" (default;
	// printable ASCII, trailing spaces and NULs removed) or "hex" (lower-case
	// hex of the bytes).
	Encoding string `toml:"encoding"`
}

// freeArea is a checked FreeAreaProfile.
type freeArea struct {
	name      string
	aid       []byte
	fid       uint16
	off, n    int
	path      [][]byte
	pinFID    uint16 // 0: no PIN
	hexEncode bool
}

// Validate checks the profile.
func (p *FreeAreaProfile) Validate() error {
	_, err := p.compile()
	return err
}

func (p *FreeAreaProfile) compile() (*freeArea, error) {
	name := p.Name
	if name == "" {
		name = "free area"
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("free-area profile %q: %s", name, fmt.Sprintf(format, args...))
	}
	f := &freeArea{name: name, off: p.Offset, n: p.Length}
	var err error
	if f.aid, err = parseHex(p.AID); err != nil || len(f.aid) < 5 || len(f.aid) > 16 {
		return nil, bad("aid %q must be 5 to 16 bytes of hex", p.AID)
	}
	if f.fid, err = parseFID(p.File); err != nil {
		return nil, bad("file: %v", err)
	}
	if f.n < 1 || f.n > MaxFreeAreaRead || f.off < 0 || f.off+f.n > 0x7FFF {
		return nil, bad("offset %d and length %d: want length 1..%d and offset+length <= 32767", f.off, f.n, MaxFreeAreaRead)
	}
	for _, t := range p.TLVPath {
		tag, err := parseHex(t)
		if err != nil || len(tag) < 1 || len(tag) > 2 {
			return nil, bad("tlv_path tag %q must be 1 or 2 bytes of hex", t)
		}
		f.path = append(f.path, tag)
	}
	switch p.Auth {
	case "", "none":
		if p.PINFile != "" {
			return nil, bad("pin_file is set but auth is not verify_pin")
		}
	case "verify_pin":
		if f.pinFID, err = parseFID(p.PINFile); err != nil {
			return nil, bad("pin_file: %v", err)
		}
	default:
		return nil, bad("auth %q: want none or verify_pin", p.Auth)
	}
	switch p.Encoding {
	case "", "ascii":
	case "hex":
		f.hexEncode = true
	default:
		return nil, bad("encoding %q: want ascii or hex", p.Encoding)
	}
	return f, nil
}

func parseHex(s string) ([]byte, error) {
	return hex.DecodeString(strings.NewReplacer(" ", "", ":", "").Replace(s))
}

func parseFID(s string) (uint16, error) {
	b, err := parseHex(s)
	if err != nil || len(b) != 2 {
		return 0, fmt.Errorf("%q is not a 2-byte file ID in hex", s)
	}
	fid := uint16(b[0])<<8 | uint16(b[1])
	if fid == 0 || fid == 0x3F00 || fid == 0xFFFF {
		return 0, fmt.Errorf("file ID %04X is reserved", fid)
	}
	return fid, nil
}

// identifyFreeArea runs mode freearea.
func (i *Identifier) identifyFreeArea(ctx context.Context, c *Client) (Identity, error) {
	id := Identity{Mode: ModeFreeArea, TriesLeft: TriesUnknown}
	f := i.fa
	sel := Command{Name: fmt.Sprintf("SELECT free-area AP %q", f.name), CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x0C, Data: f.aid}
	r, err := c.Do(ctx, sel)
	if err != nil {
		return id, err
	}
	if r.SW != SWOK {
		return id, fmt.Errorf("%w: %s answered status %04X", ErrFreeAreaNotFound, sel.Name, r.SW)
	}
	if f.pinFID != 0 {
		if err := i.pinStep(ctx, c, &id, f.pinFID); err != nil {
			return id, err
		}
	}
	data, err := readFreeArea(ctx, c, f)
	if err != nil {
		return id, err
	}
	raw := data
	for _, tag := range f.path {
		if raw, err = findTLV(raw, tag); err != nil {
			return id, fmt.Errorf("free-area profile %q: %w", f.name, err)
		}
	}
	s, err := encodeFreeAreaID(raw, f.hexEncode)
	if err != nil {
		return id, fmt.Errorf("free-area profile %q: %w", f.name, err)
	}
	id.Credential = credential.Credential{Kind: credential.KindFreeArea, ID: s}
	return id, nil
}

// readFreeArea selects the profile's EF and reads its bytes.
func readFreeArea(ctx context.Context, c *Client, f *freeArea) ([]byte, error) {
	fidName := fmt.Sprintf("SELECT EF %04X", f.fid)
	r, err := c.Do(ctx, Command{Name: fidName, CLA: 0x00, INS: 0xA4, P1: 0x02, P2: 0x0C, Data: []byte{byte(f.fid >> 8), byte(f.fid)}})
	if err != nil {
		return nil, err
	}
	switch r.SW {
	case SWOK:
	case SWFileNotFound:
		return nil, fmt.Errorf("%w: %s answered status %04X", ErrFreeAreaNotFound, fidName, r.SW)
	default:
		return nil, &StatusError{Command: fidName, SW: r.SW}
	}
	out := make([]byte, 0, f.n)
	for len(out) < f.n {
		n := min(f.n-len(out), MaxResponseData)
		chunk, err := readBinary(ctx, c, f.fid, f.off+len(out), n)
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
		if len(chunk) < n {
			return nil, fmt.Errorf("%w: EF %04X ends at %d bytes, profile reads %d from offset %d", ErrFreeAreaData, f.fid, len(out), f.n, f.off)
		}
	}
	return out, nil
}

// findTLV returns the value of the first BER-TLV object with tag at the top
// level of b. Tags are 1 or 2 bytes (a first byte with low bits 1F takes a
// second); lengths are short, 81 xx or 82 xx xx. Errors match
// ErrFreeAreaData.
func findTLV(b, tag []byte) ([]byte, error) {
	for len(b) > 0 {
		if b[0] == 0x00 || b[0] == 0xFF { // padding between objects
			b = b[1:]
			continue
		}
		tl := 1
		if b[0]&0x1F == 0x1F {
			tl = 2
		}
		if len(b) < tl+1 {
			return nil, fmt.Errorf("%w: TLV header truncated", ErrFreeAreaData)
		}
		t := b[:tl]
		n, ll := int(b[tl]), 1
		switch {
		case n < 0x80:
		case n == 0x81 && len(b) >= tl+2:
			n, ll = int(b[tl+1]), 2
		case n == 0x82 && len(b) >= tl+3:
			n, ll = int(b[tl+1])<<8|int(b[tl+2]), 3
		default:
			return nil, fmt.Errorf("%w: TLV tag %X has an unsupported length byte 0x%02X", ErrFreeAreaData, t, b[tl])
		}
		start := tl + ll
		if n > len(b)-start {
			return nil, fmt.Errorf("%w: TLV tag %X of length %d overruns the data (%d bytes left)", ErrFreeAreaData, t, n, len(b)-start)
		}
		if bytes.Equal(t, tag) {
			return b[start : start+n], nil
		}
		b = b[start+n:]
	}
	return nil, fmt.Errorf("%w: TLV tag %X not found", ErrFreeAreaData, tag)
}

// encodeFreeAreaID turns ID bytes into a credential ID.
func encodeFreeAreaID(raw []byte, hexEncode bool) (string, error) {
	var s string
	if hexEncode {
		s = hex.EncodeToString(raw)
	} else {
		t := bytes.TrimRight(raw, " \x00")
		for _, ch := range t {
			if ch < 0x20 || ch > 0x7E {
				return "", fmt.Errorf("%w: ID holds byte 0x%02X, not printable ASCII", ErrFreeAreaData, ch)
			}
		}
		s = string(t)
	}
	if s == "" || len(s) > credential.MaxFreeAreaIDLen {
		return "", fmt.Errorf("%w: ID of %d characters, want 1..%d", ErrFreeAreaData, len(s), credential.MaxFreeAreaIDLen)
	}
	return s, nil
}
