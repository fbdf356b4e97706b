package reader

import (
	"errors"
	"os"
	"testing"
)

func TestDERLength(t *testing.T) {
	tests := []struct {
		name    string
		header  []byte
		want    int
		wantErr error
	}{
		{"short form", []byte{0x30, 0x05, 1, 2}, 7, nil},
		{"short form max", []byte{0x30, 0x7F}, 129, nil},
		{"one length octet", []byte{0x30, 0x81, 0x80}, 131, nil},
		{"two length octets", []byte{0x30, 0x82, 0x04, 0xF6, 0x30}, 4 + 0x04F6, nil},
		{"at the bound", []byte{0x30, 0x82, 0x3F, 0xFC}, MaxCertificateSize, nil},
		{"over the bound", []byte{0x30, 0x82, 0x3F, 0xFD}, 0, ErrCardResponse},
		{"huge", []byte{0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF}, 0, ErrCardResponse},
		{"five length octets", []byte{0x30, 0x85, 1, 0, 0, 0, 0}, 0, ErrCardResponse},
		{"empty", nil, 0, ErrCardResponse},
		{"tag only", []byte{0x30}, 0, ErrCardResponse},
		{"length octets missing", []byte{0x30, 0x82, 0x04}, 0, ErrCardResponse},
		{"not a SEQUENCE", []byte{0x31, 0x03}, 0, ErrBadCertificate},
		{"indefinite", []byte{0x30, 0x80}, 0, ErrBadCertificate},
		{"leading zero octet", []byte{0x30, 0x82, 0x00, 0x90}, 0, ErrBadCertificate},
		{"long form for short length", []byte{0x30, 0x81, 0x7F}, 0, ErrBadCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := derLength(tt.header)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("derLength(% X) error = %v, want %v", tt.header, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("derLength(% X) = %d, %v, want %d", tt.header, got, err, tt.want)
			}
		})
	}
}

func TestDERLengthOfFixture(t *testing.T) {
	der, err := os.ReadFile("testdata/auth-gen1.der")
	if err != nil {
		t.Fatal(err)
	}
	got, err := derLength(der[:4])
	if err != nil || got != len(der) {
		t.Fatalf("derLength(fixture header) = %d, %v, want %d", got, err, len(der))
	}
}

func FuzzDERLength(f *testing.F) {
	f.Add([]byte{0x30, 0x82, 0x04, 0xF6})
	f.Add([]byte{0x30, 0x05})
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte{0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, header []byte) {
		total, err := derLength(header)
		if err != nil {
			if !errors.Is(err, ErrCardResponse) && !errors.Is(err, ErrBadCertificate) {
				t.Fatalf("error %v is neither ErrCardResponse nor ErrBadCertificate", err)
			}
			if total != 0 {
				t.Fatalf("total %d with error", total)
			}
			return
		}
		if total < 2 || total > MaxCertificateSize {
			t.Fatalf("total %d out of range", total)
		}
		if header[0] != 0x30 {
			t.Fatalf("accepted tag 0x%02X", header[0])
		}
	})
}
