//! The JetStream side of the billing consumer: a durable pull consumer with
//! explicit acks that stores each message's effect, then acknowledges it.
//!
//! Store before ack is the whole contract: a message is acknowledged only
//! after [`BillingStore::record`] committed, so a crash at any point loses
//! nothing (an unacked message is redelivered after `ack_wait`) and bills
//! nothing twice (the redelivery is a duplicate id). Redeliveries can arrive
//! after newer messages; the fold does not depend on order.
//!
//! Must not: keep billing state in memory, or ack a message whose effect is
//! not committed. A store failure stops the consumer with the message
//! unacked; restarting it is always safe.

use super::decode;
use super::store::{BillingStore, Recorded, StoreError};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Most messages asked for per pull request.
const BATCH: usize = 100;
/// How long a pull request waits for messages when running forever.
const FETCH_WAIT: Duration = Duration::from_secs(5);

/// Where the billing consumer reads from.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// JetStream stream name (`LICENSE_EVENTS` by default in deployments).
    pub stream: String,
    /// Subject prefix of the events (`license.events`); the consumer reads
    /// `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Durable consumer name: the position survives restarts.
    pub durable: String,
    /// How long JetStream waits for an ack before redelivering a message.
    pub ack_wait: Duration,
    /// Return after this long without a message; `None` runs until shutdown.
    pub until_idle: Option<Duration>,
}

impl ConsumerConfig {
    /// A configuration with a 30 s `ack_wait` that runs until shutdown.
    pub fn new(stream: &str, subject_prefix: &str, durable: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            durable: durable.to_owned(),
            ack_wait: Duration::from_secs(30),
            until_idle: None,
        }
    }
}

/// What one run of [`consume`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumeReport {
    /// Messages acknowledged.
    pub handled: u64,
    /// Billable events stored for the first time.
    pub applied: u64,
    /// Billable events already stored (redeliveries, republished copies).
    pub duplicates: u64,
    /// Events billing ignores.
    pub ignored: u64,
    /// Messages that are not an event envelope (logged and acknowledged).
    pub undecodable: u64,
}

/// A failure of the billing consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// A JetStream call failed.
    #[error("JetStream: {what}")]
    JetStream {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The billing database failed; the message was not acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Wraps a JetStream client error with what was being done.
fn nats<E>(what: &'static str) -> impl FnOnce(E) -> ConsumeError
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| ConsumeError::JetStream {
        what,
        source: e.into(),
    }
}

/// Opens (or creates, delivering everything retained) the durable pull
/// consumer of `config`.
pub async fn durable_consumer(
    js: &jetstream::Context,
    config: &ConsumerConfig,
) -> Result<jetstream::consumer::Consumer<pull::Config>, ConsumeError> {
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(nats("opening the stream"))?;
    stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: format!("{}.>", config.subject_prefix),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                ..Default::default()
            },
        )
        .await
        .map_err(nats("creating the durable consumer"))
}

/// Consumes until `shutdown` (or until idle, see
/// [`ConsumerConfig::until_idle`]): records each message in `store`, then
/// acknowledges it. A message being handled when `shutdown` fires is
/// finished first.
#[tracing::instrument(skip_all, fields(stream = %config.stream, durable = %config.durable))]
pub async fn consume(
    js: &jetstream::Context,
    config: &ConsumerConfig,
    store: &BillingStore,
    shutdown: &CancellationToken,
) -> Result<ConsumeReport, ConsumeError> {
    let consumer = durable_consumer(js, config).await?;
    let wait = config.until_idle.unwrap_or(FETCH_WAIT);
    let mut report = ConsumeReport::default();
    while !shutdown.is_cancelled() {
        let mut batch = consumer
            .batch()
            .max_messages(BATCH)
            .expires(wait)
            .messages()
            .await
            .map_err(nats("pulling"))?;
        let mut got = 0u64;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return Ok(report),
                next = batch.next() => next,
            };
            let Some(message) = next else { break };
            let message = message.map_err(nats("receiving"))?;
            match decode(&message.payload) {
                Ok(event) => match store.record(&event).await? {
                    Recorded::Applied => report.applied += 1,
                    Recorded::Duplicate => report.duplicates += 1,
                    Recorded::Ignored => report.ignored += 1,
                },
                Err(err) => {
                    tracing::warn!(error = %err, subject = %message.subject, "not an event envelope: skipped");
                    report.undecodable += 1;
                }
            }
            // Only now: the effect is committed.
            message.ack().await.map_err(nats("acknowledging"))?;
            report.handled += 1;
            got += 1;
        }
        if got == 0 && config.until_idle.is_some() {
            break;
        }
    }
    Ok(report)
}
