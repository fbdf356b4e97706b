package firmware

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a release version MAJOR.MINOR.PATCH of decimal numbers. It
// doubles as a directory name under releases/, so its syntax is strict: no
// prefix, no pre-release or build suffix, no leading zeros.
type Version struct {
	Major, Minor, Patch uint32
}

// ParseVersion parses "MAJOR.MINOR.PATCH". Errors wrap ErrMalformed.
func ParseVersion(s string) (Version, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Version{}, fmt.Errorf("%w: version %q: want MAJOR.MINOR.PATCH", ErrMalformed, s)
	}
	var n [3]uint32
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') || strings.TrimLeft(p, "0123456789") != "" {
			return Version{}, fmt.Errorf("%w: version %q: part %q is not a decimal number without leading zeros", ErrMalformed, s, p)
		}
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Version{}, fmt.Errorf("%w: version %q: %w", ErrMalformed, s, err)
		}
		n[i] = uint32(v)
	}
	return Version{n[0], n[1], n[2]}, nil
}

// String formats v as MAJOR.MINOR.PATCH.
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for _, d := range [3][2]uint32{{v.Major, w.Major}, {v.Minor, w.Minor}, {v.Patch, w.Patch}} {
		switch {
		case d[0] < d[1]:
			return -1
		case d[0] > d[1]:
			return 1
		}
	}
	return 0
}

// IsZero reports whether v is 0.0.0, which stands for "no version".
func (v Version) IsZero() bool { return v == Version{} }

// optVersion parses s, treating "" as the zero Version.
func optVersion(field, s string) (Version, error) {
	if s == "" {
		return Version{}, nil
	}
	v, err := ParseVersion(s)
	if err != nil {
		return Version{}, fmt.Errorf("%s: %w", field, err)
	}
	return v, nil
}
