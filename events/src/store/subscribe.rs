//! Gap-safe tailing of the log in position order.
//!
//! Positions come from a sequence, so they are taken in one order and
//! committed in another: position p+1 can be visible while p's transaction is
//! still open. A tailer that moved past p would lose it. So we stop at a gap
//! and wait until we *know* the gap is final:
//!
//! * every append takes its transaction id (a write to `streams`) before its
//!   positions, so whoever holds a missing position p < q was running when q
//!   became visible, i.e. it is in the `xip` list of the snapshot that first
//!   showed the gap;
//! * once none of those transactions is still in progress
//!   (`pg_xact_status`), a position that is still missing belonged to a
//!   rolled-back transaction and never will appear: we step over it.
//!
//! A long-running transaction therefore stalls tailing (it cannot lose data);
//! [`SubscriptionStats`] exposes the cursor and since when it is stalled, and
//! the pool sets `idle_in_transaction_session_timeout` to bound forgotten
//! transactions. Delivery is in position order, which is also version order
//! within every stream (positions are taken under the stream's row lock).

use super::read::{from_row, COLUMNS};
use super::{EventStore, RecordedEvent, StoreError, NOTIFY_CHANNEL};
use futures::Stream;
use sqlx::postgres::PgListener;
use sqlx::{PgExecutor, PgPool, Row};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Rows fetched per poll.
const BATCH: i64 = 1000;
/// Poll interval when idle (notifications usually wake us sooner).
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Poll interval while waiting for a gap to be filled or proven dead.
const GAP_POLL: Duration = Duration::from_millis(10);

/// Live counters of a subscription (for metrics and lag).
#[derive(Debug, Default)]
pub struct SubscriptionStats {
    /// Position of the last event delivered.
    pub cursor: AtomicI64,
    /// Unix time (ms) since which delivery waits on an open transaction; 0 when not waiting.
    pub stalled_since_ms: AtomicI64,
    /// Positions stepped over because their transaction rolled back.
    pub dead_positions: AtomicU64,
}

/// An endless stream of the log's events after a position, in position order.
/// Dropping it stops the background reader.
pub struct Subscription {
    rx: mpsc::Receiver<Result<RecordedEvent, StoreError>>,
    stats: Arc<SubscriptionStats>,
}

impl Subscription {
    /// Live counters of this subscription.
    pub fn stats(&self) -> Arc<SubscriptionStats> {
        self.stats.clone()
    }
}

