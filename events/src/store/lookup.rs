//! Lookups over the log that one stream cannot answer: which licenses a
//! tenant has, which license a session belongs to, and the position/hash
//! scans of the whole log that audits and exports need. The first two read
//! partial expression indexes of the events table (see the migrations).

use super::read::{from_row, COLUMNS};
use super::{EventStore, RecordedEvent, StoreError};
use crate::ids::{LicenseId, SessionId, TenantId, UserId};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use sqlx::Row as _;
use uuid::Uuid;

impl EventStore {
    /// Licenses issued to `tenant` (every license when `None`), oldest first.
    pub async fn issued_licenses(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<LicenseId>, StoreError> {
        // Two statements so that each can use its index (the tenant one is partial).
        let query = match tenant {
            Some(_) => {
                "SELECT data->>'license_id' FROM events
                 WHERE event_type = 'LicenseIssued' AND metadata->>'tenant_id' = $1 ORDER BY position"
            }
            None => "SELECT data->>'license_id' FROM events WHERE event_type = 'LicenseIssued' ORDER BY position",
        };
        let mut q = sqlx::query_scalar::<_, String>(query);
        if let Some(tenant) = tenant {
            q = q.bind(tenant.as_str());
        }
        let ids = q.fetch_all(&self.pool).await?;
        Ok(ids
            .iter()
            .filter_map(|s| s.parse::<Uuid>().ok())
            .map(LicenseId::from_uuid)
            .collect())
    }

    /// The `SeatAcquired` event that created `session`.
    pub async fn acquisition_of(
        &self,
        session: SessionId,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events
             WHERE event_type = 'SeatAcquired' AND data->>'session_id' = $1 LIMIT 1"
        ))
        .bind(session.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// When the first event after `position` was recorded, leaving out
    /// stream `skip` when given (`None`: no such event yet).
    pub async fn recorded_after(
        &self,
        position: i64,
        skip: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT recorded_at FROM events
             WHERE position > $1 AND ($2::text IS NULL OR stream_id <> $2)
             ORDER BY position LIMIT 1",
        )
        .bind(position)
        .bind(skip)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The event at global `position`, if any.
    pub async fn event_by_position(
        &self,
        position: i64,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE position = $1"))
            .bind(position)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// The event at `version` of `stream`, if any.
    pub async fn event_at(
        &self,
        stream: &str,
        version: i64,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        Ok(self.read_stream(stream, version, 1).await?.pop())
    }

    /// The license a session was acquired on, and its holder.
    pub async fn session_owner(
        &self,
        session: SessionId,
    ) -> Result<Option<(LicenseId, UserId)>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT metadata->>'license_id', data->>'user_id' FROM events
             WHERE event_type = 'SeatAcquired' AND data->>'session_id' = $1 LIMIT 1",
        )
        .bind(session.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(license, user)| {
            Some((
                LicenseId::from_uuid(license.parse::<Uuid>().ok()?),
                UserId::parse(&user).ok()?,
            ))
        }))
    }

    /// First and last position of the events recorded in `[from, to]`
    /// (either bound open when `None`); `None` when there are none.
    pub async fn position_range(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let start: Option<i64> = sqlx::query_scalar(
            "SELECT min(position) FROM events WHERE $1::timestamptz IS NULL OR recorded_at >= $1",
        )
        .bind(from)
        .fetch_one(&self.pool)
        .await?;
        let end: Option<i64> = sqlx::query_scalar(
            "SELECT max(position) FROM events WHERE $1::timestamptz IS NULL OR recorded_at <= $1",
        )
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        Ok(match (start, end) {
            (Some(s), Some(e)) if s <= e => Some((s, e)),
            _ => None,
        })
    }

    /// Number of events with a position in `[from, to]`.
    pub async fn count_between(&self, from: i64, to: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM events WHERE position BETWEEN $1 AND $2")
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// `(position, chain hash)` of every event with `after < position < before`
    /// (`before` open when `None`), in position order, streamed: the input of
    /// the log-wide running hash ([`crate::audit`]).
    pub fn chain_hashes(
        &self,
        after: i64,
        before: Option<i64>,
    ) -> impl Stream<Item = Result<(i64, Vec<u8>), StoreError>> + '_ {
        sqlx::query(
            "SELECT position, hash FROM events
             WHERE position > $1 AND ($2::bigint IS NULL OR position < $2) ORDER BY position",
        )
        .bind(after)
        .bind(before)
        .fetch(&self.pool)
        .map(|row| {
            let row = row?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        })
    }

    /// Answers when the database does (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
