package pgstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tobira-ac/tobira/hq/registry"
	"github.com/tobira-ac/tobira/policy"
)

// The registry on PostgreSQL (migration 00003): registry_sites holds each
// site's revision and delta floor, registry_records every record (live,
// or a tombstone with its deleting revision) with its kind, key, readable
// ID, item JSON and revisions, registry_hashes the cached content hashes,
// registry_pending the enrollments waiting for approval (unique by site,
// device and seq), registry_names people's names.
//
// A change locks the site's row (SELECT ... FOR NO KEY UPDATE) for its whole
// transaction: the changes of a site run one after the other on every
// replica, each under the next revision. Reads run in a REPEATABLE READ
// read-only transaction, one consistent view, and read records in keyset
// pages of registryPage rows, so that a snapshot of a big site streams.

// registryPage is how many rows a snapshot or delta reads at a time.
const registryPage = 4096

// OpenRegistry connects to the database at url (postgres://...), checks
// that its schema is up to date (ErrSchemaBehind otherwise) and returns the
// registry kept there. Several processes may open it at once.
func OpenRegistry(ctx context.Context, url string, opts registry.Options) (*registry.Registry, error) {
	pool, err := connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL registry %s: %w", redact(url), err)
	}
	return registry.New(&registryBackend{pool: pool, name: redact(url)}, opts), nil
}

// registryBackend is registry.Backend on PostgreSQL.
type registryBackend struct {
	pool *pgxpool.Pool
	name string
}

var _ registry.Backend = (*registryBackend)(nil)

// Close implements registry.Backend.
func (b *registryBackend) Close() error {
	b.pool.Close()
	return nil
}

// String implements registry.Backend.
func (b *registryBackend) String() string { return b.name }

// splitKey splits a registry key into its kind and identity.
func splitKey(k []byte) (string, []byte, error) {
	if len(k) < 2 {
		return "", nil, fmt.Errorf("registry key %x is too short", k)
	}
	return string(k[:1]), k[1:], nil
}

// joinKey is splitKey's inverse.
func joinKey(kind string, id []byte) []byte { return append([]byte(kind), id...) }

// readableID is the identity of a record to read in SQL.
func readableID(kind string, id []byte) string {
	switch policy.RecordKind(kind[0]) {
	case policy.KindCredential, policy.KindRevoked, policy.KindLink:
		return hex.EncodeToString(id)
	}
	if !utf8.Valid(id) || bytes.IndexByte(id, 0) >= 0 {
		return hex.EncodeToString(id)
	}
	return string(id)
}

// Change implements registry.Backend.
func (b *registryBackend) Change(ctx context.Context, site string, fn func(registry.SiteTx) (bool, error)) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO registry_sites (site) VALUES ($1) ON CONFLICT DO NOTHING`, site); err != nil {
			return fmt.Errorf("create site: %w", err)
		}
		c := &siteTx{tx: tx, site: site}
		var rev, floor int64
		// NO KEY UPDATE: changes of the site wait for each other, but the
		// foreign-key checks of PutHash (KEY SHARE) do not wait for them.
		err := tx.QueryRow(ctx, `SELECT rev, floor FROM registry_sites WHERE site = $1 FOR NO KEY UPDATE`, site).Scan(&rev, &floor)
		if err != nil {
			return fmt.Errorf("lock site: %w", err)
		}
		c.rev, c.floor = uint64(rev)+1, uint64(floor)
		changed, err := fn(c)
		if err != nil || !changed {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE registry_sites SET rev = $2, floor = $3 WHERE site = $1`, site, int64(c.rev), int64(c.floor))
		return err
	})
}

// siteTx is registry.SiteTx in a PostgreSQL transaction holding the
// site's row lock.
type siteTx struct {
	tx         pgx.Tx
	site       string
	rev, floor uint64
}

// Rev implements registry.SiteTx.
func (c *siteTx) Rev() uint64 { return c.rev }

