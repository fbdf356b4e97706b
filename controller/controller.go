// Package controller joins the parts of one door: it takes each card a
// reader sees, identifies it, asks policy for a decision, records the event
// durably in the outbox, and only then moves the lock. It owns the per-door
// loop and the clock; everything it touches is reached through small
// interfaces defined here, so the loop is testable with fakes and real parts
// alike.
package controller

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tobira-ac/tobira/door"
	"github.com/tobira-ac/tobira/internal/clock"
	"github.com/tobira-ac/tobira/policy"
	"github.com/tobira-ac/tobira/reader"
	"github.com/tobira-ac/tobira/sync/proto"
)

// CardSource yields the cards presented at one reader.
type CardSource interface {
	// NextCard blocks until a card is presented and returns a session with it.
	NextCard(ctx context.Context) (reader.Card, error)
}

// Decider decides from the local snapshot (policy.Store).
type Decider interface {
	DecideAt(req policy.Request) policy.Decision
}

// Lock is the door's lock (door.Door).
type Lock interface {
	// AllowGrant tells whether a grant would be accepted now (false while
	// locked down, unless admin).
	AllowGrant(admin bool) bool
	// Grant unlocks for the door's pulse.
	Grant(ctx context.Context) error
	// AdminGrant unlocks for a break-glass credential, lockdown or not.
	AdminGrant(ctx context.Context) error
	// Indicate plays a signal on the door's LEDs and buzzer.
	Indicate(ctx context.Context, s door.Signal) error
}

// EventLog stores events durably until HQ acknowledges them (sync.Outbox).
type EventLog interface {
	Append(ev proto.Event) (proto.Event, error)
}

// Identifier turns a card session into an identity (reader.Identifier,
// configured with the reader's mode).
type Identifier interface {
	Identify(ctx context.Context, t reader.Transmitter, now time.Time) (reader.Identity, error)
}

// EnrollmentLog stores enrollment records durably for HQ, apart from the
// event stream (sync.Outbox): a record carries the certificate, whose
// validity dates hint at a birthday.
type EnrollmentLog interface {
	AppendEnrollment(record []byte) (uint64, error)
}

// Tap is the outcome of one card presented at a door. Observers (the demo,
// tests, status) receive it after the lock has been driven.
type Tap struct {
	// Door is the door's name.
	Door string
	// Reader is the reader's name and Direction the way it faces ("in", "out").
	Reader, Direction string
	// Identity is what the card proved; zero when the read failed.
	Identity reader.Identity
	// ReadErr is the reader's error, nil when the card was identified.
	ReadErr error
	// Decision is the outcome and its reason.
	Decision policy.Decision
	// ReadTime is the time spent talking to the card and verifying the
	// certificate; DecideTime is the time policy took.
	ReadTime, DecideTime time.Duration
	// Event is the event as stored in the outbox (Seq 0 if storing failed).
	Event proto.Event
	// LockErr is set when the lock could not be driven for a grant.
	LockErr error
	// EnrollmentSeq is the enrollment record's number in the outbox (enroll
	// mode), and EnrollmentErr the error storing it.
	EnrollmentSeq uint64
	EnrollmentErr error
}

// ReaderLoop is the loop of one reader at one door: a door has one loop per
// reader (an entry and an exit reader share the door's lock).
type ReaderLoop struct {
	// Door names the door in events and logs.
	Door string
	// Reader names the reader (its PC/SC name).
	Reader string
	// Direction is "in" or "out".
	Direction string
	// Source yields the cards presented at the reader.
	Source CardSource
	// Identifier identifies card holders in the reader's mode.
	Identifier Identifier
	// PINIdentifier, if set, is used when policy answers pin_required (the
	// door is in card + PIN mode) and the reader's own mode did not verify
	// a PIN: the same card is identified again with the PIN.
	PINIdentifier Identifier
	// Decider decides from the snapshot.
	Decider Decider
	// Lock is driven on a grant.
	Lock Lock
	// Events receives one event per decision.
	Events EventLog
	// Enrollments receives the enrollment records of an enroll-mode reader.
	Enrollments EnrollmentLog
	// Notify, if set, is called after an event is stored (sync.Edge.Notify).
	Notify func()
	// Activity, if set, counts this loop's card sessions (firmware installs
	// wait for them).
	Activity *Activity
	// OnTap, if set, is called after each tap.
	OnTap func(Tap)
	// Metrics, if set, counts each tap (controller.Metrics).
	Metrics TapRecorder
	// Clock is the time source (clock.System{} when nil).
	Clock clock.Clock
	// Log receives structured logs (slog.Default() when nil).
	Log *slog.Logger
}

// retryDelay is how long the loop waits after the reader itself failed
// (not a card: the reader or the PC/SC service) before it tries again.
const retryDelay = time.Second

