-- HQ's spool (hq.Spool) in PostgreSQL: what HQ serves the devices besides
-- their events, read by whichever replica takes a device's sync-get or
-- need: the snapshot transfers with their payload chunks, the latest
-- transfer per device, the commands in force per device, the release offers
-- in force per device and per group.

-- +goose Up
CREATE TABLE spool_transfers (
    transfer  text        PRIMARY KEY,
    site      text        NOT NULL,
    device    text        NOT NULL, -- '' for a group transfer
    grp       text        NOT NULL, -- '' for a device transfer
    manifest  jsonb       NOT NULL, -- proto.Manifest
    envelope  bytea       NOT NULL, -- its signed envelope as published
    published timestamptz NOT NULL DEFAULT now()
);

-- The payload of each transfer, one row per chunk as the devices ask for
-- them (proto.Need).
CREATE TABLE spool_chunks (
    transfer text    NOT NULL REFERENCES spool_transfers ON DELETE CASCADE,
    index    integer NOT NULL,
    data     bytea   NOT NULL,
    PRIMARY KEY (transfer, index)
);

-- The transfer last published to each device ('device', name) and group
-- ('group', name).
CREATE TABLE spool_latest (
    site     text NOT NULL,
    kind     text NOT NULL CHECK (kind IN ('device', 'group')),
    name     text NOT NULL,
    transfer text NOT NULL REFERENCES spool_transfers,
    PRIMARY KEY (site, kind, name)
);

-- The commands in force for each device (hq.ModesInForce), oldest first:
-- a JSON list of {value: proto.Command, envelope}. The row is the device's
-- lock for the read-modify-write.
CREATE TABLE spool_commands (
    site     text  NOT NULL,
    device   text  NOT NULL,
    commands jsonb NOT NULL,
    PRIMARY KEY (site, device)
);

-- The release offer last sent to each device ('device', name) and group
-- ('group', name).
CREATE TABLE spool_offers (
    site     text  NOT NULL,
    kind     text  NOT NULL CHECK (kind IN ('device', 'group')),
    name     text  NOT NULL,
    offer    jsonb NOT NULL, -- proto.ReleaseOffer
    envelope bytea NOT NULL,
    PRIMARY KEY (site, kind, name)
);

-- +goose Down
DROP TABLE spool_offers;
DROP TABLE spool_commands;
DROP TABLE spool_latest;
DROP TABLE spool_chunks;
DROP TABLE spool_transfers;
