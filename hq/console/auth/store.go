package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/boltfile"
	"github.com/tobira-ac/tobira/sync/proto"
)

// ErrInvalid marks a user, role, site list or password that is not
// acceptable.
var ErrInvalid = errors.New("invalid account")

// ErrNoUser means no account has the name asked for.
var ErrNoUser = errors.New("no such account")

// ErrExists means an account of that name exists already.
var ErrExists = errors.New("account exists")

// ErrLastAdmin refuses a change that would leave no enabled
// administrator granted every site: nobody could manage the accounts
// any more from the console.
var ErrLastAdmin = errors.New("the last administrator of every site cannot be disabled or demoted")

// User is one console account.
type User struct {
	// Name is the login name (a proto.CheckName name: letters, digits,
	// '-', '_', '.').
	Name string `json:"name"`
	// Role is what the account may do.
	Role Role `json:"role"`
	// Sites are the sites the account may see and act on; AllSites
	// ("*") is every site.
	Sites []string `json:"sites"`
	// PasswordHash is the argon2id hash of the password (HashPassword).
	PasswordHash string `json:"password_hash"`
	// MustChange makes the next login ask for a new password (set by a
	// one-time password from add-user or reset-password).
	MustChange bool `json:"must_change,omitempty"`
	// Disabled refuses the account's logins and ends its sessions (its
	// next request is refused).
	Disabled bool `json:"disabled,omitempty"`
	// Generation changes when the account's password is reset or the
	// account is disabled: a session started under another generation
	// is refused.
	Generation int64 `json:"generation,omitempty"`
	// Handle is the account's WebAuthn user handle: random bytes given
	// with its first passkey, never its name (a passkey login finds the
	// account by it).
	Handle []byte `json:"handle,omitempty"`
	// Passkeys are the account's registered passkeys.
	Passkeys []Passkey `json:"passkeys,omitempty"`
	// Updated is when the account last changed.
	Updated time.Time `json:"updated"`
}

// Passkey is one registered WebAuthn credential of an account.
type Passkey struct {
	// ID is the credential ID the authenticator gave.
	ID []byte `json:"id"`
	// Name is the label its owner gave it ("laptop", "YubiKey").
	Name string `json:"name"`
	// Created is when it was registered.
	Created time.Time `json:"created"`
	// Credential is the WebAuthn library's credential record (public
	// key, sign count, flags), as JSON.
	Credential json.RawMessage `json:"credential"`
}

// Admin reports whether u is an enabled administrator of every site: an
// account that can manage all the others.
func (u User) Admin() bool { return u.Role == Administrator && !u.Disabled && u.AllSites() }

// Passkey returns the index of u's passkey with credential ID id, or -1.
func (u User) Passkey(id []byte) int {
	return slices.IndexFunc(u.Passkeys, func(p Passkey) bool { return string(p.ID) == string(id) })
}

// CanSite reports whether u may see and act on site.
func (u User) CanSite(site string) bool {
	return slices.Contains(u.Sites, AllSites) || slices.Contains(u.Sites, site)
}

// AllSites reports whether u is granted every site.
func (u User) AllSites() bool { return slices.Contains(u.Sites, AllSites) }

// Validate checks u's name, role and sites.
func (u User) Validate() error {
	if err := proto.CheckName(u.Name); err != nil {
		return fmt.Errorf("%w: name: %w", ErrInvalid, err)
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		return err
	}
	if len(u.Sites) == 0 {
		return fmt.Errorf("%w: user %s has no site (give %q for every site)", ErrInvalid, u.Name, AllSites)
	}
	for _, s := range u.Sites {
		if s == AllSites {
			continue
		}
		if err := proto.CheckName(s); err != nil {
			return fmt.Errorf("%w: user %s: site: %w", ErrInvalid, u.Name, err)
		}
	}
	return nil
}

// The buckets of the accounts in a console file.
var (
	bucketUsers    = []byte("users")
	bucketSessions = []byte("sessions")
)

// Format is the format marker of the console's bbolt file (the accounts
// here, the audit log in package audit).
var Format = []byte("tobira-console/1")

// Store keeps the accounts and the console's sessions in a bbolt file.
// Its Find, Commit and Delete make it an scs session store; tokens are
// kept as their SHA-256, so the file holds no usable session.
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

// NewStore returns the accounts of db (opened by the caller, which also
// closes it), creating their buckets.
func NewStore(db *bolt.DB, now func() time.Time) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error { return boltfile.Init(tx, Format, bucketUsers, bucketSessions) })
	if err != nil {
		return nil, fmt.Errorf("accounts in %s: %w", db.Path(), err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}, nil
}

