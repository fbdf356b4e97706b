package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The local file's buckets. It holds what the device learns itself, so a
// full snapshot swap (which replaces policy.db) never touches it.
var (
	localMeta    = []byte("meta")    // trustedKey
	localAPB     = []byte("apb")     // person 0x00 area -> inside flag + last entry time
	localMarks   = []byte("marks")   // ticket credential key -> mark
	localMarkLog = []byte("marklog") // uint64 seq -> ticket credential key (local uses)
	localCRL     = []byte("crl")     // issuer key ID -> crl pointer record
	trustedKey   = []byte("trusted-time")
	localBuckets = [][]byte{localMeta, localAPB, localMarks, localMarkLog, localCRL}
	localFormat  = []byte("format")
)

const localFormatVersion = 1

// localStore is the device's own state, in its own bbolt file.
type localStore struct {
	db    *bolt.DB
	path  string
	every time.Duration

	log *slog.Logger

	mu        sync.Mutex
	trusted   time.Time // the highest time seen
	persisted time.Time // the trusted time on disk
	writing   bool      // a write of the trusted time is under way
	writes    sync.WaitGroup

	crlMu sync.RWMutex
	crls  map[string]crlPointer // issuer key ID -> current CRL
}

func openLocalDB(path string) (db *bolt.DB, err error) {
	db, err = openBolt(path, &bolt.Options{Timeout: openTimeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			err = errors.Join(fmt.Errorf("open local store %s: %w: %v", path, ErrCorrupt, p), db.Close())
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(localMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return io.EOF })
			if !empty {
				return fmt.Errorf("%w: a bbolt file without a %q bucket", ErrCorrupt, localMeta)
			}
			for _, b := range localBuckets {
				if _, err := tx.CreateBucket(b); err != nil {
					return fmt.Errorf("create bucket %q: %w", b, err)
				}
			}
			return tx.Bucket(localMeta).Put(localFormat, binary.BigEndian.AppendUint32(nil, localFormatVersion))
		}
		f := meta.Get(localFormat)
		if len(f) != 4 {
			return fmt.Errorf("%w: local format record is %d bytes, want 4", ErrCorrupt, len(f))
		}
		if got := binary.BigEndian.Uint32(f); got != localFormatVersion {
			return fmt.Errorf("%w: local format %d, this build reads %d", ErrFormat, got, localFormatVersion)
		}
		for _, b := range localBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: local bucket %q is missing", ErrCorrupt, b)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open local store %s: %w", path, err), db.Close())
	}
	return db, nil
}

// load reads the trusted time and CRL pointers, and drops CRL buckets left
// by an interrupted import.
func (l *localStore) load() error {
	l.crls = map[string]crlPointer{}
	err := l.db.Update(func(tx *bolt.Tx) error {
		if v := tx.Bucket(localMeta).Get(trustedKey); len(v) == 8 {
			l.trusted = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			l.persisted = l.trusted
		}
		err := tx.Bucket(localCRL).ForEach(func(k, v []byte) error {
			p, err := decodeCRLPointer(v)
			if err != nil {
				return fmt.Errorf("%w: CRL pointer %x: %w", ErrCorrupt, k, err)
			}
			l.crls[string(k)] = p
			return nil
		})
		if err != nil {
			return err
		}
		return dropOrphanCRLs(tx, l.crls)
	})
	if err != nil {
		return fmt.Errorf("load local store %s: %w", l.path, err)
	}
	return nil
}

func (l *localStore) close() error {
	l.writes.Wait()
	if err := l.db.Close(); err != nil {
		return fmt.Errorf("close local store %s: %w", l.path, err)
	}
	return nil
}

// trust implements Store.TrustTime. Writing the trusted time to disk (an
// fsync) happens off the caller's path: a tap must not wait for it.
func (l *localStore) trust(now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Before(l.trusted) {
		return l.trusted, false
	}
	l.trusted = now
	if now.Sub(l.persisted) < l.every || l.writing {
		return now, true
	}
	l.writing = true
	l.writes.Add(1)
	go l.persistTrusted(now)
	return now, true
}