// Floor implements registry.SiteTx.
func (c *siteTx) Floor() uint64 { return c.floor }

// SetFloor implements registry.SiteTx.
func (c *siteTx) SetFloor(f uint64) { c.floor = f }

// recordColumns are the columns scanRecord reads.
const recordColumns = `kind, key, body, rev, created, deleted, hist`

// scanRecord reads a row of recordColumns.
func scanRecord(row pgx.Row) ([]byte, registry.Record, error) {
	var kind string
	var id, body, hist []byte
	var rev, created, deleted int64
	if err := row.Scan(&kind, &id, &body, &rev, &created, &deleted, &hist); err != nil {
		return nil, registry.Record{}, err
	}
	rec := registry.Record{Rev: uint64(rev), Created: uint64(created), Deleted: uint64(deleted), Item: body}
	if len(hist) > 0 {
		if err := json.Unmarshal(hist, &rec.Hist); err != nil {
			return nil, registry.Record{}, fmt.Errorf("decode history of %s %x: %w", kind, id, err)
		}
	}
	return joinKey(kind, id), rec, nil
}

// Lookup implements registry.SiteTx.
func (c *siteTx) Lookup(ctx context.Context, keys [][]byte) ([]registry.Stored, error) {
	kinds, ids := make([]string, len(keys)), make([][]byte, len(keys))
	at := make(map[string]int, len(keys))
	for i, k := range keys {
		var err error
		if kinds[i], ids[i], err = splitKey(k); err != nil {
			return nil, err
		}
		at[string(k)] = i
	}
	rows, err := c.tx.Query(ctx, `SELECT `+recordColumns+` FROM registry_records
		WHERE site = $1 AND (kind, key) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))`, c.site, kinds, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d records: %w", len(keys), err)
	}
	defer rows.Close()
	out := make([]registry.Stored, len(keys))
	for rows.Next() {
		k, rec, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		st := registry.Live
		if rec.Deleted != 0 {
			st = registry.Dead
		}
		out[at[string(k)]] = registry.Stored{State: st, Record: rec}
	}
	return out, rows.Err()
}

// Write implements registry.SiteTx: one upsert of every write.
func (c *siteTx) Write(ctx context.Context, ws []registry.Write) error {
	if len(ws) == 0 {
		return nil
	}
	n := len(ws)
	kinds, ids, readable, bodies, hists := make([]string, n), make([][]byte, n), make([]string, n), make([]string, n), make([]string, n)
	revs, created, deleted := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, w := range ws {
		var err error
		if kinds[i], ids[i], err = splitKey(w.Key); err != nil {
			return err
		}
		readable[i], bodies[i] = readableID(kinds[i], ids[i]), string(w.New.Item)
		revs[i], created[i], deleted[i] = int64(w.New.Rev), int64(w.New.Created), int64(w.New.Deleted)
		if len(w.New.Hist) > 0 {
			h, err := json.Marshal(w.New.Hist)
			if err != nil {
				return err
			}
			hists[i] = string(h)
		}
	}
	_, err := c.tx.Exec(ctx, `INSERT INTO registry_records (site, kind, key, id, body, rev, created, deleted, hist)
		SELECT $1, u.kind, u.key, u.id, u.body::json, u.rev, u.created, u.deleted, NULLIF(u.hist, '')::jsonb
		FROM unnest($2::text[], $3::bytea[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::text[])
			AS u(kind, key, id, body, rev, created, deleted, hist)
		ON CONFLICT (site, kind, key) DO UPDATE SET id = EXCLUDED.id, body = EXCLUDED.body, rev = EXCLUDED.rev,
			created = EXCLUDED.created, deleted = EXCLUDED.deleted, hist = EXCLUDED.hist`,
		c.site, kinds, ids, readable, bodies, revs, created, deleted, hists)
	if err != nil {
		return fmt.Errorf("store %d records: %w", n, err)
	}
	return nil
}

