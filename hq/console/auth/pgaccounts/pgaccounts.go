// Package pgaccounts keeps the console's accounts and sessions in
// PostgreSQL (the tables of migration 00006, applied by "tobira-hq
// migrate" with HQ's own schema): the same accounts as auth.Store's bbolt
// file, shared by every tobira-hq replica and by "tobira-hq console"
// commands run while "tobira-hq serve" runs.
package pgaccounts

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq/console/auth"
)

// ErrSchema means the database lacks the console's tables: run
// "tobira-hq migrate".
var ErrSchema = errors.New("the database has no console accounts table: run \"tobira-hq migrate\"")

// Store is the console's accounts and sessions on PostgreSQL. It is safe
// for concurrent use, also by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// Open connects to the database at url (postgres://...) and checks that
// it has the console's tables. now stamps the accounts (nil: time.Now).
func Open(ctx context.Context, url string, now func() time.Time) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open console accounts on PostgreSQL: %w", err)
	}
	var ok bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('console_users') IS NOT NULL`).Scan(&ok); err != nil || !ok {
		pool.Close()
		if err == nil {
			err = ErrSchema
		}
		return nil, fmt.Errorf("open console accounts on PostgreSQL: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now}, nil
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// columns are the console_users columns, in scanUser's order.
const columns = `name, role, sites, password_hash, must_change, disabled, generation, handle, passkeys, updated`

// scanUser reads one console_users row.
func scanUser(row pgx.Row) (auth.User, error) {
	var u auth.User
	var role string
	var keys []byte
	err := row.Scan(&u.Name, &role, &u.Sites, &u.PasswordHash, &u.MustChange, &u.Disabled, &u.Generation, &u.Handle, &keys, &u.Updated)
	if err != nil {
		return auth.User{}, err
	}
	u.Role = auth.Role(role)
	if err := json.Unmarshal(keys, &u.Passkeys); err != nil {
		return auth.User{}, fmt.Errorf("account %q: passkeys: %w", u.Name, err)
	}
	return u, nil
}

// User returns the account name, or an error wrapping auth.ErrNoUser.
func (s *Store) User(ctx context.Context, name string) (auth.User, error) {
	return s.one(ctx, `SELECT `+columns+` FROM console_users WHERE name = $1`, name)
}

// UserByHandle returns the account whose WebAuthn user handle is h.
func (s *Store) UserByHandle(ctx context.Context, h []byte) (auth.User, error) {
	return s.one(ctx, `SELECT `+columns+` FROM console_users WHERE handle = $1`, h)
}

// one returns the account query selects by key.
func (s *Store) one(ctx context.Context, query string, key any) (auth.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, query, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return auth.User{}, fmt.Errorf("%w: %v", auth.ErrNoUser, key)
	}
	if err != nil {
		return auth.User{}, fmt.Errorf("console account %v: %w", key, err)
	}
	return u, nil
}

// Users returns every account, sorted by name.
func (s *Store) Users(ctx context.Context) ([]auth.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+columns+` FROM console_users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("console accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (auth.User, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("console accounts: %w", err)
	}
	return out, nil
}

// Add creates the account u; an existing one of that name is
// auth.ErrExists.
func (s *Store) Add(ctx context.Context, u auth.User) error {
	return s.put(ctx, u, func(old *auth.User) error {
		if old != nil {
			return fmt.Errorf("%w: %q", auth.ErrExists, u.Name)
		}
		return nil
	})
}

// Update replaces the account u.Name, which must exist. It refuses
// (auth.ErrLastAdmin) to take away the last enabled administrator of
// every site.
func (s *Store) Update(ctx context.Context, u auth.User) error {
	return s.put(ctx, u, func(old *auth.User) error {
		if old == nil {
			return fmt.Errorf("%w: %q", auth.ErrNoUser, u.Name)
		}
		return nil
	})
}

// put validates u and writes it if check accepts the old row (nil: none)
// and the change leaves an administrator. The table is locked against
// other writers for the transaction, so that two administrators demoting
// each other at once cannot both succeed.
func (s *Store) put(ctx context.Context, u auth.User, check func(old *auth.User) error) error {
	if err := u.Validate(); err != nil {
		return err
	}
	u.Updated = s.now().UTC()
	keys, err := json.Marshal(u.Passkeys)
	if err != nil {
		return err
	}
	if u.Passkeys == nil {
		keys = []byte("[]")
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE console_users IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var old *auth.User
		o, err := scanUser(tx.QueryRow(ctx, `SELECT `+columns+` FROM console_users WHERE name = $1`, u.Name))
		switch {
		case err == nil:
			old = &o
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err := check(old); err != nil {
			return err
		}
		admins := func() (int, error) {
			var n int
			err := tx.QueryRow(ctx, `SELECT count(*) FROM console_users WHERE role = $1 AND NOT disabled AND '*' = ANY(sites)`, string(auth.Administrator)).Scan(&n)
			return n, err
		}
		if err := auth.CheckLastAdmin(old, u, admins); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO console_users (`+columns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (name) DO UPDATE SET role = $2, sites = $3, password_hash = $4, must_change = $5, disabled = $6,
			generation = $7, handle = $8, passkeys = $9, updated = $10`,
			u.Name, string(u.Role), u.Sites, u.PasswordHash, u.MustChange, u.Disabled, u.Generation, nilIfEmpty(u.Handle), keys, u.Updated)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" {
			return fmt.Errorf("%w: account %q: another account has its passkey user handle", auth.ErrInvalid, u.Name)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("console account %q: %w", u.Name, err)
	}
	return nil
}

// nilIfEmpty returns nil for an empty handle (NULL: the unique index
// allows many).
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// tokenHash is the key of a session token.
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// sessionTimeout bounds a session call of scs's Store, which has no
// context.
const sessionTimeout = 10 * time.Second

// Find returns the data of a live session (scs.Store).
func (s *Store) Find(token string) ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	return s.FindCtx(ctx, token)
}

// FindCtx returns the data of a live session (scs.CtxStore).
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	var b []byte
	err := s.pool.QueryRow(ctx, `SELECT data FROM console_sessions WHERE token_hash = $1 AND expiry > $2`, tokenHash(token), s.now()).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("console session: %w", err)
	}
	return b, true, nil
}

// Commit stores a session's data until expiry (scs.Store).
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	return s.CommitCtx(ctx, token, b, expiry)
}

// CommitCtx stores a session's data until expiry (scs.CtxStore).
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO console_sessions (token_hash, data, expiry) VALUES ($1, $2, $3)
		ON CONFLICT (token_hash) DO UPDATE SET data = $2, expiry = $3`, tokenHash(token), b, expiry)
	if err != nil {
		return fmt.Errorf("console session: %w", err)
	}
	return nil
}

// Delete ends a session (scs.Store).
func (s *Store) Delete(token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), sessionTimeout)
	defer cancel()
	return s.DeleteCtx(ctx, token)
}

// DeleteCtx ends a session (scs.CtxStore).
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE token_hash = $1`, tokenHash(token)); err != nil {
		return fmt.Errorf("console session: %w", err)
	}
	return nil
}

// PruneSessions deletes expired sessions and returns how many.
func (s *Store) PruneSessions(ctx context.Context) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expiry <= $1`, s.now())
	if err != nil {
		return 0, fmt.Errorf("console sessions: prune: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// EndSessions deletes every session (after a password reset).
func (s *Store) EndSessions(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions`); err != nil {
		return fmt.Errorf("console sessions: end: %w", err)
	}
	return nil
}
