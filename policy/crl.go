package policy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Errors about CRL imports. Each is wrapped with the CRL's issuer and times.
var (
	// ErrCRLSignature means the CRL does not parse or is not signed by the
	// configured CA.
	ErrCRLSignature = errors.New("CRL signature does not verify")
	// ErrCRLNotYetValid means the CRL's thisUpdate is after now.
	ErrCRLNotYetValid = errors.New("CRL is not valid yet")
	// ErrCRLExpired means the CRL's nextUpdate is before now: a newer CRL
	// should exist.
	ErrCRLExpired = errors.New("CRL is past its nextUpdate")
	// ErrCRLOlder means a CRL of the same issuer with a later thisUpdate is
	// already imported (a replay).
	ErrCRLOlder = errors.New("CRL is older than the imported one")
)

// crlPointer says which bucket holds an issuer's current CRL.
type crlPointer struct {
	gen        uint64
	thisUpdate time.Time
	nextUpdate time.Time
	count      uint64
}

func (p crlPointer) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, p.gen)
	b = binary.BigEndian.AppendUint64(b, uint64(p.thisUpdate.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(p.nextUpdate.Unix()))
	return binary.BigEndian.AppendUint64(b, p.count)
}

func decodeCRLPointer(v []byte) (crlPointer, error) {
	if len(v) != 32 {
		return crlPointer{}, fmt.Errorf("pointer is %d bytes, want 32", len(v))
	}
	return crlPointer{
		gen:        binary.BigEndian.Uint64(v),
		thisUpdate: time.Unix(int64(binary.BigEndian.Uint64(v[8:])), 0),
		nextUpdate: time.Unix(int64(binary.BigEndian.Uint64(v[16:])), 0),
		count:      binary.BigEndian.Uint64(v[24:]),
	}, nil
}

const crlBucketPrefix = "crl/"

func crlBucket(kid []byte, gen uint64) []byte {
	return fmt.Appendf(nil, "%s%x/%d", crlBucketPrefix, kid, gen)
}

