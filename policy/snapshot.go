package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/tobira-ac/tobira/internal/credential"
)

// MaxPersonLen bounds an Entry's Person ID in bytes.
const MaxPersonLen = 128

// Errors about snapshots. Each is wrapped with the detail (entry index,
// versions, path) and can be matched with errors.Is.
var (
	// ErrInvalidSnapshot means a snapshot, or one of its entries, is
	// malformed: a zero version, a credential whose fields are out of range,
	// a serial with a leading zero byte, an empty or over-long person ID, a
	// credential listed twice in the allowlist, or (from ReadSnapshotJSON)
	// JSON that does not have the documented shape. The error names the
	// entry index and field.
	ErrInvalidSnapshot = errors.New("invalid snapshot")

	// ErrStaleVersion means ApplyFull was given a snapshot whose version is
	// not newer than the stored one. Versions only move forward, so a
	// replayed or reordered snapshot can never roll the allowlist back.
	ErrStaleVersion = errors.New("snapshot version is not newer than the stored one")
)

// Snapshot is a whole snapshot at one version, held in memory: the
// allowlist, the revocation set and, optionally, the rest of the rules
// model (docs/POLICY.md). Large snapshots are better streamed with
// SnapshotEncoder and Store.ApplyFullStream.
type Snapshot struct {
	// Version orders snapshots; it starts at 1 (0 means "no snapshot").
	Version uint64
	// Allow is the allowlist. A credential may appear at most once.
	Allow []Entry
	// Revoked is the revocation set. Duplicates are harmless and accepted.
	Revoked []Revocation

	// Site holds the site settings (nil: defaults).
	Site *Site
	// People are the people with validity windows and groups.
	People []Person
	// Links are the renewal links.
	Links []RenewalLink
	// Doors are the doors, with their groups, areas and modes.
	Doors []Door
	// Areas are the anti-passback areas.
	Areas []Area
	// Levels are the access levels.
	Levels []AccessLevel
	// Schedules are the schedules.
	Schedules []Schedule
	// Holidays are the site's holidays.
	Holidays []Holiday
	// Events are the ticketed events.
	Events []Event
}

// rulesItems lists the snapshot's records other than Allow and Revoked,
// each with the name of its place ("doors[2]") for errors.
func (s Snapshot) rulesItems() (names []string, items []Item) {
	if s.Site != nil {
		names, items = append(names, "site"), append(items, *s.Site)
	}
	names, items = appendNamed(names, items, "people", s.People)
	names, items = appendNamed(names, items, "links", s.Links)
	names, items = appendNamed(names, items, "doors", s.Doors)
	names, items = appendNamed(names, items, "areas", s.Areas)
	names, items = appendNamed(names, items, "levels", s.Levels)
	names, items = appendNamed(names, items, "schedules", s.Schedules)
	names, items = appendNamed(names, items, "holidays", s.Holidays)
	names, items = appendNamed(names, items, "events", s.Events)
	return names, items
}

// appendNamed appends list to items and the name of each one's place
// ("doors[2]") to names.
func appendNamed[T Item](names []string, items []Item, name string, list []T) ([]string, []Item) {
	for i, it := range list {
		names = append(names, fmt.Sprintf("%s[%d]", name, i))
		items = append(items, it)
	}
	return names, items
}

// Revocation is one revoked certificate: issuer key ID (20 bytes) + serial.
type Revocation struct {
	// IssuerKeyID is the issuing CA's key ID, credential.KeyIDLen bytes.
	IssuerKeyID []byte
	// Serial is the certificate serial, unsigned big-endian without leading
	// zero bytes, 1..credential.MaxSerialLen bytes.
	Serial []byte
}

// Validate checks every entry of s as ApplyFull does, without touching a
// store. The error wraps ErrInvalidSnapshot and names the first bad entry by
// its index (for example "allow[3]").
func (s Snapshot) Validate() error {
	_, err := s.prepare()
	return err
}

// keyValue is one bucket record ready to be written.
type keyValue struct {
	k, v []byte
	e    Entry
}

// prepared is a validated snapshot as sorted bucket records.
type prepared struct {
	allow   []keyValue // credential key -> person
	revoked [][]byte   // issuer key ID || serial, sorted, deduplicated
	rules   []Item     // the other records, validated, each (kind, key) once
}

