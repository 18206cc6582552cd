-- Verifications an admin ran from the console or the API
-- (`POST /api/v1/admin/audit/verifications`): which tenant, when, and what
-- the check of its streams' hash chains found. A record of audits, not a
-- fact of the license domain: it is not an event, never published, and
-- deleting a row loses only the "last verification" shown in the console.
-- The service appends rows; it never changes one.
CREATE TABLE verifications (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    ok           boolean NOT NULL,
    streams      bigint NOT NULL CHECK (streams >= 0),
    events       bigint NOT NULL CHECK (events >= 0),
    -- one string per problem found (a broken chain), at most 100
    problems     jsonb NOT NULL DEFAULT '[]'
);

CREATE INDEX verifications_by_tenant ON verifications (tenant_id, id DESC);

ALTER TABLE verifications OWNER TO ledger_owner;
GRANT SELECT, INSERT ON verifications TO ledger_writer;
GRANT USAGE ON SEQUENCE verifications_id_seq TO ledger_writer;
