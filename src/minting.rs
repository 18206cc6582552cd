//! The signer worker: a durable JetStream consumer of `SeatAcquired` that
//! mints each session's license token and records it as `TokenIssued` in
//! the session stream.
//!
//! Scales out: replicas share one durable consumer. Idempotent: the token
//! event has a deterministic id and the session stream is checked first, so
//! a redelivered acquisition (or two replicas racing) records one token. A
//! message is acknowledged only once the token is in the log.

use crate::metrics::Metrics;
use crate::service::envelope::{new_event_with_id, EventContext};
use crate::signer::{LicenseClaims, TokenMinter};
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use events::catalog::LicenseEvent;
use events::ids::{LicenseId, ProductId, SessionId, TenantId};
use events::session::{self, SessionState};
use events::store::{AppendError, EventStore, ExpectedVersion};
use futures::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Namespace of the deterministic `TokenIssued` event ids.
const TOKEN_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6365_6e73_652d_746f_6b65_6e2d_6964);

/// Tokens signed concurrently per worker (RSA signing runs on blocking threads).
const CONCURRENCY: usize = 8;

/// The published envelope, as far as the signer needs it.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    event_type: String,
    schema_version: i32,
    data: serde_json::Value,
    metadata: serde_json::Value,
}

/// Runs the signer worker until `shutdown`.
pub async fn run(
    store: EventStore,
    js: jetstream::Context,
    stream: String,
    subject_prefix: String,
    minter: TokenMinter,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stream_handle = loop {
        match js.get_stream(&stream).await {
            Ok(s) => break s,
            Err(err) => {
                tracing::info!(error = %err, %stream, "waiting for the JetStream stream (the publisher creates it)");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let durable = format!("{stream}-signer");
    let consumer: jetstream::consumer::PullConsumer = stream_handle
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: format!("{subject_prefix}.*.*.SeatAcquired"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the signer consumer: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("signer consumer: {e}"))?;
    let minter = Arc::new(minter);
    messages
        .take_until(shutdown.cancelled())
        .for_each_concurrent(CONCURRENCY, |message| {
            let (store, minter, metrics) = (store.clone(), minter.clone(), metrics.clone());
            async move {
                let message = match message {
                    Ok(m) => m,
                    Err(err) => {
                        tracing::warn!(error = %err, "signer consumer error");
                        return;
                    }
                };
                match handle(&store, &minter, &message.payload).await {
                    Ok(minted) => {
                        if minted {
                            metrics.tokens_minted.inc();
                        }
                        if let Err(err) = message.ack().await {
                            tracing::warn!(error = %err, "ack failed; the acquisition will be redelivered");
                        }
                    }
                    Err(err) => {
                        metrics.sign_errors.inc();
                        tracing::error!(error = %format!("{err:#}"), "minting a token failed; redelivering later");
                        let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(2)))).await;
                    }
                }
            }
        })
        .await;
    Ok(())
}

/// Mints and records the token of one acquisition. Returns whether a token
/// was minted (false: it was already recorded, or the session ended).
pub async fn handle(
    store: &EventStore,
    minter: &TokenMinter,
    payload: &[u8],
) -> anyhow::Result<bool> {
    let envelope: Envelope =
        serde_json::from_slice(payload).context("decoding the event envelope")?;
    let event = LicenseEvent::from_stored(
        &envelope.event_type,
        envelope.schema_version,
        &envelope.data,
    )?;
    let LicenseEvent::SeatAcquired {
        session_id,
        user_id,
        hardware_id,
        expires_at,
        ..
    } = event
    else {
        return Ok(false); // not ours (filtered by subject, but be strict)
    };
    let meta = |key: &str| {
        envelope
            .metadata
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let context = EventContext {
        tenant_id: TenantId::parse(&meta("tenant_id"))?,
        license_id: meta("license_id")
            .parse::<LicenseId>()
            .map_err(|e| anyhow::anyhow!("license_id: {e}"))?,
        product: ProductId::parse(&meta("product"))?,
        actor: None,
        correlation_id: envelope
            .metadata
            .get("correlation_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    };
    let mut state = read_session(store, session_id).await?;
    if state.token.is_some() || state.closed.is_some() {
        return Ok(false);
    }
    let now = chrono::Utc::now().timestamp();
    let claims = LicenseClaims {
        iss: minter.issuer().to_owned(),
        sub: user_id.to_string(),
        tenant: context.tenant_id.to_string(),
        license: context.license_id.to_string(),
        product: context.product.to_string(),
        sid: session_id.to_string(),
        hwid: hardware_id.to_string(),
        iat: now,
        nbf: now,
        exp: expires_at.timestamp().max(now + 1),
    };
    let token = minter.mint(&claims).await?;
    let metadata = context.metadata();
    let event_id = Uuid::new_v5(&TOKEN_EVENT_NAMESPACE, session_id.to_string().as_bytes());
    for _ in 0..16 {
        let events = session::decide_token(
            &state,
            session_id,
            minter.key_id().to_owned(),
            token.clone(),
        )?;
        if events.is_empty() {
            return Ok(false);
        }
        let expected = if state.version < 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(state.version)
        };
        let new = events
            .iter()
            .map(|e| new_event_with_id(event_id, e, &metadata))
            .collect();
        match store
            .append_to(&session_id.stream_name(), expected, new)
            .await
        {
            Ok(_) => return Ok(true),
            // A heartbeat landed, or another signer recorded its token first.
            Err(AppendError::Conflict { .. }) | Err(AppendError::EventIdReused { .. }) => {
                state = read_session(store, session_id).await?;
            }
            Err(other) => return Err(other.into()),
        }
    }
    anyhow::bail!("session {session_id}: gave up recording the token after repeated conflicts")
}

async fn read_session(store: &EventStore, session_id: SessionId) -> anyhow::Result<SessionState> {
    let mut state = SessionState::default();
    for recorded in store
        .read_stream(&session_id.stream_name(), 0, 10_000)
        .await?
    {
        let event = LicenseEvent::from_stored(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.data,
        )?;
        state = session::apply(state, &event);
        state.version = recorded.stream_version;
    }
    Ok(state)
}
