package registry

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/tobira-ac/tobira/policy"
)

// PersonCredentials returns the credentials of person at site: the hex of
// the keys of the live credential records (policy.Entry) naming the
// person, as events carry them, in key order. A person with none (unknown,
// or every credential deleted) has an empty list. Events of credentials
// deleted since are not named by it.
func (r *Registry) PersonCredentials(ctx context.Context, site, person string) ([]string, error) {
	if err := checkSite(site); err != nil {
		return nil, err
	}
	keys, err := r.b.PersonKeys(ctx, site, person)
	if err != nil {
		return nil, fmt.Errorf("credentials of person %q at site %s in %s: %w", person, site, r.name, err)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if len(k) < 2 || k[0] != byte(policy.KindCredential) {
			return nil, fmt.Errorf("credentials of person %q at site %s in %s: key %x is not a credential's", person, site, r.name, k)
		}
		out = append(out, hex.EncodeToString(k[1:]))
	}
	return out, nil
}
