//! The connection a writer keeps between calls, its planner pinned.

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

/// The connection a writer keeps between calls (the group committer's): it
/// saves a round trip per call (sqlx pings a connection each time it goes
/// back to the pool) and lets calls use the one-stream statements of [`super::fast`].
///
/// A bare statement's plan is cached per connection, and a plan made while
/// the tables were small (a sequential scan) could outlive that. So the
/// connection's planner is pinned to what `ll_append` sets for itself, key
/// lookups only, for as long as it is kept; it is reset before the
/// connection goes back, and a connection whose call failed is closed
/// instead.
pub(super) struct Kept(Option<PoolConnection<Postgres>>);

const PIN: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
                   SET enable_hashjoin = off; SET enable_mergejoin = off";
const UNPIN: &str = "RESET plan_cache_mode; RESET enable_seqscan; RESET enable_hashjoin; \
                     RESET enable_mergejoin";

impl Kept {
    pub(super) fn new() -> Self {
        Self(None)
    }

    pub(super) fn is_held(&self) -> bool {
        self.0.is_some()
    }

    pub(super) async fn get(&mut self, pool: &PgPool) -> Result<&mut PgConnection, sqlx::Error> {
        let conn = match self.0.take() {
            Some(conn) => conn,
            None => {
                let mut conn = pool.acquire().await?;
                if let Err(err) = settle(&mut conn, PIN).await {
                    conn.close_on_drop();
                    return Err(err);
                }
                conn
            }
        };
        Ok(&mut **self.0.insert(conn))
    }

    /// Closes it (a call on it failed, or the pool is closing).
    pub(super) fn discard(&mut self) {
        if let Some(mut conn) = self.0.take() {
            conn.close_on_drop();
        }
    }

    /// Gives it back to the pool with the planner's settings reset (closes it
    /// if that fails). A `Kept` dropped without this closes its connection.
    pub(super) async fn release(&mut self) {
        if let Some(mut conn) = self.0.take() {
            if settle(&mut conn, UNPIN).await.is_err() {
                conn.close_on_drop();
            }
        }
    }
}

async fn settle(conn: &mut PgConnection, settings: &str) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, settings).await.map(|_| ())
}

impl Drop for Kept {
    /// Its settings must not reach the pool: closes the connection (where no
    /// runtime is left to close it gracefully, its socket just closes).
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                conn.close_on_drop();
            } else {
                drop(conn.detach());
            }
        }
    }
}
