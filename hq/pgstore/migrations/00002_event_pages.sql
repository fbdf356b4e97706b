-- The console's event pages (hq.EventStore.QueryPage): newest first by
-- (time, site, device, seq), each filter a backward range scan of one
-- index that yields that order. Site and device names sort in byte order
-- (COLLATE "C", as the bbolt store's keys do; changing only the collation
-- rebuilds the indexes, it does not rewrite the rows).

-- +goose Up
ALTER TABLE events ALTER COLUMN site TYPE text COLLATE "C", ALTER COLUMN device TYPE text COLLATE "C";
DROP INDEX events_site_time;
DROP INDEX events_door_time;
DROP INDEX events_credential_time;
CREATE INDEX events_time ON events (time, site, device, seq);
CREATE INDEX events_site_time ON events (site, time, device, seq);
CREATE INDEX events_device_time ON events (device, time, site, seq);
CREATE INDEX events_door_time ON events (door, time, site, device, seq) WHERE door <> '';
CREATE INDEX events_credential_time ON events (credential, time, site, device, seq) WHERE credential <> '';
CREATE INDEX events_reason_time ON events (reason, time, site, device, seq) WHERE reason <> '';
CREATE INDEX events_denied_time ON events (time, site, device, seq) WHERE type = 'decision' AND NOT granted;

-- +goose Down
DROP INDEX events_denied_time;
DROP INDEX events_reason_time;
DROP INDEX events_credential_time;
DROP INDEX events_door_time;
DROP INDEX events_device_time;
DROP INDEX events_site_time;
DROP INDEX events_time;
ALTER TABLE events ALTER COLUMN site TYPE text COLLATE "default", ALTER COLUMN device TYPE text COLLATE "default";
CREATE INDEX events_site_time ON events (site, time);
CREATE INDEX events_door_time ON events (site, door, time) WHERE door <> '';
CREATE INDEX events_credential_time ON events (credential, time) WHERE credential <> '';
