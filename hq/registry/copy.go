package registry

import (
	"context"
	"errors"
	"fmt"
)

// Restorer is a Backend that takes a site copied whole from another
// registry, with its revision, delta floor, tombstones and change log, so
// that the devices' snapshot versions stay valid and deltas from them
// keep working.
type Restorer interface {
	// Restore stores site at rev with floor, its content hash at rev
	// (when hash is not nil) and every record recs yields, in one
	// transaction, unless the site exists already: then it stores
	// nothing and returns false.
	Restore(ctx context.Context, site string, rev, floor uint64, hash *[32]byte,
		recs func(yield func(key []byte, rec Record) error) error) (bool, error)
}

// NameLister is a Backend that lists every person's name.
type NameLister interface {
	// EachName calls fn for every name kept.
	EachName(ctx context.Context, fn func(site, person, name string) error) error
}

// Copied counts what Copy copied.
type Copied struct {
	// Sites counts the sites copied; Skipped those dst had already.
	Sites, Skipped int
	// Records counts the records copied, tombstones included.
	Records int
	// Pending counts the pending enrollments dst did not hold before.
	Pending int
	// Names counts the names dst did not hold before.
	Names int
}

// ErrCannotRestore means Copy's destination cannot take whole sites.
var ErrCannotRestore = errors.New("the destination registry cannot take copied sites")

// Copy copies src into dst: every site dst does not hold (each in one
// transaction, with its revision, so that devices keep their versions),
// every pending enrollment (by its (site, device, seq)) and every
// person's name that dst lacks. Running it again copies nothing twice;
// sites dst has already are skipped, changed since or not.
func Copy(ctx context.Context, dst, src *Registry) (Copied, error) {
	var n Copied
	rest, ok := dst.b.(Restorer)
	if !ok {
		return n, fmt.Errorf("copy %s into %s: %w", src.name, dst.name, ErrCannotRestore)
	}
	sites, err := src.b.Sites(ctx)
	if err != nil {
		return n, fmt.Errorf("copy %s: list sites: %w", src.name, err)
	}
	for _, site := range sites {
		if err := copySite(ctx, rest, src.b, site, &n); err != nil {
			return n, fmt.Errorf("copy site %s of %s into %s: %w", site, src.name, dst.name, err)
		}
	}
	if err := copyPending(ctx, dst.b, src.b, &n); err != nil {
		return n, fmt.Errorf("copy pending enrollments of %s into %s: %w", src.name, dst.name, err)
	}
	if err := copyNames(ctx, dst.b, src.b, &n); err != nil {
		return n, fmt.Errorf("copy names of %s into %s: %w", src.name, dst.name, err)
	}
	return n, nil
}

// copySite copies one site of src into dst unless dst has it.
func copySite(ctx context.Context, dst Restorer, src Backend, site string, n *Copied) error {
	return src.View(ctx, site, func(v View) error {
		if v.Revision() == 0 {
			return nil // a site bucket without records
		}
		var hash *[32]byte
		if h, ok, err := v.Hash(ctx, v.Revision()); err != nil {
			return err
		} else if ok {
			hash = &h
		}
		recs := 0
		copied, err := dst.Restore(ctx, site, v.Revision(), v.Floor(), hash, func(yield func([]byte, Record) error) error {
			return v.Changed(ctx, 0, func(k []byte, rec Record, _ bool) error {
				recs++
				return yield(k, rec)
			})
		})
		if err != nil {
			return err
		}
		if copied {
			n.Sites++
			n.Records += recs
		} else {
			n.Skipped++
		}
		return nil
	})
}

// copyPending adds src's pending enrollments to dst.
func copyPending(ctx context.Context, dst, src Backend, n *Copied) error {
	list, err := src.PendingList(ctx)
	if err != nil {
		return err
	}
	for _, p := range list {
		if _, err := dst.PendingByID(ctx, p.ID); err == nil {
			continue // copied before
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		id, err := dst.AddPending(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.ID, err)
		}
		if id == p.ID {
			n.Pending++
		}
	}
	return nil
}

// copyNames sets the names dst lacks to src's.
func copyNames(ctx context.Context, dst, src Backend, n *Copied) error {
	l, ok := src.(NameLister)
	if !ok {
		return fmt.Errorf("%s cannot list its names", src)
	}
	return l.EachName(ctx, func(site, person, name string) error {
		have, err := dst.Name(ctx, site, person)
		if err != nil || have != "" {
			return err
		}
		n.Names++
		return dst.SetNames(ctx, site, map[string]string{person: name})
	})
}
