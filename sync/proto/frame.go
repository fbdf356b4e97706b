package proto

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// frame is the binary layout shared by snapshot chunks and release chunks:
// a 4-byte magic, a fixed-length ID (sent as raw bytes, shown as hex), a
// big-endian position of posLen bytes (4 or 8), then at most MaxChunkSize
// bytes of data.
type frame struct {
	// what names the payload in errors ("chunk", "release chunk").
	what string
	// magic starts every payload of this kind.
	magic string
	// idLen is the ID's length in bytes.
	idLen int
	// posLen is the position's length in bytes: 4 or 8.
	posLen int
}

// Frames of the contract (docs/PROTOCOL.md).
var (
	// snapshotFrame: "TBC1", 16-byte transfer ID, 4-byte chunk index.
	snapshotFrame = frame{what: "chunk", magic: "TBC1", idLen: 16, posLen: 4}
	// releaseFrame: "TBF1", 32-byte SHA-256 of the binary, 8-byte offset.
	releaseFrame = frame{what: "release chunk", magic: "TBF1", idLen: 32, posLen: 8}
)

// header is the length of the frame's header.
func (f frame) header() int { return len(f.magic) + f.idLen + f.posLen }

// maxPos is the largest position the frame can carry.
func (f frame) maxPos() uint64 { return 1<<(8*f.posLen) - 1 } // 1<<64 wraps to 0: MaxUint64 for 8

// encode returns the payload of data at pos under the hex ID id.
func (f frame) encode(id string, pos uint64, data []byte) ([]byte, error) {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != f.idLen {
		return nil, fmt.Errorf("encode %s at %d: id %q is not %d hex digits", f.what, pos, id, 2*f.idLen)
	}
	if pos > f.maxPos() || len(data) > MaxChunkSize {
		return nil, fmt.Errorf("encode %s of %s: position %d, %d bytes out of range", f.what, id, pos, len(data))
	}
	b := make([]byte, 0, f.header()+len(data))
	b = append(b, f.magic...)
	b = append(b, raw...)
	if f.posLen == 4 {
		b = binary.BigEndian.AppendUint32(b, uint32(pos))
	} else {
		b = binary.BigEndian.AppendUint64(b, pos)
	}
	return append(b, data...), nil
}

// decode splits payload into its hex ID, position and data. The error wraps
// ErrMalformed.
func (f frame) decode(payload []byte) (id string, pos uint64, data []byte, err error) {
	h := f.header()
	if len(payload) < h || string(payload[:len(f.magic)]) != f.magic {
		return "", 0, nil, fmt.Errorf("%w: %s of %d bytes has no %q header", ErrMalformed, f.what, len(payload), f.magic)
	}
	if len(payload) > h+MaxChunkSize {
		return "", 0, nil, fmt.Errorf("%w: %s is %d bytes, max %d", ErrMalformed, f.what, len(payload), h+MaxChunkSize)
	}
	idEnd := len(f.magic) + f.idLen
	if f.posLen == 4 {
		pos = uint64(binary.BigEndian.Uint32(payload[idEnd:h]))
	} else {
		pos = binary.BigEndian.Uint64(payload[idEnd:h])
	}
	return hex.EncodeToString(payload[len(f.magic):idEnd]), pos, payload[h:], nil
}
