-- Ticket marks (hq.MarkStore on PostgreSQL: hq/pgstore/marks.go). Every
-- site has a counter row, locked FOR UPDATE by each Record transaction:
-- the site's marks are judged and numbered by one transaction at a time,
-- on any replica, so sequence numbers never repeat or skip and of two
-- entries of one ticket judged at once the second sees the first.

-- +goose Up
CREATE TABLE mark_sites (
    site    text COLLATE "C" PRIMARY KEY,
    head    bigint NOT NULL DEFAULT 0, -- the latest mark sequence number
    reports bigint NOT NULL DEFAULT 0  -- the latest report number
);

-- The accepted marks, numbered 1, 2, 3, ... per site (the cursor gates
-- fetch from). body is the proto.Mark with Seq and Device; at_ns orders a
-- ticket's history (nanoseconds: timestamptz keeps only microseconds).
CREATE TABLE marks (
    site   text COLLATE "C" NOT NULL REFERENCES mark_sites (site),
    seq    bigint NOT NULL,
    device text   NOT NULL,
    ticket bytea  NOT NULL,
    event  text   NOT NULL,
    door   text   NOT NULL,
    state  smallint NOT NULL, -- proto.MarkState
    at_ns  bigint NOT NULL,
    body   jsonb  NOT NULL,
    PRIMARY KEY (site, seq)
);
-- A ticket's history (Record reads it for each mark).
CREATE INDEX marks_ticket ON marks (site, ticket, at_ns);
-- Marks by event (the console's view of a ticketed event).
CREATE INDEX marks_event ON marks (site, event, seq);

-- The refusals and conflicts HQ recorded, numbered per site.
CREATE TABLE mark_reports (
    site     text COLLATE "C" NOT NULL REFERENCES mark_sites (site),
    n        bigint      NOT NULL,
    kind     text        NOT NULL,
    device   text        NOT NULL,
    received timestamptz NOT NULL,
    body     jsonb       NOT NULL,
    PRIMARY KEY (site, n)
);

-- +goose Down
DROP TABLE mark_reports;
DROP TABLE marks;
DROP TABLE mark_sites;
