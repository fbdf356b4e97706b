package policy

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Request is everything DecideAt needs about one tap.
type Request struct {
	// Credential is what the card presented.
	Credential credential.Credential
	// Door is the door's ID in the snapshot (Door.ID). "" asks only the
	// allowlist, revocation and renewal questions, as Decide does.
	Door string
	// Direction is the reader's direction (entry or exit).
	Direction Direction
	// Now is the controller's (injected) clock reading; policy never reads
	// the time itself.
	Now time.Time
	// PINVerified says the card holder entered the right PIN (the card
	// verified it and signed a challenge).
	PINVerified bool
}

// Flags are conditions noted on a decision besides its Reason.
type Flags uint8

// The flags.
const (
	// FlagRenewed: the credential was found through renewal links.
	FlagRenewed Flags = 1 << iota
	// FlagPassbackSoft: a soft anti-passback rule was broken.
	FlagPassbackSoft
	// FlagStaleRevocations: the revocation data was stale.
	FlagStaleRevocations
	// FlagClockUntrusted: the request's time was behind the trusted time.
	FlagClockUntrusted
	// FlagTicketOnline: HQ confirmed a single-entry ticket's entry within
	// the online-check budget (SetTicketCheck).
	FlagTicketOnline
	// FlagTicketUnanswered: the online check got no answer within its
	// budget; the ticket was decided locally.
	FlagTicketUnanswered
)

// flagNames are the flags' names in events, in bit order.
var flagNames = []string{"renewed", "passback_soft", "stale_revocations", "clock_untrusted", "ticket_online", "ticket_unanswered"}

// String lists the flags set, comma-separated ("" for none).
func (f Flags) String() string {
	var names []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if rest := f &^ (1<<len(flagNames) - 1); rest != 0 {
		names = append(names, fmt.Sprintf("0x%x", uint8(rest)))
	}
	return strings.Join(names, ",")
}

// Decision is the outcome of one decision.
type Decision struct {
	// Granted says whether the door may open; it equals Reason.Granted().
	Granted bool
	// Reason says why; when several conditions hold, the most important
	// one (see DecideAt), the others are in Flags.
	Reason Reason
	// Person is the allowlist entry's person ID (or the break-glass label),
	// set only when Granted.
	Person string
	// SnapshotVersion is the version the decision was taken from (0 when no
	// snapshot was applied yet or the store could not be read).
	SnapshotVersion uint64
	// Flags note every condition met (renewal, soft passback, stale data).
	Flags Flags
	// RenewalHops is how many renewal links led to the enrolled entry.
	RenewalHops int
}

// Decide decides from the snapshot alone, without door, time or local
// state: the allowlist-and-revocation check of DecideAt with Request.Door
// "". A revoked certificate is denied with ReasonRevoked (even when it is
// also allowlisted); an allowlisted credential is granted with
// ReasonEnrolled (ReasonRenewed through renewal links); anything else,
// including a credential whose fields are out of range, is denied with
// ReasonNotEnrolled. When the store cannot be read the answer is a denial
// with ReasonStoreUnavailable, and the cause is logged.
func (s *Store) Decide(c credential.Credential) Decision {
	return s.DecideAt(Request{Credential: c})
}

