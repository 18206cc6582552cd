-- Two roles, so that the service cannot rewrite history:
--
--   ledger_owner   owns the tables; used only to migrate (nobody logs in as
--                  it: the migration user is made a member).
--   ledger_writer  what the service runs as (`licensed migrate --grant-writer
--                  LOGIN` grants it to the service's login): reads, appends
--                  events, moves stream heads and consumer cursors. It cannot
--                  UPDATE, DELETE or TRUNCATE `events`.
--
-- Roles are cluster-wide: created once, whichever schema migrates first
-- (the advisory lock serialises concurrent migrations of several schemas).
-- A later migration that creates a table must also hand it to ledger_owner
-- and grant ledger_writer what it needs.

DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('license-ledger: roles'));
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_owner') THEN
        CREATE ROLE ledger_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_writer') THEN
        CREATE ROLE ledger_writer NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'ledger_owner', 'MEMBER') THEN
        EXECUTE format('GRANT ledger_owner TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ledger_writer', current_schema());
END
$$;

ALTER TABLE streams OWNER TO ledger_owner;
ALTER TABLE events OWNER TO ledger_owner;
ALTER TABLE checkpoints OWNER TO ledger_owner;

-- The log: read and append, nothing else.
GRANT SELECT, INSERT ON events TO ledger_writer;
-- Stream heads (version, last hash) move with every append.
GRANT SELECT, INSERT, UPDATE ON streams TO ledger_writer;
-- Consumer cursors (publisher, projector).
GRANT SELECT, INSERT, UPDATE ON checkpoints TO ledger_writer;
