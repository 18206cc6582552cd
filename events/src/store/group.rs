//! Group commit: concurrent appends share one statement, one commit and one
//! fsync.
//!
//! A durable commit is the unit cost of the log. Callers submit appends to a
//! channel; a few writer tasks each take whatever is waiting (up to a batch
//! size) and run it as one call (a one-stream statement or `ll_append`) in
//! which every append still succeeds or fails on its own (see
//! [`super::fast`]). If the call as a whole hits a database error, each
//! append is retried alone so one bad append cannot fail its neighbours. A
//! caller whose append is the only one in flight has it made at once.

use super::fast::append_all;
use super::heads::Heads;
use super::kept::Kept;
use super::notify::Notifier;
use super::{AppendError, AppendResult, StreamAppend};
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Tuning of the group committer.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitConfig {
    /// Writer tasks (and connections) committing in parallel.
    pub writers: usize,
    /// Most appends in one transaction.
    pub max_batch: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self {
            writers: 2,
            max_batch: 256,
        }
    }
}

/// How long a writer keeps its connection without appends to make.
const KEEP_IDLE: std::time::Duration = std::time::Duration::from_millis(250);

type Job = (
    Vec<StreamAppend>,
    oneshot::Sender<Result<AppendResult, AppendError>>,
);

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Job>,
    /// A connection a caller may use itself when it is the only one.
    inline: Arc<Mutex<Inline>>,
    /// Appends submitted and not answered yet.
    in_flight: Arc<AtomicUsize>,
    pool: PgPool,
    heads: Arc<Heads>,
    notifier: Arc<Notifier>,
}

/// The connection of appends made in the caller's own task, and when it was
/// last used.
struct Inline {
    kept: Kept,
    used: Instant,
}

impl Writer {
    pub(super) fn start(
        pool: PgPool,
        heads: Arc<Heads>,
        notifier: Arc<Notifier>,
        config: GroupCommitConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(config.max_batch.max(1) * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            tokio::spawn(run(
                pool.clone(),
                heads.clone(),
                notifier.clone(),
                rx.clone(),
                config.max_batch.max(1),
            ));
        }
        let inline = Arc::new(Mutex::new(Inline {
            kept: Kept::new(),
            used: Instant::now(),
        }));
        tokio::spawn(let_go_when_idle(Arc::downgrade(&inline), pool.clone()));
        Self {
            tx,
            inline,
            in_flight: Arc::default(),
            pool,
            heads,
            notifier,
        }
    }

    pub(super) async fn submit(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<AppendResult, AppendError> {
        // The only append in flight: make it at once on the inline
        // connection, without waiting for a writer task to collect it. It
        // runs in a task of its own, so that it completes even if the caller
        // goes away (an HTTP client hung up) mid-call, as a queued append does.
        let counted = InFlight::enter(&self.in_flight);
        if counted.alone && !self.pool.is_closed() {
            if let Ok(mut inline) = self.inline.clone().try_lock_owned() {
                let (pool, heads, notifier) =
                    (self.pool.clone(), self.heads.clone(), self.notifier.clone());
                let call = tokio::spawn(async move {
                    let requests = std::slice::from_ref(&appends);
                    let result =
                        append_all(&pool, Some(&mut inline.kept), &heads, &notifier, requests)
                            .await
                            .pop()
                            .unwrap_or(Err(AppendError::WriterStopped));
                    inline.used = Instant::now();
                    result
                });
                return call.await.unwrap_or(Err(AppendError::WriterStopped));
            }
        }
        let (done, result) = oneshot::channel();
        self.tx
            .send((appends, done))
            .await
            .map_err(|_| AppendError::WriterStopped)?;
        result.await.map_err(|_| AppendError::WriterStopped)?
    }
}

/// Counts an append in flight until dropped.
struct InFlight<'a> {
    count: &'a AtomicUsize,
    /// No other append was in flight when this one came.
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let alone = count.fetch_add(1, Ordering::AcqRel) == 0;
        Self { count, alone }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives the inline connection back after [`KEEP_IDLE`] without appends, or
/// as soon as the pool closes; ends with the store.
async fn let_go_when_idle(inline: Weak<Mutex<Inline>>, pool: PgPool) {
    loop {
        tokio::time::sleep(KEEP_IDLE).await;
        let Some(inline) = inline.upgrade() else {
            return;
        };
        let Ok(mut inline) = inline.try_lock() else {
            continue; // in use
        };
        if pool.is_closed() {
            inline.kept.discard();
        } else if inline.kept.is_held() && inline.used.elapsed() >= KEEP_IDLE {
            inline.kept.release().await;
        }
    }
}

async fn run(
    pool: PgPool,
    heads: Arc<Heads>,
    notifier: Arc<Notifier>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    // Kept across batches while appends keep coming: a connection going back
    // to the pool costs a ping. Let go of when idle or when the pool closes
    // (`PgPool::close` waits for every connection to come back).
    let mut kept = Kept::new();
    loop {
        // One writer at a time collects a batch; the others are committing
        // (or wait for their turn, which counts as idle too).
        let collect = async {
            let mut rx = rx.lock().await;
            rx.recv_many(&mut jobs, max_batch).await
        };
        let got = if kept.is_held() {
            tokio::time::timeout(KEEP_IDLE, collect).await.ok()
        } else {
            Some(collect.await)
        };
        let Some(got) = got else {
            kept.release().await;
            continue;
        };
        if got == 0 {
            return; // every sender is gone
        }
        if pool.is_closed() {
            kept.discard();
        }
        let (requests, senders): (Vec<_>, Vec<_>) = jobs.drain(..).unzip();
        let results = append_all(&pool, Some(&mut kept), &heads, &notifier, &requests).await;
        for (sender, result) in senders.into_iter().zip(results) {
            let _ = sender.send(result); // the caller may have given up
        }
    }
}