// DecideAt decides one tap at a door. In order:
//
//  1. a break-glass credential is granted (ReasonBreakGlass) in every mode,
//     even without a readable snapshot, unless its certificate is revoked;
//  2. the door must be known (ReasonUnknownDoor); its mode at Now may deny
//     (ReasonDoorLocked) or grant (ReasonDoorUnlocked) at once;
//  3. a revoked certificate (snapshot or imported CRL) is denied;
//  4. the credential is looked up, following renewal links for a
//     certificate (ReasonNotEnrolled, ReasonRenewalChainTooLong);
//  5. an untrusted clock (Now before the last trusted time, see TrustTime)
//     and, for certificates, stale revocation data apply the door's
//     Fallback (ReasonClockUntrusted, ReasonRevocationsStale, or a flag);
//  6. the credential's and then the person's validity window;
//  7. a ticket: its event's gates and window and the single-entry rule;
//     anyone else: access levels and schedules, then card + PIN mode;
//  8. the anti-passback rule of the door's area, recorded with the grant.
//
// A grant's Reason is the most important of its flags: clock untrusted,
// then stale revocations, then soft passback, then ticket, renewed or
// enrolled. Ticket and anti-passback passages are recorded in the local
// file (fsync'd) before DecideAt returns.
func (s *Store) DecideAt(req Request) Decision {
	key, kerr := entryKey(req.Credential)
	if kerr == nil {
		if label, ok := s.breakGlass[string(key)]; ok {
			return s.decideBreakGlass(req, key, label)
		}
	}
	now, clockOK := req.Now, true
	if req.Door != "" {
		now, clockOK = s.TrustTime(req.Now)
	}
	var (
		d    Decision
		step localStep
	)
	err := s.view(func(tx *bolt.Tx) error {
		v, err := readVersion(tx)
		if err != nil {
			return err
		}
		r := s.rules.Load()
		if r == nil || r.version != v {
			// Only in the instant between a delta's commit and the swap of
			// the decoded rules.
			old := r
			if r, err = loadRules(tx, v); err != nil {
				return err
			}
			if old == nil || v > old.version {
				s.rules.CompareAndSwap(old, r)
			}
		}
		if kerr != nil {
			s.log.Warn("decide: credential cannot be looked up", "credential", req.Credential.String(), "err", kerr)
			d = deny(ReasonNotEnrolled, v)
			return nil
		}
		d, step, err = s.decideTx(txRequest{Request: req, tx: tx, rules: r, version: v, key: key, now: now, clockTrusted: clockOK})
		return err
	})
	if err != nil {
		s.log.Error("decide: policy store unavailable", "credential", req.Credential.String(), "err", err)
		return deny(ReasonStoreUnavailable, 0)
	}
	if step != nil {
		r, flags, err := step()
		d.Flags |= flags
		if flags != 0 && d.Granted {
			d.Reason = grantReason(d.Flags, d.Reason)
		}
		switch {
		case err != nil:
			s.log.Error("decide: local state unavailable", "credential", req.Credential.String(), "err", err)
			return deny(ReasonStoreUnavailable, d.SnapshotVersion)
		case r == ReasonPassbackSoft:
			d.Flags |= FlagPassbackSoft
			d.Reason = grantReason(d.Flags, d.Reason)
		case r != "":
			return deny(r, d.SnapshotVersion)
		}
	}
	return d
}

// localStep checks and records a grant's local state after the snapshot's
// read transaction: a denial reason ("" for none, or ReasonPassbackSoft
// for a flagged grant) and flags to add.
type localStep func() (Reason, Flags, error)

// txRequest is a Request inside the snapshot's read transaction, with what
// DecideAt found out before it.
type txRequest struct {
	Request
	tx      *bolt.Tx
	rules   *rules
	version uint64
	// key is the credential's allowlist key (entryKey).
	key []byte
	// now is the time the decision is taken at: Request.Now, or the trusted
	// time when Request.Now is behind it.
	now time.Time
	// clockTrusted is false when Request.Now was behind the trusted time.
	clockTrusted bool
}

// doorless reports whether q asks only the allowlist, revocation and
// renewal questions (Decide, Request.Door "").
func (q txRequest) doorless() bool { return q.Door == "" }

// isCert reports whether q's credential is a certificate.
func (q txRequest) isCert() bool { return q.Credential.Kind == credential.KindCertSerial }

// deny is decideTx's answer for a denial with reason r.
func (q txRequest) deny(r Reason) (Decision, localStep, error) {
	return deny(r, q.version), nil, nil
}