impl Stream for Subscription {
    type Item = Result<RecordedEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl EventStore {
    /// Tails the log from `after_position` (exclusive), gap-safe, woken by
    /// this store's own appends at once, by other processes' through
    /// `LISTEN/NOTIFY`, with a polling fallback. An error is yielded once and
    /// ends the stream; resubscribe from the last position handled.
    pub fn subscribe(&self, after_position: i64) -> Subscription {
        let (tx, rx) = mpsc::channel(BATCH as usize);
        let stats = Arc::new(SubscriptionStats::default());
        stats.cursor.store(after_position, Ordering::Relaxed);
        let pool = self.pool.clone();
        let task_stats = stats.clone();
        let local = self.notifier.watch();
        tokio::spawn(async move {
            if let Err(err) = tail(pool, local, after_position, &tx, &task_stats).await {
                let _ = tx.send(Err(err)).await;
            }
        });
        Subscription { rx, stats }
    }
}

/// A gap waiting to be filled or proven dead.
struct Gap {
    /// The snapshot (as text) that first showed the gap.
    snapshot: String,
    /// The first visible position above the gap when it was seen.
    high: i64,
}

async fn tail(
    pool: PgPool,
    mut local: watch::Receiver<u64>,
    mut cursor: i64,
    tx: &mpsc::Sender<Result<RecordedEvent, StoreError>>,
    stats: &SubscriptionStats,
) -> Result<(), StoreError> {
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(NOTIFY_CHANNEL).await?;
    let mut pending: Option<Gap> = None;
    loop {
        // Check before reading: a holder that committed before this check
        // is visible to the read that follows.
        let resolved = match &pending {
            Some(gap) => match holders_finished(&mut listener, &gap.snapshot).await {
                Ok(finished) => finished,
                Err(_) => holders_finished(&pool, &gap.snapshot).await?,
            },
            None => false,
        };
        // Appends of this process from here on wake the wait below.
        local.borrow_and_update();
        // On the listener's own connection: a pooled one would cost a ping
        // each time it goes back (notifications arriving meanwhile are kept).
        // If that connection died, a pooled one serves; the listener
        // reconnects when it next waits.
        let (snapshot, rows) = match fetch(&mut listener, cursor).await {
            Ok(found) => found,
            Err(_) => fetch(&pool, cursor).await?,
        };
        let full = rows.len() as i64 == BATCH;
        let mut blocked = false;
        for event in rows {
            if event.position != cursor + 1 {
                match &pending {
                    Some(gap) if resolved && event.position <= gap.high => {
                        let dead = (event.position - cursor - 1) as u64;
                        stats.dead_positions.fetch_add(dead, Ordering::Relaxed);
                        tracing::debug!(
                            from = cursor + 1,
                            to = event.position - 1,
                            "stepping over rolled-back positions"
                        );
                    }
                    Some(_) => {
                        blocked = true;
                        break;
                    }
                    None => {
                        pending = Some(Gap {
                            snapshot: snapshot.clone(),
                            high: event.position,
                        });
                        stats
                            .stalled_since_ms
                            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                        blocked = true;
                        break;
                    }
                }
            }
            cursor = event.position;
            if pending.as_ref().is_some_and(|gap| cursor >= gap.high) {
                pending = None;
                stats.stalled_since_ms.store(0, Ordering::Relaxed);
            }
            stats.cursor.store(cursor, Ordering::Relaxed);
            if tx.send(Ok(event)).await.is_err() {
                return Ok(()); // the subscriber is gone
            }
        }
        if full && !blocked {
            continue;
        }
        let wait = if blocked { GAP_POLL } else { IDLE_POLL };
        let appended_here = async {
            if local.changed().await.is_err() {
                std::future::pending::<()>().await; // every store is gone: the others wake us
            }
        };
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = appended_here => while listener.next_buffered().is_some() {},
            woke = tokio::time::timeout(wait, listener.recv()) => {
                if let Ok(Err(err)) = woke {
                    tracing::warn!(error = %err, "event log listener failed; polling until it reconnects");
                    tokio::time::sleep(wait).await;
                }
                // Several notifications may be queued: one read serves them all.
                while listener.next_buffered().is_some() {}
            }
        }
    }
}

/// Events after `cursor` and the snapshot the read saw, in one statement.
async fn fetch(
    db: impl PgExecutor<'_>,
    cursor: i64,
) -> Result<(String, Vec<RecordedEvent>), sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT pg_current_snapshot()::text AS snapshot, e.*
         FROM (SELECT 1) AS one
         LEFT JOIN LATERAL (SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2) AS e ON true"
    ))
    .bind(cursor)
    .bind(BATCH)
    .fetch_all(db)
    .await?;
    let snapshot: String = match rows.first() {
        Some(row) => row.try_get("snapshot")?,
        None => String::new(),
    };
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let position: Option<i64> = row.try_get("position")?;
        if position.is_some() {
            events.push(from_row(row)?);
        }
    }
    Ok((snapshot, events))
}

/// True when no transaction that was running at `snapshot` still is.
async fn holders_finished(db: impl PgExecutor<'_>, snapshot: &str) -> Result<bool, sqlx::Error> {
    let running: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_snapshot_xip($1::pg_snapshot) AS x
         WHERE pg_xact_status(x) = 'in progress'",
    )
    .bind(snapshot)
    .fetch_one(db)
    .await?;
    Ok(running == 0)
}