// persistTrusted stores now as the trusted time.
func (l *localStore) persistTrusted(now time.Time) {
	defer l.writes.Done()
	err := l.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(localMeta).Put(trustedKey, binary.BigEndian.AppendUint64(nil, uint64(now.UnixNano())))
	})
	l.mu.Lock()
	l.writing = false
	if err == nil && now.After(l.persisted) {
		l.persisted = now
	}
	l.mu.Unlock()
	if err != nil {
		l.log.Warn("trusted time not persisted", "path", l.path, "err", err)
	}
}

// TrustTime checks now (from the controller's clock) against the last
// trusted time stored on disk: a clock that went back below it (a Pi
// without RTC booting with an old time) is not trusted, and the answer is
// the stored time with ok false. Otherwise now becomes the new trusted time
// (written to disk when it moved TrustedTimePersistEvery past the stored
// one) and comes back with ok true. DecideAt calls it for every request.
func (s *Store) TrustTime(now time.Time) (trusted time.Time, ok bool) {
	return s.local.trust(now)
}

// Direction is the direction of a reader: into or out of the door's area.
type Direction uint8

// The directions.
const (
	// DirectionIn is an entry reader (the default).
	DirectionIn Direction = iota
	// DirectionOut is an exit reader.
	DirectionOut
)

// String returns "in" or "out".
func (d Direction) String() string {
	if d == DirectionOut {
		return "out"
	}
	return "in"
}

// apbState is a person's anti-passback record for one area.
type apbState struct {
	inside    bool
	lastEntry time.Time // zero: none
}

func encodeAPB(s apbState) []byte {
	b := []byte{0}
	if s.inside {
		b[0] = 1
	}
	return binary.AppendVarint(b, s.lastEntry.UnixNano())
}

func decodeAPB(v []byte) (apbState, error) {
	if len(v) < 2 || v[0] > 1 {
		return apbState{}, fmt.Errorf("anti-passback record %x", v)
	}
	n, k := binary.Varint(v[1:])
	if k <= 0 || 1+k != len(v) {
		return apbState{}, errors.New("bad anti-passback time")
	}
	return apbState{inside: v[0] == 1, lastEntry: time.Unix(0, n)}, nil
}

// apbKey is person 0x00 area.
func apbKey(person, area string) []byte {
	return append(append([]byte(person), 0), area...)
}

// passback checks the anti-passback rule of area for person going through
// a door in direction dir at now, and records the passage unless it is
// denied. It returns "" (pass), ReasonPassbackSoft or ReasonPassback. A
// person without a record for the area (never seen, or forgiven) passes.
func (l *localStore) passback(person string, area Area, dir Direction, now time.Time) (Reason, error) {
	var out Reason
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(localAPB)
		key := apbKey(person, area.ID)
		var st *apbState
		if v := b.Get(key); v != nil {
			s, err := decodeAPB(v)
			if err != nil {
				return fmt.Errorf("%w: anti-passback state of %q in %q: %w", ErrCorrupt, person, area.ID, err)
			}
			st = &s
		}
		violation := false
		if st != nil {
			switch area.Passback {
			case PassbackHard, PassbackSoft:
				violation = (dir == DirectionIn) == st.inside
			case PassbackTimed:
				violation = dir == DirectionIn && now.Sub(st.lastEntry) < area.Reentry
			}
		}
		if violation {
			if area.Passback != PassbackSoft {
				out = ReasonPassback
				return nil
			}
			out = ReasonPassbackSoft
		}
		next := apbState{inside: dir == DirectionIn}
		if st != nil {
			next.lastEntry = st.lastEntry
		}
		if dir == DirectionIn {
			next.lastEntry = now
		}
		return b.Put(key, encodeAPB(next))
	})
	if err != nil {
		return "", fmt.Errorf("anti-passback of %q in area %q: %w", person, area.ID, err)
	}
	return out, nil
}

// Forgive clears the anti-passback state of person (an admin's "forgive"):
// their next tap in any area is accepted as if they had no history.
func (s *Store) Forgive(ctx context.Context, person string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("forgive %q: %w", person, err)
	}
	err := s.local.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(localAPB).Cursor()
		prefix := append([]byte(person), 0)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forgive %q in %s: %w", person, s.local.path, err)
	}
	s.log.Info("anti-passback forgiven", "person", person)
	return nil
}
