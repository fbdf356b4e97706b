-- The console's accounts and sessions (hq/console/auth/pgaccounts), so
-- that several tobira-hq replicas share them and "tobira-hq console
-- reset-password" works while "tobira-hq serve" runs. An account is one
-- row; its passkeys are a JSON array (a handful per account). Sessions
-- are keyed by the SHA-256 of their token, so the table holds no usable
-- session.

-- +goose Up
CREATE TABLE console_users (
    name text COLLATE "C" PRIMARY KEY,
    role text NOT NULL,
    sites text[] NOT NULL,
    password_hash text NOT NULL DEFAULT '',
    must_change boolean NOT NULL DEFAULT false,
    disabled boolean NOT NULL DEFAULT false,
    generation bigint NOT NULL DEFAULT 0,
    handle bytea UNIQUE,
    passkeys jsonb NOT NULL DEFAULT '[]',
    updated timestamptz NOT NULL
);
CREATE TABLE console_sessions (
    token_hash bytea PRIMARY KEY,
    data bytea NOT NULL,
    expiry timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expiry);

-- +goose Down
DROP TABLE console_sessions;
DROP TABLE console_users;
