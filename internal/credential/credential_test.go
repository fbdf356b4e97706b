package credential

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func kid(b byte) []byte { return bytes.Repeat([]byte{b}, KeyIDLen) }

func TestKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    Credential
		key  []byte
	}{
		{"cert", Credential{Kind: KindCertSerial, IssuerKeyID: kid(0xaa), Serial: []byte{0x0a, 0x11, 0xce, 0x01}},
			append(append([]byte{1}, kid(0xaa)...), 0x0a, 0x11, 0xce, 0x01)},
		{"cert 20-byte serial", Credential{Kind: KindCertSerial, IssuerKeyID: kid(1), Serial: bytes.Repeat([]byte{7}, 20)},
			append(append([]byte{1}, kid(1)...), bytes.Repeat([]byte{7}, 20)...)},
		{"free area", Credential{Kind: KindFreeArea, ID: "EMP-0042"}, []byte("\x02EMP-0042")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.c.Key()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k, tt.key) {
				t.Fatalf("Key = %x, want %x", k, tt.key)
			}
			back, err := Parse(k)
			if err != nil {
				t.Fatal(err)
			}
			if back.Kind != tt.c.Kind || !bytes.Equal(back.IssuerKeyID, tt.c.IssuerKeyID) || !bytes.Equal(back.Serial, tt.c.Serial) || back.ID != tt.c.ID {
				t.Errorf("Parse(Key) = %+v, want %+v", back, tt.c)
			}
		})
	}
}

func TestKeyInvalid(t *testing.T) {
	tests := []struct {
		name string
		c    Credential
		want string
	}{
		{"short key id", Credential{Kind: KindCertSerial, IssuerKeyID: []byte{1, 2}, Serial: []byte{1}}, "issuer key ID is 2 bytes"},
		{"no serial", Credential{Kind: KindCertSerial, IssuerKeyID: kid(1)}, "serial is 0 bytes"},
		{"long serial", Credential{Kind: KindCertSerial, IssuerKeyID: kid(1), Serial: make([]byte, 21)}, "serial is 21 bytes"},
		{"empty free-area", Credential{Kind: KindFreeArea}, "free-area ID is 0 bytes"},
		{"long free-area", Credential{Kind: KindFreeArea, ID: strings.Repeat("x", 65)}, "free-area ID is 65 bytes"},
		{"zero kind", Credential{}, "unknown kind 0"},
	}
	for _, tt := range tests {
		_, err := tt.c.Key()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Key() error = %v, want ErrInvalid mentioning %q", tt.name, err, tt.want)
		}
	}
}

func TestString(t *testing.T) {
	c := Credential{Kind: KindCertSerial, IssuerKeyID: kid(0xab), Serial: []byte{0x12, 0x34}}
	if got := c.String(); got != "cert:abababab…/1234" {
		t.Errorf("String = %q", got)
	}
	if got := (Credential{Kind: KindFreeArea, ID: "X1"}).String(); got != "freearea:X1" {
		t.Errorf("String = %q", got)
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// encodes back to the same key.
func FuzzParse(f *testing.F) {
	f.Add(append(append([]byte{1}, kid(3)...), 9))
	f.Add([]byte("\x02ID"))
	f.Add([]byte{})
	f.Add([]byte{7, 1, 2})
	f.Fuzz(func(t *testing.T, key []byte) {
		c, err := Parse(key)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		back, err := c.Key()
		if err != nil {
			t.Fatalf("Parse accepted %x but Key fails: %v", key, err)
		}
		if !bytes.Equal(back, key) {
			t.Fatalf("Key(Parse(%x)) = %x", key, back)
		}
	})
}