// Run handles cards until ctx ends. It returns nil when ctx ends.
func (d *ReaderLoop) Run(ctx context.Context) error {
	if err := d.Validate(); err != nil {
		return err
	}
	clk, log := d.clock(), d.log()
	for {
		card, err := d.Source.NextCard(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("reader unavailable; retrying", "door", d.Door, "err", err, "retry_in", retryDelay)
			t := clk.NewTimer(retryDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C():
			}
			continue
		}
		d.Activity.enter()
		d.Handle(ctx, card)
		if err := card.Done(ctx); err != nil && ctx.Err() == nil {
			log.Warn("card session did not end cleanly", "door", d.Door, "err", err)
		}
		d.Activity.leave()
	}
}

// Handle runs one tap: identify, decide, record, then move the lock.
// The event is stored before the lock moves, so a crash at any point never
// leaves a door opened without its event on disk.
func (d *ReaderLoop) Handle(ctx context.Context, card reader.Transmitter) Tap {
	clk, log := d.clock(), d.log()
	tap := Tap{Door: d.Door, Reader: d.Reader, Direction: d.Direction}

	start := clk.Now()
	tap.Identity, tap.ReadErr = d.Identifier.Identify(ctx, card, start)
	decideStart := clk.Now()
	tap.ReadTime = decideStart.Sub(start)
	tap.Decision = d.decide(tap.Identity, tap.ReadErr, decideStart)
	if tap.Decision.Reason == policy.ReasonPINRequired && d.PINIdentifier != nil {
		// The door wants card + PIN now: ask for the PIN on the same card.
		_ = d.Lock.Indicate(ctx, door.SignalPINWanted)
		tap.Identity, tap.ReadErr = d.PINIdentifier.Identify(ctx, card, clk.Now())
		decideStart = clk.Now()
		tap.ReadTime = decideStart.Sub(start)
		tap.Decision = d.decide(tap.Identity, tap.ReadErr, decideStart)
	}
	if rec := tap.Identity.Enrollment; rec != nil {
		tap.EnrollmentSeq, tap.EnrollmentErr = d.storeEnrollment(rec)
		if tap.EnrollmentErr != nil {
			log.Error("enrollment record not stored", "door", d.Door, "credential", rec.Credential.String(), "err", tap.EnrollmentErr)
		}
	}
	admin := tap.Decision.Reason == policy.ReasonBreakGlass
	if tap.Decision.Granted && !d.Lock.AllowGrant(admin) {
		tap.Decision = policy.Decision{Reason: policy.ReasonLockedDown, SnapshotVersion: tap.Decision.SnapshotVersion}
	}
	tap.DecideTime = clk.Now().Sub(decideStart)

	ev := proto.Event{
		Time:       start,
		Type:       "decision",
		Door:       d.Door,
		Granted:    tap.Decision.Granted,
		Reason:     string(tap.Decision.Reason),
		DecisionUS: tap.DecideTime.Microseconds(),
		Detail:     eventDetail(d.Direction, tap),
	}
	// A certificate that chained to an anchor but is out of its validity
	// still names its credential: HQ can tell whose card needs renewal.
	if key, err := tap.Identity.Credential.Key(); err == nil {
		ev.Credential = hex.EncodeToString(key)
	}
	ev.Token = string(tap.Identity.Token.Type)
	stored, err := d.Events.Append(ev)
	if err != nil {
		// The decision stands (a full disk must not lock everyone out), but
		// the loss is loud.
		log.Error("event not stored", "door", d.Door, "reason", ev.Reason, "err", err)
	} else {
		tap.Event = stored
	}

	if tap.Decision.Granted {
		grant := d.Lock.Grant
		if admin {
			grant = d.Lock.AdminGrant
		}
		if err := grant(ctx); err != nil {
			tap.LockErr = err
			reason := "relay_error"
			switch {
			case errors.Is(err, door.ErrInterlocked):
				reason = string(policy.ReasonInterlocked)
			case errors.Is(err, door.ErrLockedDown):
				reason = string(policy.ReasonLockedDown)
			}
			log.Error("lock did not open for a grant", "door", d.Door, "reason", reason, "err", err)
			if _, err := d.Events.Append(proto.Event{Time: clk.Now(), Type: "door", Door: d.Door,
				Reason: reason, Detail: err.Error()}); err != nil {
				log.Error("event not stored", "door", d.Door, "reason", reason, "err", err)
			}
		}
	} else {
		_ = d.Lock.Indicate(ctx, door.SignalDenied)
	}
	if d.Notify != nil {
		d.Notify()
	}
	attrs := []any{"door", d.Door, "reader", d.Reader, "direction", d.Direction, "granted", tap.Decision.Granted, "reason", tap.Decision.Reason,
		"seq", tap.Event.Seq, "read", tap.ReadTime, "decide", tap.DecideTime}
	if tap.Identity.Credential.Kind != 0 {
		attrs = append(attrs, "credential", tap.Identity.Credential.String(), "token", tap.Identity.Token.Type)
	}
	if tap.Decision.Reason == policy.ReasonCardError {
		// Only card-protocol errors are logged in full: certificate
		// errors could carry validity dates, which hint at a birthday.
		attrs = append(attrs, "err", tap.ReadErr)
	}
	log.Info("tap", attrs...)
	if d.Metrics != nil {
		d.Metrics.RecordTap(tap)
	}
	if d.OnTap != nil {
		d.OnTap(tap)
	}
	return tap
}

