package registry

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/tobira-ac/tobira/internal/credential"
	"github.com/tobira-ac/tobira/policy"
)

// A record's key in the registry is its policy kind byte followed by its
// identity: the credential key (credential.Credential.Key) for an Entry,
// issuer key ID || serial for a Revocation and for a RenewalLink (its new
// certificate), the ID for a Person, Door, Area, AccessLevel, Schedule and
// Event, the date for a Holiday, "site" for the Site. The value holds the
// item as JSON; the ID fields that policy tags json:"-" come back from the
// key.

// itemKey returns the registry key of it.
func itemKey(it policy.Item) ([]byte, error) {
	switch v := it.(type) {
	case policy.Entry:
		k, err := v.Credential.Key()
		if err != nil {
			return nil, fmt.Errorf("credential: %w", err)
		}
		return append([]byte{byte(policy.KindCredential)}, k...), nil
	case policy.Revocation:
		return certKey(policy.KindRevoked, v.IssuerKeyID, v.Serial)
	case policy.RenewalLink:
		return certKey(policy.KindLink, v.New.IssuerKeyID, v.New.Serial)
	case policy.Person:
		return idKey(policy.KindPerson, v.ID)
	case policy.Site:
		return []byte{byte(policy.KindSite), 's', 'i', 't', 'e'}, nil
	case policy.Door:
		return idKey(policy.KindDoor, v.ID)
	case policy.Area:
		return idKey(policy.KindArea, v.ID)
	case policy.AccessLevel:
		return idKey(policy.KindLevel, v.ID)
	case policy.Schedule:
		return idKey(policy.KindSchedule, v.ID)
	case policy.Holiday:
		return idKey(policy.KindHoliday, v.Date)
	case policy.Event:
		return idKey(policy.KindEvent, v.ID)
	}
	return nil, fmt.Errorf("no registry record for %T", it)
}

// certKey is kind || issuer key ID || serial.
func certKey(kind policy.RecordKind, kid, serial []byte) ([]byte, error) {
	if len(kid) != credential.KeyIDLen || len(serial) == 0 {
		return nil, fmt.Errorf("certificate reference needs a %d-byte issuer key ID and a serial, got %d and %d bytes",
			credential.KeyIDLen, len(kid), len(serial))
	}
	k := append([]byte{byte(kind)}, kid...)
	return append(k, serial...), nil
}

// idKey is kind || id.
func idKey(kind policy.RecordKind, id string) ([]byte, error) {
	if id == "" {
		return nil, fmt.Errorf("%s has an empty ID", kind)
	}
	return append([]byte{byte(kind)}, id...), nil
}

// encodeItem returns the key and JSON value of it.
func encodeItem(it policy.Item) (key, value []byte, err error) {
	if key, err = itemKey(it); err != nil {
		return nil, nil, err
	}
	if value, err = json.Marshal(it); err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", describeKey(key), err)
	}
	return key, value, nil
}

// decodeItem rebuilds the item stored under key with JSON value.
func decodeItem(key, value []byte) (policy.Item, error) {
	if len(key) < 2 {
		return nil, fmt.Errorf("record key %x is too short", key)
	}
	id := string(key[1:])
	var it policy.Item
	var err error
	switch policy.RecordKind(key[0]) {
	case policy.KindCredential:
		it, err = decodeAs[policy.Entry](value, nil)
	case policy.KindRevoked:
		it, err = decodeAs[policy.Revocation](value, nil)
	case policy.KindLink:
		it, err = decodeAs[policy.RenewalLink](value, nil)
	case policy.KindPerson:
		it, err = decodeAs[policy.Person](value, nil)
	case policy.KindSite:
		it, err = decodeAs[policy.Site](value, nil)
	case policy.KindDoor:
		it, err = decodeAs(value, func(v *policy.Door) { v.ID = id })
	case policy.KindArea:
		it, err = decodeAs(value, func(v *policy.Area) { v.ID = id })
	case policy.KindLevel:
		it, err = decodeAs(value, func(v *policy.AccessLevel) { v.ID = id })
	case policy.KindSchedule:
		it, err = decodeAs(value, func(v *policy.Schedule) { v.ID = id })
	case policy.KindHoliday:
		it, err = decodeAs(value, func(v *policy.Holiday) { v.Date = id })
	case policy.KindEvent:
		it, err = decodeAs(value, func(v *policy.Event) { v.ID = id })
	default:
		return nil, fmt.Errorf("record key %x has unknown kind", key)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", describeKey(key), err)
	}
	return it, nil
}

// decodeAs unmarshals value into a T and, when setID is not nil, lets it
// restore the identity fields that policy keeps out of the JSON (they come
// from the key).
func decodeAs[T policy.Item](value []byte, setID func(*T)) (policy.Item, error) {
	var v T
	if err := json.Unmarshal(value, &v); err != nil {
		return nil, err
	}
	if setID != nil {
		setID(&v)
	}
	return v, nil
}

// describeKey renders a registry key for messages: "person p-1",
// "credential 01ab…". Certificate serials are not personal data; they are
// shown in hex.
func describeKey(k []byte) string {
	if len(k) == 0 {
		return "empty key"
	}
	kind := policy.RecordKind(k[0])
	rest := k[1:]
	switch kind {
	case policy.KindCredential, policy.KindRevoked, policy.KindLink:
		return fmt.Sprintf("%s %s", kind, hex.EncodeToString(rest))
	}
	if utf8.Valid(rest) {
		return fmt.Sprintf("%s %q", kind, rest)
	}
	return fmt.Sprintf("%s %x", kind, rest)
}
