//! Reading one license's history from the log, decoded, with recorded times.
//!
//! The audit commands fold these with the live system's own `apply`
//! functions (`events::license`, `events::session`): no second copy of the
//! rules lives here.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, SessionId, TenantId};
use events::store::EventStore;

/// A decoded event with the log's time and position.
#[derive(Debug, Clone)]
pub struct Timed {
    /// When the log recorded it.
    pub at: DateTime<Utc>,
    /// Its global position.
    pub position: i64,
    /// The event.
    pub event: LicenseEvent,
}

/// Every event of `stream` recorded at or before `until`, in version order.
pub async fn read_stream_until(
    store: &EventStore,
    stream: &str,
    until: DateTime<Utc>,
) -> anyhow::Result<Vec<Timed>> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let batch = store.read_stream(stream, from, 10_000).await?;
        for e in &batch {
            from = e.stream_version + 1;
            if e.recorded_at > until {
                continue;
            }
            let event = LicenseEvent::from_stored(&e.event_type, e.schema_version, &e.data)
                .with_context(|| {
                    format!(
                        "decoding {} version {} (position {})",
                        e.stream_id, e.stream_version, e.position
                    )
                })?;
            out.push(Timed {
                at: e.recorded_at,
                position: e.position,
                event,
            });
        }
        if batch.len() < 10_000 {
            return Ok(out);
        }
    }
}

/// A license's events up to `until`; an error when the log has no such license.
pub async fn license_events(
    store: &EventStore,
    license: LicenseId,
    until: DateTime<Utc>,
) -> anyhow::Result<Vec<Timed>> {
    let stream = license.stream_name();
    if store.stream_version(&stream).await?.is_none() {
        anyhow::bail!("license {license} not found in the log (no stream {stream})");
    }
    read_stream_until(store, &stream, until).await
}

/// A session's stream up to `until`.
pub async fn session_events(
    store: &EventStore,
    session: SessionId,
    until: DateTime<Utc>,
) -> anyhow::Result<Vec<Timed>> {
    read_stream_until(store, &session.stream_name(), until).await
}

/// Licenses issued to `tenant`, oldest first; an error when there are none.
pub async fn tenant_licenses(
    store: &EventStore,
    tenant: &TenantId,
) -> anyhow::Result<Vec<LicenseId>> {
    let ids = licensed::service::lookup::licenses_of_tenant(store.pool(), tenant).await?;
    anyhow::ensure!(!ids.is_empty(), "tenant {tenant} has no license in the log");
    Ok(ids)
}
