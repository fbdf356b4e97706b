package proto

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tobira-ac/tobira/internal/credential"
)

// Event types.
const (
	// TypeDecision is an access decision at a door (granted or denied).
	TypeDecision = "decision"
	// TypeDoor is a door happening: opened, closed, held open, forced.
	TypeDoor = "door"
	// TypeSystem is a device happening: start, stop, store trouble.
	TypeSystem = "system"
	// TypeTicket is a ticket happening that is not a decision: a
	// single-entry ticket admitted at two gates (reason "ticket_conflict").
	TypeTicket = "ticket"
)

// Field limits. They keep a full batch well below MaxPayload even when every
// character needs JSON escaping. The edge's outbox (Event.Validate) and
// DecodeBatch enforce them.
const (
	// MaxTypeLen bounds Event.Type.
	MaxTypeLen = 32
	// MaxDoorLen bounds Event.Door.
	MaxDoorLen = 64
	// MaxReasonLen bounds Event.Reason.
	MaxReasonLen = 64
	// MaxCredentialLen bounds Event.Credential: the hex of the longest
	// credential key.
	MaxCredentialLen = 2 * (1 + max(credential.KeyIDLen+credential.MaxSerialLen, credential.MaxFreeAreaIDLen))
	// MaxTokenLen bounds Event.Token.
	MaxTokenLen = 32
	// MaxDetailLen bounds Event.Detail.
	MaxDetailLen = 512
)

// Event is one thing that happened at a device. The JSON field names are
// part of the protocol (docs/PROTOCOL.md) and stay stable.
//
// An Event never carries personal data: Credential is the hex of
// credential.Key() (issuer key ID and certificate serial, or a free-area ID),
// never a name, a My Number or a certificate's validity dates.
type Event struct {
	// Seq is the device's sequence number, assigned by the edge's outbox:
	// 1, 2, 3, ... never repeated for the device.
	Seq uint64 `json:"seq"`
	// Time is when it happened, by the device's clock, in UTC.
	Time time.Time `json:"time"`
	// Type is TypeDecision, TypeDoor, TypeSystem or TypeTicket; Validate refuses any
	// other (docs/PROTOCOL.md defines no other).
	Type string `json:"type"`
	// Door names the door, when the event belongs to one.
	Door string `json:"door,omitempty"`
	// Granted reports whether access was granted (decision events).
	Granted bool `json:"granted"`
	// Reason is the decision's policy.Reason, or a door/system code.
	Reason string `json:"reason,omitempty"`
	// Credential is the hex of credential.Key(), never personal data.
	Credential string `json:"credential,omitempty"`
	// Token is the token type, e.g. "mynumber".
	Token string `json:"token,omitempty"`
	// DecisionUS is how long the decision took, in microseconds.
	DecisionUS int64 `json:"decision_us,omitempty"`
	// Detail is free text for operators; never personal data.
	Detail string `json:"detail,omitempty"`
}

// Normalized returns ev as the edge's outbox stores it: time in UTC, strings made
// valid UTF-8 (JSON would replace invalid bytes with the longer U+FFFD on
// the way, and HQ would then find the field too long), and Detail, which is
// free text, cut to MaxDetailLen at a character boundary.
func (ev Event) Normalized() Event {
	ev.Time = ev.Time.UTC()
	for _, p := range []*string{&ev.Type, &ev.Door, &ev.Reason, &ev.Credential, &ev.Token, &ev.Detail} {
		*p = strings.ToValidUTF8(*p, "\uFFFD")
	}
	if len(ev.Detail) > MaxDetailLen {
		d := ev.Detail[:MaxDetailLen]
		for !utf8.ValidString(d) {
			d = d[:len(d)-1]
		}
		ev.Detail = d
	}
	return ev
}

// Equal reports whether ev and o are the same event: every field equal,
// Time as the same instant (a decoded time has no monotonic reading and
// may have another location).
func (ev Event) Equal(o Event) bool {
	if !ev.Time.Equal(o.Time) {
		return false
	}
	ev.Time, o.Time = time.Time{}, time.Time{}
	return ev == o
}

// Validate reports whether ev obeys the field rules, except for Seq, which
// the caller checks where it matters. The error wraps ErrInvalidEvent.
func (ev Event) Validate() error {
	switch ev.Type {
	case TypeDecision, TypeDoor, TypeSystem, TypeTicket:
	case "":
		return fmt.Errorf("%w: empty type", ErrInvalidEvent)
	default:
		return fmt.Errorf("%w: type %q, want %s, %s, %s or %s", ErrInvalidEvent, ev.Type, TypeDecision, TypeDoor, TypeSystem, TypeTicket)
	}
	if ev.Time.IsZero() {
		return fmt.Errorf("%w: zero time", ErrInvalidEvent)
	}
	if y := ev.Time.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: time %v outside years 0..9999", ErrInvalidEvent, ev.Time)
	}
	if ev.DecisionUS < 0 {
		return fmt.Errorf("%w: negative decision_us %d", ErrInvalidEvent, ev.DecisionUS)
	}
	for _, f := range []struct {
		name  string
		value string
		max   int
	}{
		{"type", ev.Type, MaxTypeLen},
		{"door", ev.Door, MaxDoorLen},
		{"reason", ev.Reason, MaxReasonLen},
		{"credential", ev.Credential, MaxCredentialLen},
		{"token", ev.Token, MaxTokenLen},
		{"detail", ev.Detail, MaxDetailLen},
	} {
		if len(f.value) > f.max {
			return fmt.Errorf("%w: %s is %d bytes, max %d", ErrInvalidEvent, f.name, len(f.value), f.max)
		}
	}
	return nil
}
