-- HQ's registry (hq/registry) on PostgreSQL: the sites' records and
-- revisions, the content hashes, the pending enrollments and people's
-- names. See hq/pgstore/registry.go. Names and keys sort in byte order
-- (COLLATE "C", bytea), as the bbolt registry's keys do, so that both
-- write the same snapshot streams.

-- +goose Up

-- One row per site: its revision (the snapshot version HQ publishes) and
-- delta floor. A change of a site locks its row (SELECT ... FOR UPDATE), so
-- the changes of one site run one at a time on any replica and revisions
-- never repeat or skip.
CREATE TABLE registry_sites (
    site  text COLLATE "C" PRIMARY KEY,
    rev   bigint NOT NULL DEFAULT 0, -- revision of the last change
    floor bigint NOT NULL DEFAULT 0  -- deltas need a version >= floor
);

-- Every record of every site, live (deleted = 0) or a tombstone that
-- deltas still need. The primary key is the registry key: kind, then the
-- record's identity.
CREATE TABLE registry_records (
    site    text COLLATE "C" NOT NULL REFERENCES registry_sites,
    kind    text COLLATE "C" NOT NULL, -- policy.RecordKind: C credential, R revoked, L link, P person, S site, D door, A area, V level, W schedule, H holiday, E event
    key     bytea  NOT NULL,           -- the identity, as in the bbolt file
    id      text   NOT NULL,           -- the identity to read: the ID, or hex for C, R and L
    body    json   NOT NULL,           -- the policy item (json: kept byte for byte)
    rev     bigint NOT NULL,           -- revision of the last change
    created bigint NOT NULL,           -- revision that created this lifetime of the key
    deleted bigint NOT NULL DEFAULT 0, -- revision that deleted it (0: live)
    hist    jsonb,                     -- earlier lifetimes [[created, deleted], ...]
    PRIMARY KEY (site, kind, key)
);
-- A site's live records of one kind paged by key (snapshots, the console).
CREATE INDEX registry_records_live ON registry_records (site, kind, key) WHERE deleted = 0;
-- The change log: what changed after a version (deltas).
CREATE INDEX registry_records_log ON registry_records (site, rev, kind, key);
-- People's records by person, for the console (entries name their person).
CREATE INDEX registry_records_person ON registry_records (site, (body->>'Person')) WHERE kind = 'C' AND deleted = 0;

-- Content hashes of sites at revisions, cached by the snapshot writer.
CREATE TABLE registry_hashes (
    site text COLLATE "C" NOT NULL REFERENCES registry_sites,
    rev  bigint NOT NULL,
    hash bytea  NOT NULL,
    PRIMARY KEY (site, rev)
);

-- Enrollments from devices waiting for an admin's approval. A device
-- re-sending one (site, device, seq) stores nothing: the unique key.
CREATE TABLE registry_pending (
    id       text        PRIMARY KEY,
    site     text        COLLATE "C" NOT NULL,
    device   text        COLLATE "C" NOT NULL,
    seq      bigint      NOT NULL,
    received timestamptz NOT NULL,
    record   json        NOT NULL, -- reader.EnrollmentRecord as the device sent it
    UNIQUE (site, device, seq)
);
CREATE INDEX registry_pending_received ON registry_pending (received);

-- People's names (HQ only: never in a snapshot).
CREATE TABLE registry_names (
    site   text COLLATE "C" NOT NULL,
    person text COLLATE "C" NOT NULL,
    name   text NOT NULL,
    PRIMARY KEY (site, person)
);

-- +goose Down
DROP TABLE registry_names;
DROP TABLE registry_pending;
DROP TABLE registry_hashes;
DROP TABLE registry_records;
DROP TABLE registry_sites;
