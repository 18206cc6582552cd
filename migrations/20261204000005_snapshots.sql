-- Snapshots: a cache of folded aggregate states, so that loading a long
-- stream (a license with a million events, a session with a hundred
-- thousand heartbeats) reads the newest snapshot and only the events after
-- it. Never a source of truth: every row can be deleted at any time and is
-- rebuilt from the log as streams are folded (`ledger` audits never read it).
--
-- `kind` names the aggregate and the layout of `state` (e.g. `license/1`);
-- a row of another kind is ignored, so a changed layout only costs a fold.
CREATE TABLE snapshots (
    stream_id  text PRIMARY KEY,
    kind       text NOT NULL,
    -- stream version of the last event folded into `state`
    version    bigint NOT NULL CHECK (version >= 0),
    state      jsonb NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE snapshots OWNER TO ledger_owner;
GRANT SELECT, INSERT, UPDATE, DELETE ON snapshots TO ledger_writer;
