//! The signer worker: a durable JetStream consumer of `SeatAcquired` that
//! mints each session's license token and records it as `TokenIssued` in
//! the session stream.
//!
//! Scales out: replicas share one durable consumer. Idempotent: the token
//! event has a deterministic id and the session stream is checked first, so
//! a redelivered acquisition (or two replicas racing) records one token. A
//! message is acknowledged only once the token is in the log.

use crate::metrics;
use crate::signer::{LicenseClaims, TokenMinter};
use async_nats::jetstream::{self, consumer::pull, AckKind};
use events::aggregate::{self, Changes};
use events::catalog::LicenseEvent;
use events::envelope::{subject_filter, Envelope};
use events::session::{self, SessionState};
use events::store::EventStore;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Namespace of the deterministic `TokenIssued` event ids.
const TOKEN_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6365_6e73_652d_746f_6b65_6e2d_6964);

/// Tokens signed concurrently per worker (RSA signing runs on blocking threads).
const CONCURRENCY: usize = 8;

/// Runs the signer worker until `shutdown`.
pub async fn run(
    store: EventStore,
    js: jetstream::Context,
    stream: String,
    subject_prefix: String,
    minter: TokenMinter,
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
                filter_subject: subject_filter(&subject_prefix, "SeatAcquired"),
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
            let (store, minter) = (store.clone(), minter.clone());
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
                            ::metrics::counter!(metrics::TOKENS_MINTED).increment(1);
                        }
                        if let Err(err) = message.ack().await {
                            tracing::warn!(error = %err, "ack failed; the acquisition will be redelivered");
                        }
                    }
                    Err(err) => {
                        ::metrics::counter!(metrics::SIGN_ERRORS).increment(1);
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
    let envelope = Envelope::from_json(payload)?;
    let LicenseEvent::SeatAcquired {
        session_id,
        user_id,
        hardware_id,
        expires_at,
        ..
    } = envelope.event()?
    else {
        return Ok(false); // not ours (filtered by subject, but be strict)
    };
    let meta = envelope.meta();
    let (Some(tenant), Some(license), Some(product)) = (
        meta.tenant_id.clone(),
        meta.license_id,
        meta.product.clone(),
    ) else {
        anyhow::bail!(
            "SeatAcquired {} without tenant, license or product metadata",
            envelope.event_id
        );
    };
    let stream = session_id.stream_name();
    let mut state: SessionState = aggregate::load(store, &stream).await?;
    if state.token.is_some() || state.closed.is_some() {
        return Ok(false);
    }
    let now = chrono::Utc::now().timestamp();
    let claims = LicenseClaims {
        iss: minter.issuer().to_owned(),
        sub: user_id.to_string(),
        tenant: tenant.to_string(),
        license: license.to_string(),
        product: product.to_string(),
        sid: session_id.to_string(),
        hwid: hardware_id.to_string(),
        iat: now,
        nbf: now,
        exp: expires_at.timestamp().max(now + 1),
    };
    let token = minter.mint(&claims).await?;
    let metadata = events::envelope::Metadata {
        actor: None,
        correlation_id: meta.correlation_id,
        ..events::envelope::Metadata::license(tenant, license, product)
    };
    let event_id = Uuid::new_v5(&TOKEN_EVENT_NAMESPACE, session_id.to_string().as_bytes());
    let key_id = minter.key_id().to_owned();
    let recorded = aggregate::execute(store, &stream, &mut state, &metadata.to_value(), |state| {
        // Empty when a token is already recorded (a redelivery, or another signer won).
        session::decide_token(state, session_id, key_id.clone(), token.clone())
            .map(|events| Changes::new(events, ()).with_event_id(event_id))
    })
    .await;
    match recorded {
        Ok(_) => Ok(state.token.as_ref().is_some_and(|t| t.token == token)),
        // The session ended meanwhile: its token is not needed any more.
        Err(aggregate::ExecuteError::Rejected(_)) => Ok(false),
        Err(other) => Err(anyhow::Error::new(other)
            .context(format!("recording the token of session {session_id}"))),
    }
}
