//! The log's connection pool and its settings.

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Connection options for the log: `DATABASE_URL` plus the session settings
/// the log relies on. `idle_in_transaction_session_timeout` bounds how long a
/// forgotten open transaction can stall gap-safe tailing.
pub fn connect_options(url: &str, schema: Option<&str>) -> Result<PgConnectOptions, sqlx::Error> {
    let mut options: PgConnectOptions = url.parse()?;
    options = options.options([("idle_in_transaction_session_timeout", "30s")]);
    if let Some(schema) = schema {
        options = options.options([("search_path", schema)]);
    }
    Ok(options)
}

/// How long a caller waits for a connection before the log counts as
/// unavailable: requests fail fast (503) instead of hanging on a database
/// that does not answer.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A pooled connection idle longer than this is pinged before use.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(1);

/// A pool with the log's connection settings.
pub async fn connect(
    url: &str,
    schema: Option<&str>,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // Ping only a connection that sat idle (it may have died meanwhile;
        // the ping runs within the acquire timeout): pinging every busy one
        // doubled the round trips of the hot paths.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(connect_options(url, schema)?)
        .await
}

/// True when `err` means the database cannot be reached right now (no
/// connection within [`ACQUIRE_TIMEOUT`], a broken connection), as opposed
/// to a query the database refused.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    )
}
