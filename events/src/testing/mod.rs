//! Test support: an isolated, migrated schema per test on the local Postgres.
//!
//! Tests run in parallel against one server; each gets a fresh schema named
//! `t_<random>` (dropped on [`TestDb::drop_schema`], or left for inspection
//! when a test fails). [`Ledger`] writes license histories through the
//! real rules. Not used by production code.

mod ledger;

pub use ledger::{Ledger, LedgerError};

use crate::store::{connect, EventStore, NewEvent, MIGRATOR};
use sqlx::PgPool;

/// The database tests use unless `TEST_DATABASE_URL` says otherwise.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A migrated schema of its own.
pub struct TestDb {
    /// The schema's name.
    pub schema: String,
    /// The database URL (without the schema).
    pub url: String,
    /// A pool whose `search_path` is the schema.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates and migrates a fresh schema.
    pub async fn new() -> Self {
        Self::with_pool_size(16).await
    }

    /// Same, with a pool of `max_connections`.
    pub async fn with_pool_size(max_connections: u32) -> Self {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&url, None, 1)
            .await
            .expect("connect to the test database (is Postgres up? run deploy/local/services.sh)");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create test schema");
        admin.close().await;
        let pool = connect(&url, Some(&schema), max_connections)
            .await
            .expect("connect to the test schema");
        MIGRATOR.run(&pool).await.expect("migrate the test schema");
        Self { schema, url, pool }
    }

    /// An event store on this schema (one transaction per append).
    pub fn store(&self) -> EventStore {
        EventStore::new(self.pool.clone())
    }

    /// Drops the schema.
    pub async fn drop_schema(self) {
        self.pool.close().await;
        if let Ok(admin) = connect(&self.url, None, 1).await {
            let _ = sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
                .execute(&admin)
                .await;
            admin.close().await;
        }
    }
}

/// A small event for tests of the log: `Counted`, with `n` in its data.
pub fn counted(n: i64) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "Counted".into(),
        schema_version: 1,
        data: serde_json::json!({ "n": n }),
        metadata: serde_json::json!({}),
    }
}
