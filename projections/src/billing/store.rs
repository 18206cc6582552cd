//! The billing consumer's durable state in Postgres: the ids of the events
//! it has billed, the sessions not billed yet, and the totals per tenant.
//!
//! Every billable event is one transaction: its id is inserted first (a
//! conflict means it was billed already and nothing else changes), then the
//! session's span is merged and, once both ends are known, billed to the
//! tenant's totals. The caller acknowledges the message only after
//! [`BillingStore::record`] returns, so a crash between commit and ack is a
//! redelivery that the id check drops.
//!
//! Owns the tables `billing_seen_events`, `billing_sessions` and
//! `billing_tenant_totals` in a schema of its own ([`SchemaName`]), created
//! idempotently by [`BillingStore::open`]. Must not: touch the event log's
//! tables or migrations; decide billing rules (they are [`super::fold`]'s).

use super::fold::{Fact, SessionSpan, TenantTotals};
use super::Envelope;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::fmt;

/// A Postgres schema name the store may put its tables in: 1 to 63 of
/// `a-z`, `0-9`, `_`, not starting with a digit (it is spliced into SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaName(String);

/// A string that is not a valid [`SchemaName`].
#[derive(Debug, thiserror::Error)]
#[error("invalid schema name {0:?}: use 1-63 of a-z, 0-9 and _, not starting with a digit")]
pub struct InvalidSchemaName(String);

impl SchemaName {
    /// Checks a schema name.
    pub fn parse(name: &str) -> Result<Self, InvalidSchemaName> {
        let ok = (1..=63).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidSchemaName(name.to_owned()))
        }
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failure of the billing database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres refused or the connection failed.
    #[error("billing database")]
    Database(#[from] sqlx::Error),
}

/// What [`BillingStore::record`] did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A billable event seen for the first time: its effect is committed.
    Applied,
    /// A billable event already recorded: nothing changed.
    Duplicate,
    /// Not a billing event: nothing stored.
    Ignored,
}

/// The billing consumer's tables in one schema.
#[derive(Debug, Clone)]
pub struct BillingStore {
    pool: PgPool,
    schema: SchemaName,
}

/// A session row as the upsert returns it.
type SpanRow = (Option<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

impl BillingStore {
    /// Creates the schema and tables if missing (safe to run concurrently)
    /// and returns the store.
    pub async fn open(pool: PgPool, schema: SchemaName) -> Result<Self, StoreError> {
        let s = &schema;
        let ddl = [
            format!("CREATE SCHEMA IF NOT EXISTS {s}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {s}.billing_seen_events (
                    event_id uuid PRIMARY KEY,
                    position bigint NOT NULL,
                    recorded_at timestamptz NOT NULL,
                    billed_at timestamptz NOT NULL DEFAULT now())"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {s}.billing_sessions (
                    session_id text PRIMARY KEY,
                    tenant text,
                    started_at timestamptz,
                    ended_at timestamptz)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {s}.billing_tenant_totals (
                    tenant text PRIMARY KEY,
                    seat_micros bigint NOT NULL,
                    sessions_closed bigint NOT NULL)"
            ),
        ];
        let mut tx = pool.begin().await?;
        // IF NOT EXISTS still races with a concurrent CREATE: serialize.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('billing:' || $1))")
            .bind(&schema.0)
            .execute(&mut *tx)
            .await?;
        for statement in &ddl {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Self { pool, schema })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &SchemaName {
        &self.schema
    }

    /// Records one event exactly once (see the module doc).
    #[tracing::instrument(skip_all, fields(event_id = %event.event_id))]
    pub async fn record(&self, event: &Envelope) -> Result<Recorded, StoreError> {
        let fact = Fact::of(event);
        let Some(session) = fact.session() else {
            return Ok(Recorded::Ignored);
        };
        let s = &self.schema;
        let mut tx = self.pool.begin().await?;
        let fresh = sqlx::query(&format!(
            "INSERT INTO {s}.billing_seen_events (event_id, position, recorded_at)
             VALUES ($1, $2, $3) ON CONFLICT (event_id) DO NOTHING"
        ))
        .bind(event.event_id)
        .bind(event.position)
        .bind(event.recorded_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        }
        // The upsert locks the row, so a concurrent start and end of one
        // session serialize and exactly one of them sees both ends. COALESCE
        // keeps the first start and first end, as `SessionSpan::merge` does.
        let (tenant, started_at, ended_at) = match &fact {
            Fact::Started { tenant, at, .. } => (Some(tenant.as_str()), Some(*at), None),
            Fact::Ended { at, .. } => (None, None, Some(*at)),
            Fact::Other => (None, None, None),
        };
        let row: SpanRow = sqlx::query_as(&format!(
            "INSERT INTO {s}.billing_sessions AS b (session_id, tenant, started_at, ended_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (session_id) DO UPDATE SET
                 tenant = CASE WHEN b.started_at IS NULL THEN EXCLUDED.tenant ELSE b.tenant END,
                 started_at = COALESCE(b.started_at, EXCLUDED.started_at),
                 ended_at = COALESCE(b.ended_at, EXCLUDED.ended_at)
             RETURNING tenant, started_at, ended_at"
        ))
        .bind(session)
        .bind(tenant)
        .bind(started_at)
        .bind(ended_at)
        .fetch_one(&mut *tx)
        .await?;
        let span = SessionSpan {
            tenant: row.0,
            started_at: row.1,
            ended_at: row.2,
        };
        if let Some((tenant, micros)) = span.billable() {
            sqlx::query(&format!(
                "DELETE FROM {s}.billing_sessions WHERE session_id = $1"
            ))
            .bind(session)
            .execute(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "INSERT INTO {s}.billing_tenant_totals AS t (tenant, seat_micros, sessions_closed)
                 VALUES ($1, $2, 1)
                 ON CONFLICT (tenant) DO UPDATE SET
                     seat_micros = t.seat_micros + EXCLUDED.seat_micros,
                     sessions_closed = t.sessions_closed + 1"
            ))
            .bind(tenant)
            .bind(micros)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Recorded::Applied)
    }

    /// Billed totals per tenant.
    pub async fn totals(&self) -> Result<BTreeMap<String, TenantTotals>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT tenant, seat_micros, sessions_closed FROM {}.billing_tenant_totals",
            self.schema
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(tenant, seat_micros, closed)| {
                let totals = TenantTotals {
                    seat_micros,
                    sessions_closed: u64::try_from(closed).unwrap_or(0),
                };
                (tenant, totals)
            })
            .collect())
    }

    /// Sessions holding a seat (started, not ended, so not billed yet).
    pub async fn open_sessions(&self) -> Result<u64, StoreError> {
        self.count("billing_sessions WHERE started_at IS NOT NULL")
            .await
    }

    /// Billable events recorded so far.
    pub async fn events_recorded(&self) -> Result<u64, StoreError> {
        self.count("billing_seen_events").await
    }

    async fn count(&self, from: &str) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}.{from}", self.schema))
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["billing", "t_0a1b", "_x", "b2"] {
            assert!(SchemaName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Billing", "2x", "a;drop", "a.b", "a b", &"x".repeat(64)] {
            assert!(SchemaName::parse(bad).is_err(), "{bad}");
        }
    }
}
