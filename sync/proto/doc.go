// Package proto is tobira's wire contract between a device (the edge) and
// headquarters (HQ) over MQTT 3.1.1, version tobira/v1: every topic, every
// payload type with its encoding, decoding and validation, the rule for
// site and device names, and the errors a receiver reports. It is written
// to be read next to docs/PROTOCOL.md.
//
// The package holds no MQTT client and no storage: the edge's end of the
// link is package sync, HQ's end is package hq, and both speak through the
// types here. Signed messages use the envelope of internal/signed; the
// Sign* and Open* helpers here do the contract's part (kind, encoding,
// form), the receiver decides whether a message is for it, current and not
// replayed.
//
// # Topics
//
// Every per-device topic is tobira/v1/{site}/{device}/{leaf} (Topic,
// ParseTopic), where site and device pass CheckName: 1..64 characters from
// A-Z a-z 0-9 . _ -. The leaves, by direction:
//
//	edge -> HQ   events (Batch)    status (Status, retained; also the last will)
//	             result (Result)   need (Need)   enroll (Enrollment)   marks (MarkBatch)
//	             release-get (ReleaseGet)   release-report (ReleaseReport, retained)
//	             sync-get (SyncGet)
//	HQ -> edge   ack (Ack)         cmd (signed Command)   snapshot (signed Manifest, retained)
//	             chunk (EncodeChunk)   enroll-ack (Ack)   peer-marks (signed MarkBatch)
//	             release (signed ReleaseOffer, retained)   release-chunk (EncodeReleaseChunk)
//	             sync (SyncAnswer of signed manifests, offers and commands)
//
// plus one group topic, tobira/v1/{site}/groups/{group}/release
// (ReleaseGroupTopic). HQ subscribes with the *Subscription filters.
//
// # Events
//
// An events payload (Batch) holds 1..MaxBatch events with consecutive
// sequence numbers, oldest first, and is at most MaxPayload bytes.
// Sequence numbers start at 1 for each device and never repeat. An ack
// {"seq":N} is cumulative: HQ holds every event of the device with a
// sequence number <= N, and the edge deletes them then, and only then.
// Malformed messages (bad JSON, a payload whose site or device differs from
// its topic, sequence number 0, a gap inside a batch, too big) are
// rejected with ErrMalformed; nothing is stored and nothing acknowledged.
package proto
