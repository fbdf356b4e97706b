package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's cost parameters.
type Params struct {
	// Time is the number of passes.
	Time uint32
	// MemoryKiB is the memory used, in KiB.
	MemoryKiB uint32
	// Threads is the parallelism.
	Threads uint8
}

// DefaultParams are RFC 9106's second recommended option (64 MiB, three
// passes), sized for a server: a fraction of a second a login.
var DefaultParams = Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

// MinPasswordLen is the shortest password an account may have.
const MinPasswordLen = 12

// HashPassword returns the argon2id hash of pw in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash) with a random salt.
func HashPassword(pw string, p Params) (string, error) {
	if len(pw) < MinPasswordLen {
		return "", fmt.Errorf("%w: password shorter than %d characters", ErrInvalid, MinPasswordLen)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt) // crypto/rand.Read never fails
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64(salt), b64(key)), nil
}

// CheckPassword reports whether pw matches hash (made by HashPassword,
// with whatever parameters it names), in constant time.
func CheckPassword(hash, pw string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("%w: not an argon2id hash", ErrInvalid)
	}
	var v int
	var p Params
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, fmt.Errorf("%w: argon2id version %q", ErrInvalid, parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, fmt.Errorf("%w: argon2id parameters %q: %w", ErrInvalid, parts[3], err)
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, fmt.Errorf("%w: argon2id salt or key is not base64", ErrInvalid)
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// RandomPassword returns a fresh random password: 26 base32 characters
// (130 bits, crypto/rand.Text).
func RandomPassword() string { return rand.Text() }