// decideTx is DecideAt's work inside the snapshot's read transaction, in
// the order DecideAt documents. It returns the decision and, for a grant
// that needs local state, the step that checks and records it.
func (s *Store) decideTx(q txRequest) (Decision, localStep, error) {
	var door Door
	var mode DoorMode
	if !q.doorless() {
		var ok bool
		if door, ok = q.rules.doors[q.Door]; !ok {
			return q.deny(ReasonUnknownDoor)
		}
		switch mode = q.rules.doorMode(door, q.now); mode {
		case ModeLocked:
			return q.deny(ReasonDoorLocked)
		case ModeUnlocked:
			return Decision{Granted: true, Reason: ReasonDoorUnlocked, SnapshotVersion: q.version}, nil, nil
		}
	}
	revoked, crlStale, err := s.revoked(q)
	if err != nil {
		return Decision{}, nil, err
	}
	if revoked {
		return q.deny(ReasonRevoked)
	}
	raw, hops, why := s.lookupEntry(q)
	if why != "" {
		return q.deny(why)
	}
	e, err := decodeEntryValue(raw)
	if err != nil {
		return Decision{}, nil, err
	}
	var flags Flags
	if hops > 0 {
		flags |= FlagRenewed
	}
	grant := Decision{Granted: true, Person: e.person, SnapshotVersion: q.version, RenewalHops: hops}
	if q.doorless() {
		grant.Flags = flags
		grant.Reason = grantReason(flags, ReasonEnrolled)
		return grant, nil, nil
	}
	fallback, why := s.fallbacks(q, crlStale)
	if why != "" {
		return q.deny(why)
	}
	if !inWindow(q.now, e.from, e.until) {
		return q.deny(ReasonCredentialInactive)
	}
	grant.Flags = flags | fallback
	if e.event != "" {
		return s.decideTicket(q, door, e.event, grant)
	}
	return s.decideMember(q, door, mode, e.person, grant)
}

// revoked reports whether q's certificate is revoked by the snapshot or by
// an imported CRL, and whether that CRL is stale. A credential that is not
// a certificate is never revoked.
func (s *Store) revoked(q txRequest) (revoked, crlStale bool, err error) {
	if !q.isCert() {
		return false, false, nil
	}
	if q.tx.Bucket(KindRevoked.bucket()).Get(q.key[1:]) != nil {
		return true, false, nil
	}
	return s.local.crlRevoked(q.Credential.IssuerKeyID, q.Credential.Serial, q.now)
}

// lookupEntry returns the allowlist value of q's credential, following
// renewal links from a certificate that is not on the allowlist; hops is
// the number of links followed. When there is no entry, why says so
// (ReasonNotEnrolled, ReasonRenewalChainTooLong).
func (s *Store) lookupEntry(q txRequest) (raw []byte, hops int, why Reason) {
	creds := q.tx.Bucket(KindCredential.bucket())
	if raw = creds.Get(q.key); raw != nil {
		return raw, 0, ""
	}
	if !q.isCert() {
		return nil, 0, ReasonNotEnrolled
	}
	links := q.tx.Bucket(KindLink.bucket())
	for cur := q.key[1:]; ; {
		prev := links.Get(cur)
		if prev == nil {
			return nil, hops, ReasonNotEnrolled
		}
		if hops == s.opts.MaxRenewalHops {
			return nil, hops, ReasonRenewalChainTooLong
		}
		hops++
		if raw = creds.Get(append([]byte{byte(credential.KindCertSerial)}, prev...)); raw != nil {
			return raw, hops, ""
		}
		cur = prev
	}
}

// fallbacks applies the door's Fallback for an untrusted clock and, for a
// certificate, stale revocation data (the snapshot's or the imported
// CRL's, crlStale): it returns the flags of the conditions met, or the
// reason of a denial.
func (s *Store) fallbacks(q txRequest, crlStale bool) (Flags, Reason) {
	opts, ok := s.opts.Doors[q.Door]
	if !ok {
		opts = s.opts.DefaultDoor
	}
	var flags Flags
	if !q.clockTrusted {
		if opts.OnUntrustedClock == FallbackDeny {
			return 0, ReasonClockUntrusted
		}
		flags |= FlagClockUntrusted
	}
	if q.isCert() && (crlStale || q.rules.revocationsStale(q.now)) {
		if opts.OnStaleRevocations == FallbackDeny {
			return 0, ReasonRevocationsStale
		}
		flags |= FlagStaleRevocations
	}
	return flags, ""
}