// User returns the account name.
func (s *Store) User(_ context.Context, name string) (User, error) {
	var u User
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("%w: %q", ErrNoUser, name)
		}
		return json.Unmarshal(v, &u)
	})
	return u, err
}

// UserByHandle returns the account whose WebAuthn user handle is h (a
// passkey login), or an error wrapping ErrNoUser. It reads every
// account: a console has tens of them, not thousands.
func (s *Store) UserByHandle(ctx context.Context, h []byte) (User, error) {
	return FindHandle(ctx, s.Users, h)
}

// FindHandle returns the account of users whose Handle is h.
func FindHandle(ctx context.Context, users func(context.Context) ([]User, error), h []byte) (User, error) {
	all, err := users(ctx)
	if err != nil {
		return User{}, err
	}
	for _, u := range all {
		if len(u.Handle) > 0 && string(u.Handle) == string(h) {
			return u, nil
		}
	}
	return User{}, fmt.Errorf("%w: no account has this passkey's user handle", ErrNoUser)
}

// Users returns every account, sorted by name.
func (s *Store) Users(context.Context) ([]User, error) {
	var out []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error {
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
			return nil
		})
	})
	return out, err
}

// Add creates the account u; an existing one of that name is ErrExists.
func (s *Store) Add(_ context.Context, u User) error {
	return s.put(u, func(old *User) error {
		if old != nil {
			return fmt.Errorf("%w: %q", ErrExists, u.Name)
		}
		return nil
	})
}

// Update replaces the account u.Name, which must exist. It refuses
// (ErrLastAdmin) to take away the last enabled administrator of every
// site.
func (s *Store) Update(_ context.Context, u User) error {
	return s.put(u, func(old *User) error {
		if old == nil {
			return fmt.Errorf("%w: %q", ErrNoUser, u.Name)
		}
		return nil
	})
}

// put validates u and stores it if check accepts the old value (nil:
// none) and the change leaves an administrator (CheckLastAdmin).
func (s *Store) put(u User, check func(old *User) error) error {
	if err := u.Validate(); err != nil {
		return err
	}
	u.Updated = s.now().UTC()
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		var old *User
		if ov := b.Get([]byte(u.Name)); ov != nil {
			old = new(User)
			if err := json.Unmarshal(ov, old); err != nil {
				return fmt.Errorf("account %q: %w", u.Name, err)
			}
		}
		if err := check(old); err != nil {
			return err
		}
		if err := CheckLastAdmin(old, u, func() (int, error) { return countAdmins(b) }); err != nil {
			return err
		}
		return b.Put([]byte(u.Name), v)
	})
}

// CheckLastAdmin returns ErrLastAdmin when replacing old by u takes away
// an administrator of every site and admins (which counts them, u's old
// self included) says it is the last one. Stores call it in the
// transaction that writes u.
func CheckLastAdmin(old *User, u User, admins func() (int, error)) error {
	if old == nil || !old.Admin() || u.Admin() {
		return nil
	}
	n, err := admins()
	if err != nil {
		return fmt.Errorf("count the administrators: %w", err)
	}
	if n <= 1 {
		return fmt.Errorf("%w (%s)", ErrLastAdmin, u.Name)
	}
	return nil
}

// countAdmins counts the enabled administrators of every site in b.
func countAdmins(b *bolt.Bucket) (int, error) {
	n := 0
	err := b.ForEach(func(_, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		if u.Admin() {
			n++
		}
		return nil
	})
	return n, err
}

// sessionKey is the key of a session token.
func sessionKey(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// Find returns the data of a live session (scs.Store).
func (s *Store) Find(token string) ([]byte, bool, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSessions).Get(sessionKey(token))
		if len(v) < 8 || s.now().UnixNano() >= int64(binary.BigEndian.Uint64(v)) {
			return nil
		}
		out = slices.Clone(v[8:])
		return nil
	})
	return out, out != nil, err
}

// Commit stores a session's data until expiry (scs.Store).
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	v := binary.BigEndian.AppendUint64(nil, uint64(expiry.UnixNano()))
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Put(sessionKey(token), append(v, b...))
	})
}

// Delete ends a session (scs.Store).
func (s *Store) Delete(token string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete(sessionKey(token))
	})
}

// PruneSessions deletes expired sessions and returns how many.
func (s *Store) PruneSessions(context.Context) (int, error) {
	n := 0
	now := s.now().UnixNano()
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketSessions).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(v) < 8 || now >= int64(binary.BigEndian.Uint64(v)) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// EndSessions deletes every session (after a password reset: whoever
// held the old password is logged out).
func (s *Store) EndSessions(context.Context) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketSessions); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketSessions)
		return err
	})
}
