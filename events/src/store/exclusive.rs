//! An exclusive hold on one stream, for a writer that keeps losing the
//! optimistic race: when another process appends between this one's read
//! and its write every time (two replicas serving one busy license), the
//! loser holds the stream's row lock while it reads the tail, decides and
//! appends. The other writers of that stream wait at the same lock for the
//! commit (`ll_append` and the careful path lock stream rows first), so the
//! holder's expected version cannot go stale and it wins in one round.
//!
//! Everything runs on the lock's own connection: a holder never waits for
//! a second pooled connection while it keeps one.
//!
//! Lock order: a multi-stream append locks its rows in name order, so the
//! held stream must sort before every other stream the holder appends to
//! (a license stream before its session streams); otherwise Postgres may
//! detect a deadlock and fail one of the two appends.

use super::append::{append_batch, validate};
use super::hash::GENESIS;
use super::heads::Heads;
use super::notify::Notifier;
use super::read::stream_page;
use super::{AppendError, AppendResult, EventStore, RecordedEvent, StoreError, StreamAppend};
use sqlx::{Postgres, Transaction};
use std::sync::Arc;

/// The row lock of one stream, held by an open transaction until
/// [`StreamLock::append`] commits or the lock is dropped (rolled back).
pub struct StreamLock {
    tx: Transaction<'static, Postgres>,
    stream: String,
    heads: Arc<Heads>,
    notifier: Arc<Notifier>,
}

impl std::fmt::Debug for StreamLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLock")
            .field("stream", &self.stream)
            .finish()
    }
}

impl EventStore {
    /// Waits for and takes the row lock of `stream` (creating its row when
    /// the stream has no events yet).
    pub async fn lock_stream(&self, stream: &str) -> Result<StreamLock, StoreError> {
        metrics::counter!(super::STREAM_LOCKS_TOTAL).increment(1);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO streams (stream_id, version, last_hash) VALUES ($1, -1, $2)
             ON CONFLICT (stream_id) DO UPDATE SET version = streams.version",
        )
        .bind(stream)
        .bind(GENESIS.as_slice())
        .execute(&mut *tx)
        .await?;
        Ok(StreamLock {
            tx,
            stream: stream.to_owned(),
            heads: self.heads.clone(),
            notifier: self.notifier.clone(),
        })
    }
}

impl StreamLock {
    /// The locked stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Events of the locked stream with version >= `from_version`, in
    /// version order, at most `limit` (read under the lock: nobody else
    /// can append to it meanwhile).
    pub async fn read(
        &mut self,
        from_version: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = stream_page(&mut *self.tx, &self.stream, from_version, limit).await?;
        if let Some(last) = events.last() {
            self.heads
                .learn(&self.stream, last.stream_version, &last.hash, true);
        }
        Ok(events)
    }

    /// Appends (all or nothing, expectations checked as everywhere) and
    /// commits, which releases the lock. On an error nothing is written.
    pub async fn append(mut self, appends: Vec<StreamAppend>) -> Result<AppendResult, AppendError> {
        validate(&appends)?;
        let result = append_batch(&mut self.tx, std::slice::from_ref(&appends))
            .await?
            .pop()
            .unwrap_or(Err(AppendError::WriterStopped));
        match result {
            Ok(ok) => {
                self.tx.commit().await?;
                if !ok.already_stored {
                    metrics::counter!(super::APPENDED_TOTAL).increment(ok.written.len() as u64);
                    self.notifier.poke();
                }
                Ok(ok)
            }
            Err(err) => {
                self.tx.rollback().await?;
                Err(err)
            }
        }
    }
}
