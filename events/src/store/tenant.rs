//! What the console's audit and usage views ask of the log for one tenant
//! or license: the streams a tenant owns, the newest events of a type in a
//! stream, and the record of verifications an admin ran (the
//! `verifications` table, outside the log).

use super::read::{from_row, COLUMNS};
use super::{EventStore, RecordedEvent, StoreError};
use crate::ids::TenantId;
use chrono::{DateTime, Utc};
use sqlx::Row as _;

/// Most problems kept with a verification.
pub const MAX_PROBLEMS: usize = 100;

/// A verification of a tenant's streams, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Verification {
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Every chain verified.
    pub ok: bool,
    /// Streams checked.
    pub streams: u64,
    /// Events checked.
    pub events: u64,
    /// What was wrong, one line each (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<String>,
}

impl EventStore {
    /// Every stream of `tenant`: its license streams and the session streams
    /// their `SeatAcquired` events name, sorted.
    pub async fn tenant_streams(&self, tenant: &TenantId) -> Result<Vec<String>, StoreError> {
        let licenses: Vec<String> = self
            .issued_licenses(Some(tenant))
            .await?
            .iter()
            .map(|l| l.stream_name())
            .collect();
        let sessions: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT 'session-' || (data->>'session_id') FROM events
             WHERE stream_id = ANY($1) AND event_type = 'SeatAcquired'",
        )
        .bind(&licenses)
        .fetch_all(&self.pool)
        .await?;
        let mut streams: Vec<String> = licenses.into_iter().chain(sessions).collect();
        streams.sort();
        Ok(streams)
    }

    /// The position of the newest event of `streams` (0 when none).
    pub async fn head_of(&self, streams: &[String]) -> Result<i64, StoreError> {
        let head: Option<i64> =
            sqlx::query_scalar("SELECT max(position) FROM events WHERE stream_id = ANY($1)")
                .bind(streams)
                .fetch_one(&self.pool)
                .await?;
        Ok(head.unwrap_or(0))
    }

    /// The newest `limit` events of type `event_type` in `stream`, newest first.
    pub async fn newest_of_type(
        &self,
        stream: &str,
        event_type: &str,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND event_type = $2
             ORDER BY stream_version DESC LIMIT $3"
        ))
        .bind(stream)
        .bind(event_type)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// Records a verification of `tenant`'s streams.
    pub async fn record_verification(
        &self,
        tenant: &TenantId,
        v: &Verification,
    ) -> Result<(), StoreError> {
        let problems = serde_json::to_value(&v.problems[..v.problems.len().min(MAX_PROBLEMS)])
            .unwrap_or_default();
        sqlx::query(
            "INSERT INTO verifications (tenant_id, started_at, finished_at, ok, streams, events, problems)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(v.started_at)
        .bind(v.finished_at)
        .bind(v.ok)
        .bind(i64::try_from(v.streams).unwrap_or(i64::MAX))
        .bind(i64::try_from(v.events).unwrap_or(i64::MAX))
        .bind(problems)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest verification of `tenant`'s streams, if any.
    pub async fn last_verification(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<Verification>, StoreError> {
        let row = sqlx::query(
            "SELECT started_at, finished_at, ok, streams, events, problems FROM verifications
             WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let problems: serde_json::Value = row.try_get("problems")?;
        let count = |name: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
        };
        Ok(Some(Verification {
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            ok: row.try_get("ok")?,
            streams: count("streams")?,
            events: count("events")?,
            problems: serde_json::from_value(problems).unwrap_or_default(),
        }))
    }
}
