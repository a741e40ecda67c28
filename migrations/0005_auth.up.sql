-- Users and API keys, in a schema of their own: the read-only role Grafana connects as
-- (deployments/postgres/reader-role.sql) is granted SELECT on schema public only, so it can
-- read neither password hashes nor key hashes, even after a re-run of that script.
CREATE SCHEMA devopstic_auth;

-- The people (or scripts) that log in with POST /tokens. password_hash is bcrypt's own
-- encoding (cost and salt included), so the cost can be raised for new passwords later.
CREATE TABLE devopstic_auth.users (
    name                text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$'),
    role                text NOT NULL CHECK (role IN ('admin', 'reader')),
    password_hash       text NOT NULL CHECK (password_hash LIKE '$2%'),
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now()
);

-- API keys for CI pipelines. Only the SHA-256 of a key is kept: the key is 256 random bits,
-- so a fast hash is as good as a slow one (nothing to brute-force). prefix is the key's first
-- characters, to tell keys apart in a listing; it reveals 24 of the 256 bits.
CREATE TABLE devopstic_auth.api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9._-]{0,63}$'),
    scopes     text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['events:write', 'metrics:read']),
    key_hash   text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    prefix     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
