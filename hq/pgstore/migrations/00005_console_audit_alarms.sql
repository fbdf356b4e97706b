-- The console's audit log and alarm list (hq/pgstore/audit.go, alarms.go),
-- shared by every tobira-hq replica.

-- +goose Up

-- The audit log's head: one row, locked FOR UPDATE by every append, so
-- replicas appending at once still make one chain (seq 1, 2, 3, ... each
-- entry's prev the hash of the one before).
CREATE TABLE audit_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint NOT NULL DEFAULT 0, -- the newest entry (0: none)
    hash text   NOT NULL DEFAULT '' -- its hash
);
INSERT INTO audit_head DEFAULT VALUES;

-- The entries: entry is the audit.Entry as JSON, which its hash covers;
-- time, actor and action are copies to query by.
CREATE TABLE audit_log (
    seq    bigint PRIMARY KEY,
    time   timestamptz NOT NULL,
    actor  text        NOT NULL,
    action text        NOT NULL,
    entry  jsonb       NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);

-- The alarms by ID (alarm.ID: site, device, door and kind); body is the
-- alarm.Alarm as JSON. A change to one alarm holds a transaction-level
-- advisory lock on its ID (the row may not exist yet).
CREATE TABLE alarms (
    id    text PRIMARY KEY,
    state text        NOT NULL,
    last  timestamptz NOT NULL,
    body  jsonb       NOT NULL
);
CREATE INDEX alarms_standing ON alarms (last) WHERE state <> 'cleared';

-- +goose Down
DROP TABLE alarms;
DROP TABLE audit_log;
DROP TABLE audit_head;
