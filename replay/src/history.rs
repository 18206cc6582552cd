//! Reading one license's history from the log, decoded, with recorded times.
//!
//! Read through the same seam as the live system ([`events::aggregate`]),
//! and folded with its own `apply` functions (`events::license`,
//! `events::session`): no second copy of the rules lives here.

use chrono::{DateTime, Utc};
use events::aggregate;
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, TenantId};
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
    read_stream(store, stream, Some(until)).await
}

/// Every event of `stream` (recorded at or before `until`, when given), in version order.
pub async fn read_stream(
    store: &EventStore,
    stream: &str,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<Timed>> {
    Ok(aggregate::read_decoded(store, stream, until)
        .await?
        .into_iter()
        .map(|d| Timed {
            at: d.recorded.recorded_at,
            position: d.recorded.position,
            event: d.event,
        })
        .collect())
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

/// Licenses issued to `tenant`, oldest first; an error when there are none.
pub async fn tenant_licenses(
    store: &EventStore,
    tenant: &TenantId,
) -> anyhow::Result<Vec<LicenseId>> {
    let ids = store.issued_licenses(Some(tenant)).await?;
    anyhow::ensure!(!ids.is_empty(), "tenant {tenant} has no license in the log");
    Ok(ids)
}
