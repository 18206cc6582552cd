//! Single-active workers: a Postgres session advisory lock per name, held
//! by a dedicated connection for as long as the worker runs. A second
//! replica waits as a hot standby; if the holder dies, its connection
//! closes and the lock is free again.

use super::{EventStore, StoreError};
use sqlx::{Connection as _, PgConnection};

/// A held single-active lock; dropping or [`SingletonLock::release`] frees it.
pub struct SingletonLock {
    conn: PgConnection,
}

impl std::fmt::Debug for SingletonLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SingletonLock")
    }
}

impl SingletonLock {
    /// Whether the lock is still held: its connection still answers. A
    /// terminated backend (or a network cut) loses the lock at the server;
    /// the holder must then stop acting as the single active instance.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await?;
        Ok(())
    }

    /// Frees the lock (closes its connection).
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

impl EventStore {
    /// Takes the advisory lock named `name` if it is free (`None`: another
    /// process holds it; try again later).
    pub async fn try_lock_singleton(
        &self,
        name: &str,
    ) -> Result<Option<SingletonLock>, StoreError> {
        let mut conn = self.pool.acquire().await?.detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(SingletonLock { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }
}
