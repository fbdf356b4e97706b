package registry

import (
	"encoding/hex"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/policy"
)

// People's names are personal data that only HQ keeps: they are not
// policy records, never go into a snapshot or a delta, and do not change
// a site's revision. The console shows them to the roles allowed (it
// asks Name for an event's credential).
var bucketNames = []byte("names")

// MaxNameLen bounds a person's name, in bytes.
const MaxNameLen = 256

// nameKey is the key of person's name at site.
func nameKey(site, person string) []byte { return []byte(site + "\x00" + person) }

// SetNames sets the names of people of site in one transaction: person ID
// -> name, where "" forgets the name. People need not have a record (yet).
func (r *Registry) SetNames(site string, names map[string]string) error {
	if err := checkSite(site); err != nil {
		return err
	}
	for person, name := range names {
		if person == "" || len(name) > MaxNameLen || strings.ContainsAny(person, "\x00") {
			return fmt.Errorf("%w: name of person %q at site %s: empty person ID, or name over %d bytes",
				ErrInvalid, person, site, MaxNameLen)
		}
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNames)
		for person, name := range names {
			var err error
			if name == "" {
				err = b.Delete(nameKey(site, person))
			} else {
				err = b.Put(nameKey(site, person), []byte(name))
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set %d names at site %s in %s: %w", len(names), site, r.path, err)
	}
	return nil
}

// PersonName returns the name of the person holding credential (the hex
// of its key, as events carry it) at site, and false when the credential
// has no record, no person, or the person no name.
func (r *Registry) PersonName(site, credential string) (string, bool, error) {
	key, err := hex.DecodeString(credential)
	if err != nil {
		return "", false, fmt.Errorf("%w: credential %q: %w", ErrInvalid, credential, err)
	}
	var name string
	err = r.db.View(func(tx *bolt.Tx) error {
		sb, _ := siteBucket(tx, site, false)
		if sb == nil {
			return nil
		}
		k := append([]byte{byte(policy.KindCredential)}, key...)
		v := sb.Bucket(bucketRec).Get(k)
		if v == nil {
			return nil
		}
		it, err := decodeRecord(k, v)
		if err != nil {
			return err
		}
		if e, ok := it.(policy.Entry); ok && e.Person != "" {
			name = string(tx.Bucket(bucketNames).Get(nameKey(site, e.Person)))
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("name of credential %s at site %s in %s: %w", credential, site, r.path, err)
	}
	return name, name != "", nil
}

// Name is PersonName for the console (console.Names): an error is logged
// and reads as no name.
func (r *Registry) Name(site, credential string) (string, bool) {
	name, ok, err := r.PersonName(site, credential)
	if err != nil {
		r.log.Warn("registry: name lookup", "site", site, "err", err)
	}
	return name, ok
}