// View implements registry.Backend.
func (b *registryBackend) View(ctx context.Context, site string, fn func(registry.View) error) error {
	return pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		v := siteView{tx: tx, site: site}
		var rev, floor int64
		err := tx.QueryRow(ctx, `SELECT rev, floor FROM registry_sites WHERE site = $1`, site).Scan(&rev, &floor)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read site: %w", err)
		}
		v.rev, v.floor = uint64(rev), uint64(floor)
		return fn(v)
	})
}

// siteView is registry.View in a read-only REPEATABLE READ transaction.
type siteView struct {
	tx         pgx.Tx
	site       string
	rev, floor uint64
}

// Revision implements registry.View.
func (v siteView) Revision() uint64 { return v.rev }

// Floor implements registry.View.
func (v siteView) Floor() uint64 { return v.floor }

// Hash implements registry.View.
func (v siteView) Hash(ctx context.Context, rev uint64) ([32]byte, bool, error) {
	var h [32]byte
	var b []byte
	err := v.tx.QueryRow(ctx, `SELECT hash FROM registry_hashes WHERE site = $1 AND rev = $2`, v.site, int64(rev)).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && len(b) != len(h)) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("read content hash: %w", err)
	}
	copy(h[:], b)
	return h, true, nil
}

// Live implements registry.View: keyset pages in key order.
func (v siteView) Live(ctx context.Context, fn func(key, item []byte) error) error {
	const cols = `SELECT ` + recordColumns + ` FROM registry_records WHERE site = $1 AND deleted = 0`
	p := keyset{
		first: cols + ` ORDER BY kind, key LIMIT $2`, args: []any{v.site, registryPage},
		next:   cols + ` AND (kind, key) > ($3, $4) ORDER BY kind, key LIMIT $2`,
		cursor: func(kind string, id []byte, _ registry.Record) []any { return []any{kind, id} },
	}
	return p.each(ctx, v.tx, func(k []byte, rec registry.Record) error { return fn(k, rec.Item) })
}

// Changed implements registry.View: keyset pages in (rev, key) order.
func (v siteView) Changed(ctx context.Context, from uint64, fn func(key []byte, rec registry.Record, live bool) error) error {
	const cols = `SELECT ` + recordColumns + ` FROM registry_records WHERE site = $1`
	p := keyset{
		first: cols + ` AND rev > $3 ORDER BY rev, kind, key LIMIT $2`, args: []any{v.site, registryPage, int64(from)},
		next:   cols + ` AND (rev, kind, key) > ($3, $4, $5) ORDER BY rev, kind, key LIMIT $2`,
		cursor: func(kind string, id []byte, rec registry.Record) []any { return []any{int64(rec.Rev), kind, id} },
	}
	return p.each(ctx, v.tx, func(k []byte, rec registry.Record) error { return fn(k, rec, rec.Deleted == 0) })
}

// keyset reads records in pages of registryPage rows: first with args
// ($1 the site, $2 the page size), then next with $1, $2 and the cursor of
// the last row read, for as long as pages come back full.
type keyset struct {
	first, next string
	args        []any
	cursor      func(kind string, id []byte, last registry.Record) []any
}

