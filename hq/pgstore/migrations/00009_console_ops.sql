-- The console's state that tobira-hq replicas share besides the audit log
-- and the alarms (00005): the publications and rollouts started from the
-- console (hq/pgstore/consoleops.go) and the wrong PINs behind the
-- wrong_pin alarm (hq/pgstore/wrongpins.go).

-- +goose Up

-- The publications and rollouts (oplog.Op), the newest oplog.Keep of each
-- kind: adding one deletes the older ones. body is the oplog.Op as JSON
-- (with the publication's manifests or the rollout's offers); the other
-- columns are what the lists show.
CREATE TABLE console_ops (
    id       text        PRIMARY KEY,
    kind     text        NOT NULL, -- publication or rollout
    at       timestamptz NOT NULL,
    site     text        NOT NULL,
    grp      text        NOT NULL,
    actor    text        NOT NULL,
    snapshot text        NOT NULL, -- full or delta (publications)
    version  text        NOT NULL, -- the release (rollouts)
    body     jsonb       NOT NULL
);
CREATE INDEX console_ops_newest ON console_ops (kind, at DESC, id DESC);

-- The wrong PINs at each door within alarm.WrongPINWindow: a pin_wrong
-- event adds a row and deletes the door's rows older than the window,
-- holding the advisory lock of the door's wrong_pin alarm, then counts the
-- door's rows. Old rows stay until the door's next wrong PIN: at most one
-- window's wrong PINs per door.
CREATE TABLE wrong_pins (
    site   text        NOT NULL,
    device text        NOT NULL,
    door   text        NOT NULL,
    at     timestamptz NOT NULL
);
CREATE INDEX wrong_pins_door ON wrong_pins (site, device, door, at);

-- +goose Down
DROP TABLE wrong_pins;
DROP TABLE console_ops;
