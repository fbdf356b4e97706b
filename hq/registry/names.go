package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/tobira-ac/tobira/policy"
)

// People's names are personal data that only HQ keeps: they are not
// policy records, never go into a snapshot or a delta, and do not change
// a site's revision. The console shows them to the roles allowed (it
// asks Name for an event's credential).

// MaxNameLen bounds a person's name, in bytes.
const MaxNameLen = 256

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
	err := r.b.SetNames(context.Background(), site, names)
	if err != nil {
		return fmt.Errorf("set %d names at site %s in %s: %w", len(names), site, r.name, err)
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
	ctx := context.Background()
	var name string
	it, err := r.getKey(ctx, site, append([]byte{byte(policy.KindCredential)}, key...))
	if e, ok := it.(policy.Entry); ok && err == nil && e.Person != "" {
		name, err = r.b.Name(ctx, site, e.Person)
	}
	if err != nil {
		return "", false, fmt.Errorf("name of credential %s at site %s in %s: %w", credential, site, r.name, err)
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