// each calls fn on every row of every page.
func (p keyset) each(ctx context.Context, tx pgx.Tx, fn func(k []byte, rec registry.Record) error) error {
	q, args := p.first, p.args
	for {
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		n := 0
		var last []byte
		var lastRec registry.Record
		for rows.Next() {
			k, rec, err := scanRecord(rows)
			if err == nil {
				err = fn(k, rec)
			}
			if err != nil {
				rows.Close()
				return err
			}
			last, lastRec, n = k, rec, n+1
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		if n < registryPage {
			return nil
		}
		kind, id, _ := splitKey(last)
		q, args = p.next, append([]any{p.args[0], p.args[1]}, p.cursor(kind, id, lastRec)...)
	}
}

// PutHash implements registry.Backend.
func (b *registryBackend) PutHash(ctx context.Context, site string, rev uint64, h [32]byte) error {
	_, err := b.pool.Exec(ctx, `INSERT INTO registry_hashes (site, rev, hash) SELECT $1, $2, $3
		WHERE EXISTS (SELECT 1 FROM registry_sites WHERE site = $1) ON CONFLICT (site, rev) DO UPDATE SET hash = EXCLUDED.hash`,
		site, int64(rev), h[:])
	return err
}

// Sites implements registry.Backend.
func (b *registryBackend) Sites(ctx context.Context) ([]string, error) {
	rows, err := b.pool.Query(ctx, `SELECT site FROM registry_sites ORDER BY site`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Count implements registry.Backend.
func (b *registryBackend) Count(ctx context.Context, site string, kind policy.RecordKind) (int, error) {
	var n int
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM registry_records WHERE site = $1 AND kind = $2 AND deleted = 0`,
		site, string(rune(kind))).Scan(&n)
	return n, err
}

// Get implements registry.Backend.
func (b *registryBackend) Get(ctx context.Context, site string, key []byte) ([]byte, error) {
	kind, id, err := splitKey(key)
	if err != nil {
		return nil, err
	}
	var body []byte
	err = b.pool.QueryRow(ctx, `SELECT body FROM registry_records WHERE site = $1 AND kind = $2 AND key = $3 AND deleted = 0`,
		site, kind, id).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return body, err
}

// List implements registry.Backend.
func (b *registryBackend) List(ctx context.Context, site string, kind policy.RecordKind, after []byte, limit int) ([]registry.KeyItem, error) {
	k := string(rune(kind))
	id := []byte{} // not nil: NULL would compare to nothing
	if after != nil {
		var err error
		if _, id, err = splitKey(after); err != nil {
			return nil, err
		}
	}
	rows, err := b.pool.Query(ctx, `SELECT kind, key, body FROM registry_records
		WHERE site = $1 AND kind = $2 AND deleted = 0 AND key > $3 ORDER BY key LIMIT $4`, site, k, id, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (registry.KeyItem, error) {
		var kind string
		var id, body []byte
		err := row.Scan(&kind, &id, &body)
		return registry.KeyItem{Key: joinKey(kind, id), Item: body}, err
	})
}

// PersonKeys implements registry.Backend with the index
// registry_records_person.
func (b *registryBackend) PersonKeys(ctx context.Context, site, person string) ([][]byte, error) {
	rows, err := b.pool.Query(ctx, `SELECT key FROM registry_records
		WHERE site = $1 AND body->>'Person' = $2 AND kind = 'C' AND deleted = 0 ORDER BY key`, site, person)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]byte, error) {
		var id []byte
		err := row.Scan(&id)
		return joinKey(string(policy.KindCredential), id), err
	})
}

// AddPending implements registry.Backend.
func (b *registryBackend) AddPending(ctx context.Context, p registry.Pending) (string, error) {
	var id string
	err := b.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO registry_pending (id, site, device, seq, received, record) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (site, device, seq) DO NOTHING RETURNING id)
		SELECT id FROM ins UNION ALL SELECT id FROM registry_pending WHERE site = $2 AND device = $3 AND seq = $4`,
		p.ID, p.Site, p.Device, int64(p.Seq), p.Received, string(p.Record)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		// Inserted by another transaction that has not committed yet
		// when this one's snapshot was taken: ask again.
		err = b.pool.QueryRow(ctx, `SELECT id FROM registry_pending WHERE site = $1 AND device = $2 AND seq = $3`,
			p.Site, p.Device, int64(p.Seq)).Scan(&id)
	}
	return id, err
}

// pendingColumns are the columns scanPending reads.
const pendingColumns = `id, site, device, seq, received, record`

// scanPending reads a row of pendingColumns.
func scanPending(row pgx.CollectableRow) (registry.Pending, error) {
	var p registry.Pending
	var seq int64
	var rec []byte
	err := row.Scan(&p.ID, &p.Site, &p.Device, &seq, &p.Received, &rec)
	p.Seq, p.Record, p.Received = uint64(seq), rec, p.Received.UTC()
	return p, err
}

// PendingList implements registry.Backend.
func (b *registryBackend) PendingList(ctx context.Context) ([]registry.Pending, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+pendingColumns+` FROM registry_pending ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanPending)
}

// PendingByID implements registry.Backend.
func (b *registryBackend) PendingByID(ctx context.Context, id string) (registry.Pending, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+pendingColumns+` FROM registry_pending WHERE id = $1`, id)
	if err != nil {
		return registry.Pending{}, err
	}
	p, err := pgx.CollectExactlyOneRow(rows, scanPending)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("%w: pending enrollment %q", registry.ErrNotFound, id)
	}
	return p, err
}

// DeletePending implements registry.Backend.
func (b *registryBackend) DeletePending(ctx context.Context, id string) error {
	tag, err := b.pool.Exec(ctx, `DELETE FROM registry_pending WHERE id = $1`, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = fmt.Errorf("%w: pending enrollment %q", registry.ErrNotFound, id)
	}
	return err
}

// SetNames implements registry.Backend.
func (b *registryBackend) SetNames(ctx context.Context, site string, names map[string]string) error {
	var set, setNames, forget []string
	for person, name := range names {
		if name == "" {
			forget = append(forget, person)
		} else {
			set, setNames = append(set, person), append(setNames, name)
		}
	}
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM registry_names WHERE site = $1 AND person = ANY($2::text[])`, site, forget); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO registry_names (site, person, name) SELECT $1, * FROM unnest($2::text[], $3::text[])
			ON CONFLICT (site, person) DO UPDATE SET name = EXCLUDED.name`, site, set, setNames)
		return err
	})
}

// Name implements registry.Backend.
func (b *registryBackend) Name(ctx context.Context, site, person string) (string, error) {
	var name string
	err := b.pool.QueryRow(ctx, `SELECT name FROM registry_names WHERE site = $1 AND person = $2`, site, person).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return name, err
}

// EachName implements registry.NameLister.
func (b *registryBackend) EachName(ctx context.Context, fn func(site, person, name string) error) error {
	rows, err := b.pool.Query(ctx, `SELECT site, person, name FROM registry_names ORDER BY site, person`)
	if err != nil {
		return err
	}
	var site, person, name string
	_, err = pgx.ForEachRow(rows, []any{&site, &person, &name}, func() error { return fn(site, person, name) })
	return err
}

// Restore implements registry.Restorer: the site's row is inserted
// first, so that a second copy running at the same time waits for this
// one and then finds the site.
func (b *registryBackend) Restore(ctx context.Context, site string, rev, floor uint64, hash *[32]byte,
	recs func(yield func(key []byte, rec registry.Record) error) error) (bool, error) {
	restored := false
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO registry_sites (site, rev, floor) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			site, int64(rev), int64(floor))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		c := &siteTx{tx: tx, site: site}
		var batch []registry.Write
		err = recs(func(k []byte, rec registry.Record) error {
			if batch = append(batch, registry.Write{Key: k, New: rec}); len(batch) < registryPage {
				return nil
			}
			err := c.Write(ctx, batch)
			batch = batch[:0]
			return err
		})
		if err == nil {
			err = c.Write(ctx, batch)
		}
		if err == nil && hash != nil {
			_, err = tx.Exec(ctx, `INSERT INTO registry_hashes (site, rev, hash) VALUES ($1, $2, $3)`, site, int64(rev), hash[:])
		}
		restored = err == nil
		return err
	})
	return restored, err
}
