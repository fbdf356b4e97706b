package proto

import "errors"

// Errors of the contract. Decoders wrap ErrMalformed with the input that
// caused it; receivers of signed messages report the others in
// Result.Error and wrap them in their errors. Test with errors.Is.
var (
	// ErrMalformed means a message, or its topic, could not be decoded or
	// breaks the protocol (bad JSON, wrong site or device, sequence number
	// 0, gaps inside a batch, too big). Nothing is stored.
	ErrMalformed = errors.New("malformed message")

	// ErrInvalidEvent means an event breaks the field rules of the wire
	// format (missing type or time, a field too long). The edge's outbox
	// refuses such an event so that it never queues something HQ would
	// reject.
	ErrInvalidEvent = errors.New("invalid event")

	// ErrExpired means a command's or a release offer's expiry has passed,
	// or a command's lifetime exceeds MaxCommandLifetime.
	ErrExpired = errors.New("expired")

	// ErrReplayed means a command's ID was seen before, a snapshot's
	// version is not newer than the one in force, or a release offer was
	// issued before the last one accepted.
	ErrReplayed = errors.New("replayed")

	// ErrWrongDevice means a signed message is addressed to another
	// device (or site, or group).
	ErrWrongDevice = errors.New("addressed to another device")

	// ErrOutOfOrder means a delta snapshot does not start at the version
	// in force.
	ErrOutOfOrder = errors.New("out of order")

	// ErrMismatch means a snapshot's bytes do not match the size or
	// SHA-256 of its signed manifest (truncated or altered).
	ErrMismatch = errors.New("content does not match the signed manifest")
)
