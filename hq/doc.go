// Package hq is the headquarters end of tobira's link: the service that
// takes what the devices of many sites send over MQTT, and the tools that
// send to them. It speaks the wire contract of sync/proto; the devices'
// end is package sync.
//
// # Parts
//
//   - Service (Open, Run): subscribes to every device's events and stores
//     each event once, acknowledging end to end (Ingest); keeps the
//     devices' status and command/snapshot results (Fleet, Result, Query);
//     re-sends the snapshot chunks devices ask for, from the spool;
//     answers every device's sync-get (on every connection) with what
//     is in force for it, from the Spool (FileSpool, or PostgreSQL:
//     hq/pgstore), which every replica reads;
//     relays ticket marks between the gates of a site, signed with HQ's
//     key; takes enrollment records into an EnrollmentSink.
//   - Sender (DialSender): the admin's one-shot publisher of signed
//     commands and snapshots (to a device, or once to a group of a site),
//     recorded in the Spool; it collects the devices' results.
//   - ReleaseServer (DialReleaseServer): offers firmware releases to
//     devices and groups, serves their chunk requests and collects their
//     release reports into a rollout view.
//   - Package hq/registry: the people, credentials and rules of each site,
//     from which HQ builds the snapshots it publishes.
//
// HQ's store is a bbolt file (the single-machine default); see
// docs/HQ.md for operating it.
package hq
