//! Group commit: concurrent appends share one statement, one commit and one
//! fsync.
//!
//! A durable commit is the unit cost of the log. Callers submit appends to a
//! channel; a few writer tasks each take whatever is waiting (up to a batch
//! size) and run it as one `ll_append` call in which every append still
//! succeeds or fails on its own (see [`super::fast`]). If the call as a
//! whole hits a database error, each append is retried alone so one bad
//! append cannot fail its neighbours.

use super::fast::{append_all, Heads, Kept, Notifier};
use super::{AppendError, AppendResult, StreamAppend};
use sqlx::PgPool;
use std::sync::Arc;
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
        Self { tx }
    }

    pub(super) async fn submit(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<AppendResult, AppendError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send((appends, done))
            .await
            .map_err(|_| AppendError::WriterStopped)?;
        result.await.map_err(|_| AppendError::WriterStopped)?
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
