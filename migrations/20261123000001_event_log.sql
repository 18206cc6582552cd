-- The event log: the only source of truth of License Ledger.
--
-- `streams` holds each stream's current version and chain head; appends lock
-- the stream's row (optimistic concurrency: the expected version is compared
-- under that lock). `events` is append-only: the global `position` is taken
-- after the stream lock, so within a stream position order = version order.

CREATE TABLE streams (
    stream_id  text PRIMARY KEY,
    -- version of the stream's last event; -1 while the stream has none
    version    bigint NOT NULL,
    -- hash of the stream's last event (32 zero bytes while it has none)
    last_hash  bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    stream_id      text NOT NULL,
    stream_version bigint NOT NULL CHECK (stream_version >= 0),
    event_type     text NOT NULL,
    schema_version integer NOT NULL,
    data           jsonb NOT NULL,
    metadata       jsonb NOT NULL,
    recorded_at    timestamptz NOT NULL,
    -- the appending transaction (diagnostics of tailing stalls)
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    UNIQUE (stream_id, stream_version)
);

-- Consumers (publisher, projector) keep their checkpoint here, in the same
-- database as the log they tail.
CREATE TABLE checkpoints (
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
