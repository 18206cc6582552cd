//! Lookups over the log that the aggregates cannot answer alone: which
//! licenses a tenant has, which license a session belongs to. Both read
//! partial expression indexes of the events table (see the migrations).

use events::ids::{LicenseId, SessionId, TenantId, UserId};
use sqlx::PgPool;
use uuid::Uuid;

/// Licenses issued to `tenant`, oldest first.
pub async fn licenses_of_tenant(
    pool: &PgPool,
    tenant: &TenantId,
) -> Result<Vec<LicenseId>, sqlx::Error> {
    issued(pool, Some(tenant)).await
}

/// Every issued license, oldest first.
pub async fn all_licenses(pool: &PgPool) -> Result<Vec<LicenseId>, sqlx::Error> {
    issued(pool, None).await
}

async fn issued(pool: &PgPool, tenant: Option<&TenantId>) -> Result<Vec<LicenseId>, sqlx::Error> {
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
    let ids = q.fetch_all(pool).await?;
    Ok(ids
        .iter()
        .filter_map(|s| s.parse::<Uuid>().ok())
        .map(LicenseId::from_uuid)
        .collect())
}

/// The license a session was acquired on, and its holder.
pub async fn owner_of_session(
    pool: &PgPool,
    session: SessionId,
) -> Result<Option<(LicenseId, UserId)>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT metadata->>'license_id', data->>'user_id' FROM events
         WHERE event_type = 'SeatAcquired' AND data->>'session_id' = $1 LIMIT 1",
    )
    .bind(session.to_string())
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(license, user)| {
        Some((
            LicenseId::from_uuid(license.parse::<Uuid>().ok()?),
            UserId::parse(&user).ok()?,
        ))
    }))
}
