package policy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Errors about the store file. Each is wrapped with the file's path.
var (
	// ErrLocked means another process (or another Store in this process)
	// holds the store file open: bbolt allows one writer per file, and Open
	// gave up after waiting two seconds for the lock.
	ErrLocked = errors.New("policy store is locked by another process")

	// ErrCorrupt means the file is not a bbolt file, or it is one but its
	// content does not have the policy store's layout (missing buckets, a
	// version record of the wrong size). Nothing is written to such a file.
	ErrCorrupt = errors.New("policy store is corrupt")

	// ErrFormat means the file was written in a store format this build does
	// not know (by a newer tobira, for example). It is left untouched.
	ErrFormat = errors.New("policy store has an unknown format")
)

// openTimeout is how long Open waits for another holder of the store file to
// let go before it fails with ErrLocked. Tests shorten it.
var openTimeout = 2 * time.Second

// formatVersion is the store layout this code reads and writes.
const formatVersion = 1

// Bucket and record names.
var (
	bucketMeta    = []byte("meta")    // formatKey, versionKey
	bucketAllow   = []byte("allow")   // credential.Key() -> person
	bucketRevoked = []byte("revoked") // issuer key ID || serial -> revokedMark
	formatKey     = []byte("format")  // uint32 big-endian
	versionKey    = []byte("version") // uint64 big-endian
	revokedMark   = []byte{1}         // a non-empty value, so Get tells presence apart
)

// ctxCheckEvery is how many records ApplyFull writes between looks at ctx.
const ctxCheckEvery = 4096

// Store is the snapshot store: one bbolt file holding the active snapshot.
// It is safe for concurrent use; Decide never waits for ApplyFull.
type Store struct {
	db   *bolt.DB
	path string
	log  *slog.Logger
}

// Open opens (creating if needed) the store file at path. A new file gets
// the empty layout (Version 0). It fails with ErrLocked when another holder
// keeps the file locked for two seconds, with ErrCorrupt when the file is not
// a policy store, and with ErrFormat for an unknown layout version. A nil log
// means slog.Default().
func Open(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, FreelistType: bolt.FreelistMapType})
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("open policy store %s: %w (waited %s): %w", path, ErrLocked, openTimeout, err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open policy store %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("open policy store %s: %w", path, err)
	}
	if err := db.Update(initLayout); err != nil {
		return nil, errors.Join(fmt.Errorf("open policy store %s: %w", path, err), db.Close())
	}
	s := &Store{db: db, path: path, log: log.With("store", path)}
	v, err := s.Version()
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	s.log.Info("policy store opened", "version", v)
	return s, nil
}

// initLayout creates the buckets of an empty file, or checks that an
// existing file has them and a known format.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return io.EOF })
		if !empty {
			return fmt.Errorf("%w: a bbolt file without a %q bucket (another program's file?)", ErrCorrupt, bucketMeta)
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketMeta, err)
		}
		if err := meta.Put(formatKey, binary.BigEndian.AppendUint32(nil, formatVersion)); err != nil {
			return fmt.Errorf("write format: %w", err)
		}
		if err := meta.Put(versionKey, binary.BigEndian.AppendUint64(nil, 0)); err != nil {
			return fmt.Errorf("write version: %w", err)
		}
		for _, name := range [][]byte{bucketAllow, bucketRevoked} {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	}
	f := meta.Get(formatKey)
	if len(f) != 4 {
		return fmt.Errorf("%w: format record is %d bytes, want 4", ErrCorrupt, len(f))
	}
	if got := binary.BigEndian.Uint32(f); got != formatVersion {
		return fmt.Errorf("%w: format %d, this build reads %d", ErrFormat, got, formatVersion)
	}
	if _, err := readVersion(tx); err != nil {
		return err
	}
	for _, name := range [][]byte{bucketAllow, bucketRevoked} {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, name)
		}
	}
	return nil
}

// readVersion reads the stored snapshot version inside tx.
func readVersion(tx *bolt.Tx) (uint64, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, fmt.Errorf("%w: bucket %q is missing", ErrCorrupt, bucketMeta)
	}
	v := meta.Get(versionKey)
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: version record is %d bytes, want 8", ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close closes the store file, waiting for running transactions to end.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close policy store %s: %w", s.path, err)
	}
	return nil
}

// Version returns the version of the stored snapshot; 0 means no snapshot
// has been applied yet.
func (s *Store) Version() (uint64, error) {
	var v uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		v, err = readVersion(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read snapshot version from %s: %w", s.path, err)
	}
	return v, nil
}

