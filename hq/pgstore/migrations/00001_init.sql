-- HQ's store on PostgreSQL: events, the devices' ack points, status and
-- results. See hq/pgstore's package comment for the design.

-- +goose Up

-- One row per device that sent events. The row is the device's lock:
-- ingest takes it FOR UPDATE, so the dedup decisions below are made by one
-- transaction at a time per device, on any replica.
CREATE TABLE devices (
    site    text   NOT NULL,
    device  text   NOT NULL,
    acked   bigint NOT NULL DEFAULT 0, -- highest seq up to which every event is held
    max_seq bigint NOT NULL DEFAULT 0, -- highest seq held (> acked: some held beyond a gap)
    stored  bigint NOT NULL DEFAULT 0, -- events held (retention subtracts what it drops)
    PRIMARY KEY (site, device)
);

-- Events, partitioned by the time HQ received them (a partition per day or
-- month, made on demand, dropped by retention). No unique constraint: it
-- would have to include "received". Dedup is by the devices row above.
CREATE TABLE events (
    site       text        NOT NULL,
    device     text        NOT NULL,
    seq        bigint      NOT NULL,
    received   timestamptz NOT NULL,
    time       timestamptz NOT NULL,
    type       text        NOT NULL,
    door       text        NOT NULL,
    granted    boolean     NOT NULL,
    reason     text        NOT NULL,
    credential text        NOT NULL, -- lower-case hex
    body       jsonb       NOT NULL  -- the event as the device sent it
) PARTITION BY RANGE (received);

-- What the console asks: a device's events in order, a site's by time,
-- a door's by time, a person's by time.
CREATE INDEX events_device_seq ON events (site, device, seq);
CREATE INDEX events_site_time ON events (site, time);
CREATE INDEX events_door_time ON events (site, door, time) WHERE door <> '';
CREATE INDEX events_credential_time ON events (credential, time) WHERE credential <> '';

-- The last status of each device (latest status per device: the key).
CREATE TABLE device_status (
    site     text        NOT NULL,
    device   text        NOT NULL,
    online   boolean     NOT NULL,
    status   jsonb       NOT NULL,
    received timestamptz NOT NULL,
    PRIMARY KEY (site, device)
);
CREATE INDEX device_status_offline ON device_status (site) WHERE NOT online;

-- Results of commands and snapshot transfers, by ID.
CREATE TABLE results (
    id       text        PRIMARY KEY,
    site     text        NOT NULL,
    device   text        NOT NULL,
    kind     text        NOT NULL,
    status   text        NOT NULL,
    body     jsonb       NOT NULL,
    received timestamptz NOT NULL
);
CREATE INDEX results_device ON results (site, device, received);

-- +goose Down
DROP TABLE results;
DROP TABLE device_status;
DROP TABLE events;
DROP TABLE devices;
