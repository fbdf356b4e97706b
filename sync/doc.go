// Package sync is the device's end of the link between a tobira device (the
// edge) and headquarters (HQ) over MQTT 3.1.1: events to HQ, at least once
// and in order, with end-to-end acknowledgements; the device's retained
// status and last will; enrollment records and ticket marks to HQ; and,
// from HQ, Ed25519-signed commands, chunked resumable signed snapshots,
// the other gates' ticket marks and firmware release offers, each checked
// against pinned HQ keys and answered with a result.
//
// The wire contract (topics, payloads, validation) is package sync/proto,
// written to be read next to docs/PROTOCOL.md; HQ's end is package hq. The
// package is named after what it does; inside it, the standard library's
// sync is imported under its own name (a package's own name is not in
// scope), and other packages import this one as tsync when they need both.
//
// # Parts
//
//   - Outbox: the durable queue (a bbolt file, fsync on). The controller
//     appends one proto.Event per decision or door happening; Append
//     assigns the sequence number. Events leave the outbox only when HQ
//     acknowledges them. The same file holds the enrollments waiting for
//     HQ, the IDs of accepted commands, the staged snapshot transfer and
//     the ticket-mark cursor.
//   - Edge: one paho connection carrying the features its EdgeConfig asks
//     for, each registering its own topics: events and acks (always),
//     status (always), enrollments (always), commands (CommandHandler),
//     snapshots (SnapshotSink) and ticket marks (MarkStore). Commands,
//     snapshots and peer marks must be signed by one of EdgeConfig.Keys;
//     forged, expired, replayed, misaddressed and out-of-order ones are
//     refused, and a proto.Result reports each. After every connection
//     the Edge asks HQ for the snapshot and the commands in force for it
//     (sync-get, fetch.go), and asks again until HQ answers, so that none
//     of it depends on a retained message or a session the broker kept.
//   - ReleaseAgent: firmware delivery on its own connection, so that bulk
//     chunks never queue in front of the events' acks: signed release
//     offers, chunked download through firmware's updater, activation when
//     the controller is idle, and a retained release report. It asks HQ
//     for the offer in force on every connection (sync-get) too.
//
// # Delivery
//
// The edge sends proto.DefaultBatch events per message and keeps at most
// DefaultWindow messages waiting for an ack. An ack is cumulative; the
// edge deletes acknowledged events then, and only then: the broker's
// PUBACK means nothing more than "the broker took it". The edge sends
// everything unacknowledged again after every (re)connection and whenever
// its oldest message waits longer than the ack timeout, so a message lost
// anywhere between the outbox and HQ's store is sent again, and HQ's
// idempotent store makes the repetition harmless. The edge drops a
// malformed ack, and an ack for a sequence number it never assigned
// (ErrAckAhead), with a log line.
package sync