// storeEnrollment stores an enroll-mode reader's record for HQ.
func (d *ReaderLoop) storeEnrollment(rec *reader.EnrollmentRecord) (uint64, error) {
	if d.Enrollments == nil {
		return 0, errors.New("this reader has no enrollment log")
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("encode enrollment record: %w", err)
	}
	return d.Enrollments.AppendEnrollment(b)
}

// decide turns an identification into a decision: a reader error decides
// by itself; an identity is decided by policy for this door and direction.
func (d *ReaderLoop) decide(id reader.Identity, readErr error, now time.Time) policy.Decision {
	if readErr != nil {
		return policy.Decision{Reason: ReasonForReadError(readErr)}
	}
	dir := policy.DirectionIn
	if d.Direction == "out" {
		dir = policy.DirectionOut
	}
	return d.Decider.DecideAt(policy.Request{Credential: id.Credential, Door: d.Door, Direction: dir,
		Now: now, PINVerified: id.PINVerified})
}

// eventDetail says, for operators, what is not in the event's fields: the
// direction, PIN tries left after a wrong PIN, renewal hops and flags.
// Never personal data.
func eventDetail(direction string, tap Tap) string {
	parts := []string{"direction=" + direction}
	if tap.Identity.Mode != "" {
		parts = append(parts, "mode="+string(tap.Identity.Mode))
	}
	var wrong *reader.PINWrongError
	if errors.As(tap.ReadErr, &wrong) {
		parts = append(parts, fmt.Sprintf("pin_tries_left=%d", wrong.TriesLeft))
	}
	if tap.Decision.RenewalHops > 0 {
		parts = append(parts, fmt.Sprintf("renewal_hops=%d", tap.Decision.RenewalHops))
	}
	if tap.Decision.Flags != 0 {
		parts = append(parts, "flags="+tap.Decision.Flags.String())
	}
	if tap.EnrollmentSeq != 0 {
		parts = append(parts, fmt.Sprintf("enrollment=%d", tap.EnrollmentSeq))
	}
	if tap.Decision.SnapshotVersion != 0 {
		parts = append(parts, fmt.Sprintf("snapshot=%d", tap.Decision.SnapshotVersion))
	}
	return strings.Join(parts, " ")
}

// ReasonForReadError maps a reader error to the decision reason it causes.
func ReasonForReadError(err error) policy.Reason {
	switch {
	case errors.Is(err, reader.ErrPINWrong):
		return policy.ReasonPINWrong
	case errors.Is(err, reader.ErrPINNearlyBlocked):
		return policy.ReasonPINNearlyBlocked
	case errors.Is(err, reader.ErrPINBlocked):
		return policy.ReasonPINBlocked
	case errors.Is(err, reader.ErrPINTimeout), errors.Is(err, reader.ErrPINCancelled), errors.Is(err, reader.ErrPINFormat):
		return policy.ReasonPINNotEntered
	case errors.Is(err, reader.ErrSignature):
		return policy.ReasonBadSignature
	case errors.Is(err, reader.ErrFreeAreaNotFound), errors.Is(err, reader.ErrFreeAreaData):
		return policy.ReasonFreeAreaError
	case errors.Is(err, reader.ErrCardRemoved):
		return policy.ReasonCardRemoved
	case errors.Is(err, reader.ErrNotMyNumberCard):
		return policy.ReasonNotMyNumberCard
	case errors.Is(err, reader.ErrExpired):
		return policy.ReasonExpired
	case errors.Is(err, reader.ErrNotYetValid):
		return policy.ReasonNotYetValid
	case errors.Is(err, reader.ErrUntrustedIssuer):
		return policy.ReasonUntrustedIssuer
	case errors.Is(err, reader.ErrBadCertificate):
		return policy.ReasonBadCertificate
	default:
		return policy.ReasonCardError
	}
}

func (d *ReaderLoop) clock() clock.Clock {
	if d.Clock == nil {
		return clock.System{}
	}
	return d.Clock
}

func (d *ReaderLoop) log() *slog.Logger {
	if d.Log == nil {
		return slog.Default()
	}
	return d.Log
}

// Validate reports a ReaderLoop that is missing a part.
func (d *ReaderLoop) Validate() error {
	switch {
	case d.Door == "":
		return fmt.Errorf("controller: reader %q has no door", d.Reader)
	case d.Source == nil, d.Identifier == nil, d.Decider == nil, d.Lock == nil, d.Events == nil:
		return fmt.Errorf("controller: reader %q at door %q is missing its source, identifier, decider, lock or event log", d.Reader, d.Door)
	}
	return nil
}