// ApplyFull atomically replaces the stored snapshot with snap, in one bbolt
// transaction: a concurrent Decide sees the old or the new snapshot, never a
// mix, and so does the file after a power cut. Every entry is validated
// first (see Snapshot.Validate); a bad entry, a snap.Version not newer than
// the stored one (ErrStaleVersion) or a cancelled ctx leave the stored
// snapshot as it was.
func (s *Store) ApplyFull(ctx context.Context, snap Snapshot) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", snap.Version, s.path, err)
	}
	p, err := snap.prepare()
	if err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", snap.Version, s.path, err)
	}
	var old uint64
	err = s.db.Update(func(tx *bolt.Tx) error {
		var err error
		if old, err = readVersion(tx); err != nil {
			return err
		}
		if snap.Version <= old {
			return fmt.Errorf("%w: offered %d, stored %d", ErrStaleVersion, snap.Version, old)
		}
		n := 0
		tick := func() error {
			if n++; n%ctxCheckEvery == 0 {
				return ctx.Err()
			}
			return nil
		}
		allow, err := recreateBucket(tx, bucketAllow)
		if err != nil {
			return err
		}
		for _, kv := range p.allow {
			if err := allow.Put(kv.k, kv.v); err != nil {
				return fmt.Errorf("write allow entry %x: %w", kv.k, err)
			}
			if err := tick(); err != nil {
				return err
			}
		}
		revoked, err := recreateBucket(tx, bucketRevoked)
		if err != nil {
			return err
		}
		for _, k := range p.revoked {
			if err := revoked.Put(k, revokedMark); err != nil {
				return fmt.Errorf("write revocation %x: %w", k, err)
			}
			if err := tick(); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(versionKey, binary.BigEndian.AppendUint64(nil, snap.Version))
	})
	if err != nil {
		return fmt.Errorf("apply snapshot version %d to %s: %w", snap.Version, s.path, err)
	}
	s.log.Info("applied full snapshot", "version", snap.Version, "previous_version", old,
		"allow", len(p.allow), "revoked", len(p.revoked))
	return nil
}

// recreateBucket drops the bucket name and makes it again, empty. Records
// are written in key order, so pages are filled completely.
func recreateBucket(tx *bolt.Tx, name []byte) (*bolt.Bucket, error) {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return nil, fmt.Errorf("drop bucket %q: %w", name, err)
	}
	b, err := tx.CreateBucket(name)
	if err != nil {
		return nil, fmt.Errorf("create bucket %q: %w", name, err)
	}
	b.FillPercent = 1.0
	return b, nil
}

// Decision is the outcome of one decision.
type Decision struct {
	// Granted says whether the door may open; it equals Reason.Granted().
	Granted bool
	// Reason says why.
	Reason Reason
	// Person is the allowlist entry's person ID, set only when Granted.
	Person string
	// SnapshotVersion is the version the decision was taken from (0 when no
	// snapshot was applied yet or the store could not be read).
	SnapshotVersion uint64
}

// Decide decides from the snapshot alone, in one read transaction: a
// revoked certificate is denied with ReasonRevoked (even when it is also
// allowlisted); an allowlisted credential is granted with ReasonEnrolled;
// anything else, including a credential whose fields are out of range, is
// denied with ReasonNotEnrolled. When the store cannot be read (closed,
// corrupt) the answer is a denial with ReasonStoreUnavailable, and the cause
// is logged.
func (s *Store) Decide(c credential.Credential) Decision {
	key, err := entryKey(c)
	if err != nil {
		// No valid key can match an invalid credential; the snapshot only
		// holds valid ones. Still read the version so the event says which
		// snapshot the denial came from.
		s.log.Warn("decide: credential cannot be looked up", "credential", c.String(), "err", err)
		v, verr := s.Version()
		if verr != nil {
			s.log.Error("decide: policy store unavailable", "err", verr)
			return deny(ReasonStoreUnavailable, 0)
		}
		return deny(ReasonNotEnrolled, v)
	}
	var d Decision
	err = s.db.View(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if err != nil {
			return err
		}
		allow, revoked := tx.Bucket(bucketAllow), tx.Bucket(bucketRevoked)
		if allow == nil || revoked == nil {
			return fmt.Errorf("%w: allow or revoked bucket is missing", ErrCorrupt)
		}
		if c.Kind == credential.KindCertSerial && revoked.Get(key[1:]) != nil {
			d = deny(ReasonRevoked, v)
			return nil
		}
		if p := allow.Get(key); p != nil {
			d = Decision{Granted: true, Reason: ReasonEnrolled, Person: string(p), SnapshotVersion: v}
			return nil
		}
		d = deny(ReasonNotEnrolled, v)
		return nil
	})
	if err != nil {
		s.log.Error("decide: policy store unavailable", "credential", c.String(), "err", err)
		return deny(ReasonStoreUnavailable, 0)
	}
	return d
}

func deny(r Reason, version uint64) Decision {
	return Decision{Reason: r, SnapshotVersion: version}
}
