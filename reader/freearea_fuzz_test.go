package reader

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzFindTLV checks that the free-area TLV walker never panics, that a
// found value lies inside the input, and that failures match
// ErrFreeAreaData.
func FuzzFindTLV(f *testing.F) {
	f.Add([]byte{0x70, 0x06, 0xC0, 0x01, 0x01, 0xC1, 0x01, 'X', 0xFF}, []byte{0x70})
	f.Add([]byte{0x5F, 0x20, 0x81, 0x02, 'A', 'B'}, []byte{0x5F, 0x20})
	f.Add([]byte{0xC1, 0x82, 0xFF, 0xFF}, []byte{0xC1})
	f.Add([]byte{0x00, 0x00, 0x1F}, []byte{0x1F, 0x00})
	f.Fuzz(func(t *testing.T, data, tag []byte) {
		v, err := findTLV(data, tag)
		if err != nil {
			if !errors.Is(err, ErrFreeAreaData) {
				t.Fatalf("findTLV() error %v does not match ErrFreeAreaData", err)
			}
			return
		}
		if len(v) > len(data) || (len(v) > 0 && !bytes.Contains(data, v)) {
			t.Fatalf("findTLV() = % X, not inside % X", v, data)
		}
		if _, err := encodeFreeAreaID(v, false); err != nil && !errors.Is(err, ErrFreeAreaData) {
			t.Fatalf("encodeFreeAreaID() error %v does not match ErrFreeAreaData", err)
		}
	})
}
