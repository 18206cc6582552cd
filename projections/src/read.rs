//! The read side of the projection: a license's seats, seats in use and live
//! sessions, served from Redis by `GET /api/v1/licenses/{id}/usage`.
//!
//! This view lags the log by the projection lag; every answer carries the
//! position it reflects and that lag. Must not: write anything.

use crate::keys;
use crate::projection::{ProjectionError, RedisProjection};
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use std::collections::HashMap;
use uuid::Uuid;

/// One live session as projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUsage {
    /// The session.
    pub session_id: Uuid,
    /// Its holder.
    pub user_id: String,
    /// The machine.
    pub hardware_id: String,
    /// Current deadline (latest heartbeat's).
    pub deadline: DateTime<Utc>,
}

/// A live session with what the session hash adds (for admins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetail {
    /// The session as in [`LicenseUsage::sessions`].
    pub usage: SessionUsage,
    /// When its `SeatAcquired` (or revival) was recorded.
    pub since: Option<DateTime<Utc>>,
    /// When its latest heartbeat was recorded (`None`: none yet).
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// The `exp` of its latest token (`None`: none minted yet).
    pub token_expires_at: Option<DateTime<Utc>>,
}

/// A license's usage as projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseUsage {
    /// Owning tenant.
    pub tenant_id: String,
    /// Product.
    pub product: String,
    /// Concurrent seats.
    pub seats: u32,
    /// Seats held by live sessions.
    pub in_use: u32,
    /// Whether acquires are refused.
    pub suspended: bool,
    /// Denied acquires today (UTC).
    pub denials_today: u64,
    /// Applied version of the license stream.
    pub version: i64,
    /// Live sessions, earliest deadline first.
    pub sessions: Vec<SessionUsage>,
    /// Log position of the newest event the projection holds.
    pub as_of_position: i64,
    /// Commit-to-Redis lag of that event, in milliseconds.
    pub projection_lag_ms: i64,
}

impl RedisProjection {
    /// The projected usage of `license` (`None`: not in the projection).
    pub async fn usage(&self, license: Uuid) -> Result<Option<LicenseUsage>, ProjectionError> {
        let p = self.prefix();
        let mut conn = self.connection();
        #[allow(clippy::type_complexity)]
        let (hash, zset, holders, meta): (
            HashMap<String, String>,
            Vec<(String, i64)>,
            HashMap<String, String>,
            HashMap<String, String>,
        ) = redis::pipe()
            .hgetall(keys::license(p, license))
            .zrange_withscores(keys::sessions(p, license), 0, -1)
            .hgetall(keys::holders(p, license))
            .hgetall(keys::meta(p))
            .query_async(&mut conn)
            .await?;
        if !hash.contains_key("tenant") {
            return Ok(None);
        }
        let field = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        let num = |m: &HashMap<String, String>, k: &str| {
            m.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0)
        };
        let today = Utc::now().format("%Y-%m-%d").to_string();
        let sessions = zset
            .into_iter()
            .filter_map(|(session, deadline_ms)| {
                let holder = holders.get(&session)?;
                let mut parts = holder.splitn(3, '\t');
                let _version = parts.next()?;
                let hardware_id = parts.next()?.to_owned();
                let user_id = parts.next()?.to_owned();
                Some(SessionUsage {
                    session_id: Uuid::parse_str(&session).ok()?,
                    user_id,
                    hardware_id,
                    deadline: DateTime::from_timestamp_millis(deadline_ms)?,
                })
            })
            .collect();
        Ok(Some(LicenseUsage {
            tenant_id: field(&hash, "tenant"),
            product: field(&hash, "product"),
            seats: num(&hash, "seats").max(0) as u32,
            in_use: num(&hash, "in_use").max(0) as u32,
            suspended: num(&hash, "suspended") == 1,
            denials_today: if field(&hash, "denials_day") == today {
                num(&hash, "denials_today").max(0) as u64
            } else {
                0
            },
            version: hash
                .get("version")
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1),
            sessions,
            as_of_position: num(&meta, "position"),
            projection_lag_ms: (num(&meta, "applied_at_ms") - num(&meta, "recorded_at_ms")).max(0),
        }))
    }

    /// The live sessions of `usage` with their session hashes' times, in
    /// one round trip.
    pub async fn session_details(
        &self,
        usage: &LicenseUsage,
    ) -> Result<Vec<SessionDetail>, ProjectionError> {
        let mut pipe = redis::pipe();
        for s in &usage.sessions {
            pipe.hget(
                keys::session(self.prefix(), s.session_id),
                &["since", "last_heartbeat", "token_expires"],
            );
        }
        let times: Vec<Vec<Option<i64>>> = if usage.sessions.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.connection()).await?
        };
        let at = |ms: Option<&Option<i64>>| {
            ms.copied()
                .flatten()
                .and_then(DateTime::from_timestamp_millis)
        };
        Ok(usage
            .sessions
            .iter()
            .zip(times.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(s, t)| SessionDetail {
                usage: s.clone(),
                since: at(t.and_then(|t| t.first())),
                last_heartbeat: at(t.and_then(|t| t.get(1))),
                token_expires_at: at(t.and_then(|t| t.get(2))),
            })
            .collect())
    }

    /// The session hash's fields (`None`: ended, or past its deadline).
    pub async fn session_fields(
        &self,
        session: Uuid,
    ) -> Result<Option<HashMap<String, String>>, ProjectionError> {
        let map: HashMap<String, String> = self
            .connection()
            .hgetall(keys::session(self.prefix(), session))
            .await?;
        Ok((!map.is_empty()).then_some(map))
    }
}
