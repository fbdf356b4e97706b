package proto

import (
	"crypto/ed25519"
	"fmt"

	"github.com/tobira-ac/tobira/internal/signed"
)

// The online check of single-entry tickets:
//
//	tobira/v1/{site}/{device}/ticket-check    edge -> HQ, QoS 1: TicketCheck
//	tobira/v1/{site}/{device}/ticket-verdict  HQ -> edge, QoS 1: signed TicketVerdict
//
// A gate with a link asks before it admits a ticket's entry and waits at
// most its budget; HQ judges the entry like a mark, stores it when no entry
// of the ticket is held (first asker wins, in one commit) and answers. The
// gate's own mark of that entry, which its outbox sends later, is then a
// duplicate at HQ.

// Verdicts.
const (
	// VerdictAdmit: HQ stored the entry.
	VerdictAdmit = "admit"
	// VerdictUsed: HQ holds an entry of the ticket already (Holder).
	VerdictUsed = "used"
	// VerdictUnknown: HQ has no opinion (the mark was refused, e.g. a door
	// of another group); the gate decides locally.
	VerdictUnknown = "unknown"
	// KindTicketVerdict is the signed.Envelope kind of TicketVerdict.
	KindTicketVerdict = "ticket-verdict"
)

// TicketCheck is the payload of a ticket-check message.
type TicketCheck struct {
	// Site and Device name the asking gate (the topic's levels).
	Site string `json:"site"`
	// Device is the asking gate.
	Device string `json:"device"`
	// ID is a random number the verdict repeats.
	ID uint64 `json:"id"`
	// Mark is the entry the gate would record.
	Mark Mark `json:"mark"`
}

// Validate reports whether c is well formed. The error wraps ErrMalformed.
func (c TicketCheck) Validate() error {
	if CheckName(c.Site) != nil || CheckName(c.Device) != nil {
		return fmt.Errorf("%w: ticket-check: site %q, device %q", ErrMalformed, c.Site, c.Device)
	}
	if c.Mark.State != MarkIn {
		return fmt.Errorf("%w: ticket-check of state %d, want an entry", ErrMalformed, c.Mark.State)
	}
	return c.Mark.validate(0)
}

// DecodeTicketCheck parses a ticket-check payload received on topic. The
// error wraps ErrMalformed.
func DecodeTicketCheck(topic string, payload []byte) (TicketCheck, error) {
	site, device, err := parseDeviceTopic(topic, LeafTicketCheck)
	if err != nil {
		return TicketCheck{}, err
	}
	c, err := decodeJSON[TicketCheck]("ticket-check", payload, maxSmallPayload*4)
	if err == nil && (c.Site != site || c.Device != device) {
		err = fmt.Errorf("%w: ticket-check from %s/%s on topic of %s/%s", ErrMalformed, c.Site, c.Device, site, device)
	}
	return c, err
}

// TicketVerdict is the signed payload of a ticket-verdict message.
type TicketVerdict struct {
	// Site and Device name the gate that asked.
	Site string `json:"site"`
	// Device is the gate that asked.
	Device string `json:"device"`
	// ID repeats the check's ID.
	ID uint64 `json:"id"`
	// Verdict is VerdictAdmit, VerdictUsed or VerdictUnknown.
	Verdict string `json:"verdict"`
	// Holder is, for VerdictUsed, the entry HQ holds.
	Holder *Mark `json:"holder,omitempty"`
}

// Validate reports whether v is well formed. The error wraps ErrMalformed.
func (v TicketVerdict) Validate() error {
	if CheckName(v.Site) != nil || CheckName(v.Device) != nil {
		return fmt.Errorf("%w: ticket-verdict: site %q, device %q", ErrMalformed, v.Site, v.Device)
	}
	switch v.Verdict {
	case VerdictAdmit, VerdictUnknown:
		return nil
	case VerdictUsed:
		if v.Holder == nil {
			return fmt.Errorf("%w: ticket-verdict used without the holder", ErrMalformed)
		}
		return v.Holder.validate(0)
	}
	return fmt.Errorf("%w: ticket-verdict %q", ErrMalformed, v.Verdict)
}

// SignTicketVerdict returns the signed ticket-verdict envelope of v (HQ).
func SignTicketVerdict(priv ed25519.PrivateKey, v TicketVerdict) ([]byte, error) {
	return signJSON(priv, KindTicketVerdict, v)
}

// OpenTicketVerdict verifies a ticket-verdict envelope with ver and
// decodes it (device). Errors wrap ErrMalformed or one of signed's errors.
func OpenTicketVerdict(ver *signed.Verifier, envelope []byte) (TicketVerdict, error) {
	return openJSON[TicketVerdict](ver, KindTicketVerdict, envelope, maxSmallPayload*4)
}
