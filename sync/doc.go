// Package sync is the link between a tobira device (the edge) and
// headquarters (HQ) over MQTT 3.1.1: events from the edge to HQ, at least
// once and in order, with end-to-end acknowledgements; the edge's retained
// status and last will; and, from HQ to the edge, Ed25519-signed commands
// and chunked, resumable, signed snapshots, each answered with a result.
//
// The package is named after what it does, not after the standard library's
// sync, which code in this package imports as sync.
//
// # Parts
//
//   - Outbox: the edge's durable queue (a bbolt file, fsync on). The
//     controller appends one Event per decision or door happening; Append
//     assigns the sequence number. Events leave the outbox only when HQ
//     acknowledges them.
//   - Edge: publishes the outbox to HQ through paho and applies HQ's acks.
//   - HQ: subscribes to every device's events, stores each event once,
//     acknowledges; keeps device status and results (Fleet, Query);
//     re-sends snapshot chunks devices ask for.
//   - Edge intake: verifies commands (CommandHandler) and snapshots
//     (SnapshotSink) against pinned HQ keys, refuses forged, expired,
//     replayed and out-of-order ones, and reports a Result for each.
//   - Sender: HQ's publisher of signed commands and snapshots (the CLI).
//   - Enrollment intake and ticket marks: a durable edge -> HQ channel for
//     enrollment records (Outbox.AppendEnrollment, EnrollmentSink), and
//     the relay of ticket used-marks between the gates of a site
//     (MarkStore, HQConfig.Key).
//
// HQ's registry of people, credentials and rules, which builds the
// snapshots, is sync/registry. The signed envelope lives in sync/signed;
// the embedded broker for demos in sync/broker; the mosquitto test harness in sync/mosquittotest; a
// fault-injecting TCP proxy for tests in sync/faultproxy.
//
// # Protocol (v1)
//
// The contract is written down in docs/PROTOCOL.md (status, commands,
// snapshots and results included); the events part in short:
//
// Topics live under tobira/v1/{site}/{device}/ where site and device are
// names of 1..64 characters from A-Z a-z 0-9 . _ - (see CheckName).
//
//	tobira/v1/{site}/{device}/events   edge -> HQ, QoS 1, not retained
//	    {"device":"d1","site":"s1","events":[Event, ...]}
//	tobira/v1/{site}/{device}/ack      HQ -> edge, QoS 1, not retained
//	    {"seq":N}
//
// An events payload holds 1..MaxBatch events with consecutive sequence
// numbers, oldest first, and is at most MaxPayload bytes. The edge sends
// DefaultBatch events per message and keeps at most DefaultWindow messages
// waiting for an ack. Sequence numbers start at 1 for each device and never
// repeat, also across restarts and after the outbox has emptied.
//
// An ack {"seq":N} is cumulative: HQ holds every event of the device with a
// sequence number <= N. The edge deletes those events from its outbox then,
// and only then; the broker's PUBACK means nothing more than "the broker
// took it". HQ stores idempotently by (site, device, seq): a duplicate is
// dropped but acknowledged again. HQ acknowledges only the highest
// contiguous sequence number it holds; it keeps events that arrive beyond a
// gap and acknowledges them once the gap fills.
//
// The edge sends everything unacknowledged again after every (re)connection
// and whenever its oldest message waits longer than the ack timeout, so a
// message lost anywhere between the outbox and HQ's store is sent again,
// and HQ's idempotent store makes the repetition harmless.
//
// Malformed messages (bad JSON, a payload whose site or device differs from
// its topic, sequence number 0, a gap inside a batch, too big) are rejected
// with a log line naming the topic and the problem; nothing is stored and
// nothing acknowledged. The edge drops a malformed ack, and an ack for a
// sequence number it never assigned, the same way.
package sync