// decideTicket decides a ticket for the event named event: the event's
// gates and window, then the single-entry rule in the returned step.
func (s *Store) decideTicket(q txRequest, door Door, event string, grant Decision) (Decision, localStep, error) {
	ev, ok := q.rules.events[event]
	if !ok || !inDoorGroup(door, ev.DoorGroup) {
		return q.deny(ReasonTicketWrongDoor)
	}
	if q.now.Before(ev.Start) || !q.now.Before(ev.End) {
		return q.deny(ReasonTicketOutsideWindow)
	}
	grant.Reason = grantReason(grant.Flags, ReasonTicket)
	k := bytes.Clone(q.key)
	return grant, func() (Reason, Flags, error) { return s.ticketStep(k, ev, q.Door, q.Direction, q.now) }, nil
}

// decideMember decides the credential of person at door in mode: the
// person's validity, access levels and schedules, card + PIN, then the
// anti-passback rule of the door's area in the returned step.
func (s *Store) decideMember(q txRequest, door Door, mode DoorMode, person string, grant Decision) (Decision, localStep, error) {
	p := Person{ID: person}
	if pv := q.tx.Bucket(KindPerson.bucket()).Get([]byte(person)); pv != nil {
		var err error
		if p, err = decodePersonValue(person, pv); err != nil {
			return Decision{}, nil, err
		}
	}
	if !inWindow(q.now, p.ValidFrom, p.ValidUntil) {
		return q.deny(ReasonPersonInactive)
	}
	if ok, why := q.rules.access(p.Groups, door, q.now); !ok {
		return q.deny(why)
	}
	if mode == ModeCardPIN && !q.PINVerified {
		return q.deny(ReasonPINRequired)
	}
	grant.Reason = grantReason(grant.Flags, ReasonEnrolled)
	if door.Area != "" {
		if area, ok := q.rules.areas[door.Area]; ok && area.Passback != PassbackNone {
			return grant, func() (Reason, Flags, error) {
				r, err := s.local.passback(p.ID, area, q.Direction, q.now)
				return r, 0, err
			}, nil
		}
	}
	return grant, nil, nil
}

// decideBreakGlass grants a break-glass credential unless its certificate
// is revoked in a readable store.
func (s *Store) decideBreakGlass(req Request, key []byte, label string) Decision {
	var v uint64
	revoked := false
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if v, err = readVersion(tx); err != nil {
			return err
		}
		if req.Credential.Kind == credential.KindCertSerial {
			revoked = tx.Bucket(KindRevoked.bucket()).Get(key[1:]) != nil
			if !revoked {
				revoked, _, err = s.local.crlRevoked(req.Credential.IssuerKeyID, req.Credential.Serial, req.Now)
			}
		}
		return err
	})
	if err != nil {
		s.log.Warn("decide: break-glass credential used with the store unavailable", "label", label, "err", err)
		v = 0
	}
	if revoked {
		s.log.Warn("decide: break-glass credential is revoked", "label", label)
		return deny(ReasonRevoked, v)
	}
	s.log.Warn("decide: break-glass credential used", "label", label, "door", req.Door)
	return Decision{Granted: true, Reason: ReasonBreakGlass, Person: label, SnapshotVersion: v}
}

// revocationsStale reports whether the snapshot's revocation data is older
// than the site allows at now.
func (r *rules) revocationsStale(now time.Time) bool {
	max := r.site.MaxRevocationAge
	return max > 0 && (r.site.RevocationsAt.IsZero() || now.Sub(r.site.RevocationsAt) > max)
}

// grantReason picks the reason of a grant from its flags.
func grantReason(f Flags, base Reason) Reason {
	switch {
	case f&FlagClockUntrusted != 0:
		return ReasonGrantedClockUntrusted
	case f&FlagStaleRevocations != 0:
		return ReasonGrantedStaleRevocations
	case f&FlagPassbackSoft != 0:
		return ReasonPassbackSoft
	case base == ReasonEnrolled && f&FlagRenewed != 0:
		return ReasonRenewed
	}
	return base
}

// inWindow reports whether t is in [from, until), zero bounds open.
func inWindow(t, from, until time.Time) bool {
	return (from.IsZero() || !t.Before(from)) && (until.IsZero() || t.Before(until))
}

// deny returns a denial with reason r taken from snapshot version.
func deny(r Reason, version uint64) Decision {
	return Decision{Reason: r, SnapshotVersion: version}
}