// dropOrphanCRLs deletes CRL buckets that no pointer names (left by an
// interrupted import).
func dropOrphanCRLs(tx *bolt.Tx, ptrs map[string]crlPointer) error {
	var orphans [][]byte
	err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if !bytes.HasPrefix(name, []byte(crlBucketPrefix)) {
			return nil
		}
		rest := strings.SplitN(string(name[len(crlBucketPrefix):]), "/", 2)
		kid, err := hex.DecodeString(rest[0])
		if p, ok := ptrs[string(kid)]; err != nil || len(rest) != 2 || !ok || !bytes.Equal(crlBucket(kid, p.gen), name) {
			orphans = append(orphans, append([]byte(nil), name...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range orphans {
		if err := tx.DeleteBucket(n); err != nil {
			return fmt.Errorf("drop orphan CRL bucket %q: %w", n, err)
		}
	}
	return nil
}

// CRLInfo describes an imported CRL.
type CRLInfo struct {
	// IssuerKeyID is the CA key the CRL is about (its authority key ID).
	IssuerKeyID []byte
	// ThisUpdate and NextUpdate are the CRL's times.
	ThisUpdate, NextUpdate time.Time
	// Serials is how many revoked serials were imported.
	Serials uint64
}

// crlBatch is how many serials an import writes per transaction.
var crlBatch = 50_000

// ImportCRL imports an X.509 CRL (DER) of the CA ca: its signature must
// verify with ca (ErrCRLSignature), now must lie between thisUpdate and
// nextUpdate (ErrCRLNotYetValid, ErrCRLExpired), and it must not be older
// than the CRL already imported for that CA key (ErrCRLOlder). Its serials
// replace the CA key's previous CRL atomically (built aside in the local
// file, then switched in one transaction); a crash leaves the previous one.
// Decide treats the serials as revoked, and the CRL as stale after its
// nextUpdate. CRLs are local state: they survive snapshot swaps and are not
// part of ContentHash.
func (s *Store) ImportCRL(ctx context.Context, der []byte, ca *x509.Certificate, now time.Time) (CRLInfo, error) {
	info, err := s.importCRL(ctx, der, ca, now)
	if err != nil {
		return info, fmt.Errorf("import CRL of %s: %w", ca.Subject, err)
	}
	s.log.Info("imported CRL", "issuer_key_id", hex.EncodeToString(info.IssuerKeyID), "serials", info.Serials,
		"this_update", info.ThisUpdate, "next_update", info.NextUpdate)
	return info, nil
}

func (s *Store) importCRL(ctx context.Context, der []byte, ca *x509.Certificate, now time.Time) (CRLInfo, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return CRLInfo{}, fmt.Errorf("%w: parse: %w", ErrCRLSignature, err)
	}
	if err := rl.CheckSignatureFrom(ca); err != nil {
		return CRLInfo{}, fmt.Errorf("%w: %w", ErrCRLSignature, err)
	}
	kid := rl.AuthorityKeyId
	if len(kid) == 0 {
		kid = ca.SubjectKeyId
	}
	info := CRLInfo{IssuerKeyID: kid, ThisUpdate: rl.ThisUpdate, NextUpdate: rl.NextUpdate}
	if len(kid) != credential.KeyIDLen {
		return info, fmt.Errorf("%w: issuer key ID is %d bytes, want %d", ErrCRLSignature, len(kid), credential.KeyIDLen)
	}
	if now.Before(rl.ThisUpdate) {
		return info, fmt.Errorf("%w: thisUpdate %s, now %s", ErrCRLNotYetValid, rl.ThisUpdate.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	if !rl.NextUpdate.IsZero() && now.After(rl.NextUpdate) {
		return info, fmt.Errorf("%w: nextUpdate %s, now %s", ErrCRLExpired, rl.NextUpdate.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	l := s.local
	l.crlMu.RLock()
	old, had := l.crls[string(kid)]
	l.crlMu.RUnlock()
	if had && rl.ThisUpdate.Unix() < old.thisUpdate.Unix() {
		return info, fmt.Errorf("%w: thisUpdate %s, imported %s", ErrCRLOlder, rl.ThisUpdate.Format(time.RFC3339), old.thisUpdate.Format(time.RFC3339))
	}
	next := crlPointer{gen: old.gen + 1, thisUpdate: rl.ThisUpdate, nextUpdate: rl.NextUpdate}
	name := crlBucket(kid, next.gen)
	if err := l.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		_, err := tx.CreateBucket(name)
		return err
	}); err != nil {
		return info, fmt.Errorf("create CRL bucket: %w", err)
	}
	entries := rl.RevokedCertificateEntries
	for i := 0; i < len(entries); i += crlBatch {
		if err := ctx.Err(); err != nil {
			return info, err
		}
		end := min(i+crlBatch, len(entries))
		err := l.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			b.FillPercent = 0.95
			for _, e := range entries[i:end] {
				if e.SerialNumber == nil || e.SerialNumber.Sign() <= 0 || e.SerialNumber.BitLen() > 8*credential.MaxSerialLen {
					continue // no JPKI certificate has such a serial
				}
				if err := b.Put(e.SerialNumber.Bytes(), []byte{1}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return info, fmt.Errorf("write CRL serials %d..%d: %w", i, end, err)
		}
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		next.count = uint64(tx.Bucket(name).Stats().KeyN)
		if err := tx.Bucket(localCRL).Put(append([]byte(nil), kid...), next.encode()); err != nil {
			return err
		}
		if had {
			if err := tx.DeleteBucket(crlBucket(kid, old.gen)); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("switch to the new CRL: %w", err)
	}
	l.crlMu.Lock()
	l.crls[string(kid)] = next
	l.crlMu.Unlock()
	info.Serials = next.count
	return info, nil
}

// crlRevoked reports whether serial of kid is in the imported CRL, and
// whether that CRL is past its nextUpdate at now.
func (l *localStore) crlRevoked(kid, serial []byte, now time.Time) (revoked, stale bool, err error) {
	l.crlMu.RLock()
	_, any := l.crls[string(kid)]
	l.crlMu.RUnlock()
	if !any {
		return false, false, nil
	}
	err = l.db.View(func(tx *bolt.Tx) error {
		pv := tx.Bucket(localCRL).Get(kid)
		if pv == nil {
			return nil
		}
		p, err := decodeCRLPointer(pv)
		if err != nil {
			return fmt.Errorf("%w: CRL pointer of %x: %w", ErrCorrupt, kid, err)
		}
		stale = now.After(p.nextUpdate) && p.nextUpdate.Unix() > 0
		b := tx.Bucket(crlBucket(kid, p.gen))
		if b == nil {
			return fmt.Errorf("%w: CRL bucket of %x is missing", ErrCorrupt, kid)
		}
		revoked = b.Get(serial) != nil
		return nil
	})
	return revoked, stale, err
}
