package reader

import "fmt"

// MaxCertificateSize bounds the certificate length read from a card. A real
// user-authentication certificate is about 1.6 KB; 16 KiB leaves ample room
// while keeping a lying length header from making the reader fetch
// megabytes.
const MaxCertificateSize = 16 * 1024

// derLength reads the header of a DER-encoded SEQUENCE (a certificate) and
// returns the total encoded length: tag, length octets and contents. Only
// the definite form is accepted. A header that is not a minimal definite
// SEQUENCE header fails with ErrBadCertificate; a header too short to hold
// its own length, or a total above MaxCertificateSize, fails with
// ErrCardResponse.
func derLength(header []byte) (total int, err error) {
	if len(header) < 2 {
		return 0, fmt.Errorf("%w: DER header of %d bytes is truncated", ErrCardResponse, len(header))
	}
	if header[0] != 0x30 {
		return 0, fmt.Errorf("%w: DER tag 0x%02X, want SEQUENCE (0x30)", ErrBadCertificate, header[0])
	}
	first := header[1]
	if first < 0x80 {
		return 2 + int(first), nil
	}
	n := int(first & 0x7F)
	switch {
	case n == 0:
		return 0, fmt.Errorf("%w: indefinite DER length", ErrBadCertificate)
	case n > 4:
		return 0, fmt.Errorf("%w: DER length of %d octets is oversize", ErrCardResponse, n)
	case len(header) < 2+n:
		return 0, fmt.Errorf("%w: DER header of %d bytes is truncated, length needs %d octets", ErrCardResponse, len(header), n)
	case header[2] == 0:
		return 0, fmt.Errorf("%w: DER length has a leading zero octet", ErrBadCertificate)
	}
	var length uint64
	for _, b := range header[2 : 2+n] {
		length = length<<8 | uint64(b)
	}
	if length < 0x80 {
		return 0, fmt.Errorf("%w: DER length %d is not in the short form", ErrBadCertificate, length)
	}
	if length > MaxCertificateSize {
		return 0, fmt.Errorf("%w: DER length %d exceeds %d bytes", ErrCardResponse, length, MaxCertificateSize)
	}
	total = 2 + n + int(length)
	if total > MaxCertificateSize {
		return 0, fmt.Errorf("%w: DER object of %d bytes exceeds %d bytes", ErrCardResponse, total, MaxCertificateSize)
	}
	return total, nil
}