// prepare validates s and builds its bucket records, sorted by key so that
// bbolt can fill pages sequentially.
func (s Snapshot) prepare() (prepared, error) {
	if s.Version == 0 {
		return prepared{}, fmt.Errorf("%w: version 0 is reserved for \"no snapshot\"", ErrInvalidSnapshot)
	}
	p := prepared{
		allow:   make([]keyValue, 0, len(s.Allow)),
		revoked: make([][]byte, 0, len(s.Revoked)),
	}
	index := make(map[string]int, len(s.Allow))
	for i, e := range s.Allow {
		k, err := entryKey(e.Credential)
		if err != nil {
			return prepared{}, fmt.Errorf("%w: allow[%d]: %w", ErrInvalidSnapshot, i, err)
		}
		if err := checkPerson(e.Person); err != nil {
			return prepared{}, fmt.Errorf("%w: allow[%d] (%s): %w", ErrInvalidSnapshot, i, e.Credential, err)
		}
		if j, dup := index[string(k)]; dup {
			return prepared{}, fmt.Errorf("%w: allow[%d] (%s) repeats allow[%d]", ErrInvalidSnapshot, i, e.Credential, j)
		}
		if _, err := e.recordValue(); err != nil {
			return prepared{}, fmt.Errorf("%w: allow[%d] (%s): %w", ErrInvalidSnapshot, i, e.Credential, err)
		}
		index[string(k)] = i
		p.allow = append(p.allow, keyValue{k: k, v: []byte(e.Person), e: e})
	}
	for i, r := range s.Revoked {
		k, err := revocationKey(r.IssuerKeyID, r.Serial)
		if err != nil {
			return prepared{}, fmt.Errorf("%w: revoked[%d]: %w", ErrInvalidSnapshot, i, err)
		}
		p.revoked = append(p.revoked, k)
	}
	names, items := s.rulesItems()
	seen := map[string]string{}
	for i, it := range items {
		k, _, err := recordOf(it)
		if err != nil {
			return prepared{}, fmt.Errorf("%w: %s: %w", ErrInvalidSnapshot, names[i], err)
		}
		id := string(append([]byte{byte(it.recordKind())}, k...))
		if prev, dup := seen[id]; dup {
			return prepared{}, fmt.Errorf("%w: %s repeats %s", ErrInvalidSnapshot, names[i], prev)
		}
		seen[id] = names[i]
		p.rules = append(p.rules, it)
	}
	slices.SortFunc(p.allow, func(a, b keyValue) int { return bytes.Compare(a.k, b.k) })
	slices.SortFunc(p.revoked, bytes.Compare)
	p.revoked = slices.CompactFunc(p.revoked, bytes.Equal)
	return p, nil
}

// encode writes the prepared snapshot as a full snapshot stream.
func (p prepared) encode(w io.Writer, version uint64) error {
	enc, err := NewSnapshotEncoder(w, version)
	if err != nil {
		return err
	}
	for _, kv := range p.allow {
		if err := enc.Put(kv.e); err != nil {
			return err
		}
	}
	for _, it := range p.rules {
		if err := enc.Put(it); err != nil {
			return err
		}
	}
	for _, k := range p.revoked {
		if err := enc.Put(Revocation{IssuerKeyID: k[:credential.KeyIDLen], Serial: k[credential.KeyIDLen:]}); err != nil {
			return err
		}
	}
	_, err = enc.Close()
	return err
}

// entryKey returns the allowlist key of c, refusing non-canonical serials
// (a leading zero byte would make a key the card can never produce) and
// free-area IDs that are not UTF-8 (they could not survive JSON).
func entryKey(c credential.Credential) ([]byte, error) {
	k, err := c.Key()
	if err != nil {
		return nil, err
	}
	switch c.Kind {
	case credential.KindCertSerial:
		if c.Serial[0] == 0 {
			return nil, fmt.Errorf("%w: serial %x has a leading zero byte", credential.ErrInvalid, c.Serial)
		}
	case credential.KindFreeArea:
		if !utf8.ValidString(c.ID) {
			return nil, fmt.Errorf("%w: free-area ID %q is not UTF-8", credential.ErrInvalid, c.ID)
		}
		if err := CheckText("free-area ID", c.ID); err != nil {
			return nil, fmt.Errorf("%w: %w", credential.ErrInvalid, err)
		}
	}
	return k, nil
}

// revocationKey returns issuerKeyID || serial after checking both, the
// allowlist key of the same certificate without its kind byte.
func revocationKey(issuerKeyID, serial []byte) ([]byte, error) {
	k, err := entryKey(credential.Credential{Kind: credential.KindCertSerial, IssuerKeyID: issuerKeyID, Serial: serial})
	if err != nil {
		return nil, err
	}
	return k[1:], nil
}

func checkPerson(p string) error {
	switch {
	case p == "":
		return errors.New("person is empty")
	case len(p) > MaxPersonLen:
		return fmt.Errorf("person is %d bytes, want at most %d", len(p), MaxPersonLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("person %q is not UTF-8", p)
	}
	return CheckText("person", p)
}
