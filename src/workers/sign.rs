//! The signer worker: mints license tokens from the log and records them
//! as `TokenIssued` in the session stream.
//!
//! Two durable JetStream consumers (NATS 2.9 takes one filter subject per
//! consumer): `*.SeatAcquired` (the first token) and `*.TokenRenewalDue`
//! (renewals, asked by heartbeats past half the token's life). A message is
//! only a hint: the worker looks its event up in the log by stream and
//! version and mints nothing unless the logged event is the same, to the
//! byte (id, data, metadata, time, hash). Claims come from the log, never
//! from the message; the session must still be open and the request still
//! unanswered. A message that does not match is counted
//! (`ledger_sign_rejected_total`), logged and terminated (not redelivered).
//!
//! Scales out: replicas share the durable consumers. Idempotent: the token
//! event's id is derived from the authorizing event's id and the session
//! stream is checked first (through the seam), so a redelivered message or
//! two racing replicas record one token. A message is acknowledged only once
//! the token is in the log (or nothing is owed).

use crate::metrics;
use crate::signer::{LicenseClaims, TokenMinter};
use crate::workers::token_waiters::DirectToken;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use events::aggregate::{self, Changes, ExecuteError};
use events::catalog::LicenseEvent;
use events::envelope::{decode, direct_token_subject, subject_filter, Envelope, Metadata};
use events::ids::LicenseId;
use events::license::effective_token_ttl;
use events::session::{decide_token, Grant, SessionState};
use events::store::{EventStore, RecordedEvent};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Namespace of the deterministic `TokenIssued` event ids.
const TOKEN_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c69_6365_6e73_652d_746f_6b65_6e2d_6964);

/// Tokens signed concurrently per worker (RSA signing runs on blocking threads).
const CONCURRENCY: usize = 8;

/// What became of one message.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled {
    /// A token was minted and recorded.
    Minted,
    /// Nothing was owed (already minted, session ended, not ours).
    Nothing,
    /// Not yet: a strict license's seats are held by tokens of ended
    /// sessions; retry after this long.
    Deferred(Duration),
}

/// Why a message was not served.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The message does not match the log (forged, altered, or unknown):
    /// nothing is minted and it is not redelivered.
    #[error("rejected: {0}")]
    Rejected(String),
    /// A technical failure: redelivered later.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

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
    let first = consumer(
        &stream_handle,
        format!("{stream}-signer"),
        subject_filter(&subject_prefix, "SeatAcquired"),
    )
    .await?;
    let renewals = consumer(
        &stream_handle,
        format!("{stream}-signer-renewals"),
        subject_filter(&subject_prefix, "TokenRenewalDue"),
    )
    .await?;
    let messages = futures::stream::select(first, renewals);
    let minter = Arc::new(minter);
    let (nats, direct) = (js.client(), direct_token_subject(&subject_prefix));
    messages
        .take_until(shutdown.cancelled())
        .for_each_concurrent(CONCURRENCY, |message| {
            let (store, minter, nats, direct) =
                (store.clone(), minter.clone(), nats.clone(), direct.clone());
            async move {
                let message = match message {
                    Ok(m) => m,
                    Err(err) => {
                        tracing::warn!(error = %err, "signer consumer error");
                        return;
                    }
                };
                let ack = match mint(&store, &minter, &message.payload).await {
                    Ok((Handled::Deferred(wait), _)) => AckKind::Nak(Some(wait)),
                    Ok((handled, token)) => {
                        if handled == Handled::Minted {
                            ::metrics::counter!(metrics::TOKENS_MINTED).increment(1);
                        }
                        // Straight to the waiting request (it is in the log already).
                        if let Some(token) = token.and_then(|t| serde_json::to_vec(&t).ok()) {
                            if let Err(err) = nats.publish(direct.clone(), token.into()).await {
                                tracing::debug!(error = %err, "direct token message not sent; the stream brings it");
                            }
                        }
                        AckKind::Ack
                    }
                    Err(SignError::Rejected(why)) => {
                        ::metrics::counter!(metrics::SIGN_REJECTED).increment(1);
                        tracing::warn!(subject = %message.subject, %why, "a message that does not match the log was rejected; nothing minted");
                        AckKind::Term
                    }
                    Err(SignError::Failed(err)) => {
                        ::metrics::counter!(metrics::SIGN_ERRORS).increment(1);
                        tracing::error!(error = %format!("{err:#}"), "minting a token failed; redelivering later");
                        AckKind::Nak(Some(Duration::from_secs(2)))
                    }
                };
                if let Err(err) = message.ack_with(ack).await {
                    tracing::warn!(error = %err, "ack failed; the message will be redelivered");
                }
            }
        })
        .await;
    Ok(())
}

/// A durable pull consumer of `filter`, as a message stream.
async fn consumer(
    stream: &jetstream::stream::Stream,
    durable: String,
    filter: String,
) -> anyhow::Result<pull::Stream> {
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject: filter,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 1024,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the signer consumer {durable}: {e}"))?;
    consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("signer consumer {durable}: {e}"))
}

/// The logged event a message names, if the message is exactly that event.
async fn logged(
    store: &EventStore,
    message: &Envelope,
) -> Result<(Envelope, RecordedEvent), SignError> {
    let found = store
        .event_at(&message.stream, message.stream_version)
        .await
        .map_err(anyhow::Error::from)?
        .map(|recorded| (Envelope::from(&recorded), recorded));
    match found {
        Some((logged, recorded)) if logged == *message => Ok((logged, recorded)),
        Some(_) => Err(SignError::Rejected(format!(
            "{} version {} differs from the log",
            message.stream, message.stream_version
        ))),
        None => Err(SignError::Rejected(format!(
            "{} has no version {}",
            message.stream, message.stream_version
        ))),
    }
}

/// Mints and records the token a `SeatAcquired` or `TokenRenewalDue`
/// message asks for, from the log's own copy of that event.
pub async fn handle(
    store: &EventStore,
    minter: &TokenMinter,
    payload: &[u8],
) -> Result<Handled, SignError> {
    Ok(mint(store, minter, payload).await?.0)
}

/// [`handle`], with the token when this call recorded one.
async fn mint(
    store: &EventStore,
    minter: &TokenMinter,
    payload: &[u8],
) -> Result<(Handled, Option<DirectToken>), SignError> {
    let message = Envelope::from_json(payload).map_err(|e| SignError::Rejected(e.to_string()))?;
    let (authorizing, authorizing_recorded) = logged(store, &message).await?;
    let event = authorizing
        .event()
        .map_err(|e| SignError::Rejected(e.to_string()))?;
    let (grant, session_id) = match event {
        LicenseEvent::SeatAcquired { session_id, .. } => (Grant::Acquired, session_id),
        LicenseEvent::TokenRenewalDue { session_id } => (Grant::Renewal, session_id),
        _ => return Ok((Handled::Nothing, None)), // not ours (filtered by subject, but be strict)
    };
    // Who holds the seat: the session's acquisition, as logged (for a first
    // token, the authorizing event itself).
    let acquisition = match grant {
        Grant::Acquired => authorizing_recorded,
        Grant::Renewal => store
            .acquisition_of(session_id)
            .await
            .map_err(anyhow::Error::from)?
            .ok_or_else(|| {
                SignError::Rejected(format!("session {session_id} was never acquired"))
            })?,
    };
    let LicenseEvent::SeatAcquired {
        user_id,
        hardware_id,
        borrowed_until,
        ..
    } = decode(&acquisition).map_err(anyhow::Error::from)?
    else {
        return Err(SignError::Rejected("not an acquisition".into()));
    };
    let meta = Metadata::of(&acquisition);
    let (Some(tenant), Some(license), Some(product)) = (
        meta.tenant_id.clone(),
        meta.license_id,
        meta.product.clone(),
    ) else {
        return Err(SignError::Rejected(format!(
            "acquisition of {session_id} without tenant, license or product"
        )));
    };
    let token_ttl = token_ttl_secs(store, license).await?;
    let stream = session_id.stream_name();
    let mut state: SessionState = aggregate::load(store, &stream)
        .await
        .map_err(anyhow::Error::from)?;
    let owed = match grant {
        Grant::Acquired => state.token.is_none(),
        Grant::Renewal => state.renewal_due,
    };
    if state.closed.is_some() || !owed {
        return Ok((Handled::Nothing, None));
    }
    let now = chrono::Utc::now();
    if let Some(wait) = strict_wait(store, license, &state, now).await? {
        return Ok((Handled::Deferred(wait), None));
    }
    let jti = Uuid::new_v4();
    // A borrowed seat's tokens expire with the borrow (the client is
    // offline until then); any other token lives one token lifetime.
    let expires_at = match borrowed_until.filter(|end| *end > now) {
        Some(end) => events::store::hash::to_micros(end),
        None => {
            events::store::hash::to_micros(now) + chrono::TimeDelta::seconds(i64::from(token_ttl))
        }
    };
    let claims = LicenseClaims {
        iss: minter.issuer().to_owned(),
        sub: user_id.to_string(),
        tenant: tenant.to_string(),
        license: license.to_string(),
        product: product.to_string(),
        sid: session_id.to_string(),
        hwid: hardware_id.to_string(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: expires_at.timestamp(),
        jti: Some(jti.to_string()),
        pos: Some(authorizing.position),
        srv: Some(now.timestamp_millis()),
    };
    let token = minter.mint(&claims).await.map_err(anyhow::Error::from)?;
    let issued = LicenseEvent::TokenIssued {
        session_id,
        key_id: minter.key_id().to_owned(),
        token: token.clone(),
        jti: Some(jti),
        expires_at: Some(chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at)),
        authorized_by: Some(authorizing.position),
    };
    let metadata = Metadata::license(tenant, license, product).to_value();
    let event_id = Uuid::new_v5(&TOKEN_EVENT_NAMESPACE, authorizing.event_id.as_bytes());
    let recorded = aggregate::execute(store, &stream, &mut state, &metadata, |state| {
        decide_token(state, grant, issued.clone())
            .map(|events| Changes::new(events, ()).with_event_id(event_id))
    })
    .await;
    match recorded {
        Ok(()) => Ok(if state.token.as_ref().is_some_and(|t| t.token == token) {
            let direct = DirectToken {
                session_id,
                key_id: minter.key_id().to_owned(),
                token,
            };
            (Handled::Minted, Some(direct))
        } else {
            (Handled::Nothing, None) // another replica recorded it first
        }),
        // The session ended meanwhile: the token was never recorded, nor handed out.
        Err(ExecuteError::Rejected(_)) => Ok((Handled::Nothing, None)),
        Err(other) => Err(anyhow::Error::new(other)
            .context(format!("recording the token of session {session_id}"))
            .into()),
    }
}

/// Strict seat accounting for a renewal whose token already lapsed (its
/// client missed heartbeats): the session then holds no valid token, and
/// giving it one again is like granting a seat — not while tokens of ended
/// sessions hold the seats (e.g. after a seat reduction). A renewal before
/// the lapse, or a non-strict license, never waits.
async fn strict_wait(
    store: &EventStore,
    license: LicenseId,
    session: &SessionState,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Duration>, SignError> {
    let lapsed = session
        .token
        .as_ref()
        .is_some_and(|t| t.expires_at.is_some_and(|exp| exp <= now));
    if !lapsed {
        return Ok(None);
    }
    let state: events::license::LicenseState = aggregate::load(store, &license.stream_name())
        .await
        .map_err(anyhow::Error::from)?;
    let Some(info) = state.issued.as_ref().filter(|i| i.strict_seats) else {
        return Ok(None);
    };
    // This session is one of the live ones; the others' tokens and the
    // holds of ended sessions must leave it a seat.
    if state.seats_held(now) <= info.seats as usize {
        return Ok(None);
    }
    let next = state
        .token_holds
        .values()
        .filter(|until| **until > now)
        .min()
        .map_or(Duration::from_secs(1), |until| {
            (*until - now).to_std().unwrap_or_default() + Duration::from_secs(1)
        });
    Ok(Some(next))
}

/// Token lifetimes already read (a `LicenseIssued` never changes).
static TOKEN_TTLS: std::sync::LazyLock<std::sync::Mutex<lru::LruCache<LicenseId, u32>>> =
    std::sync::LazyLock::new(|| {
        std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(crate::service::LICENSE_CACHE_CAP)
                .unwrap_or(std::num::NonZeroUsize::MIN),
        ))
    });

/// The token lifetime of `license`, from its `LicenseIssued`.
async fn token_ttl_secs(store: &EventStore, license: LicenseId) -> Result<u32, SignError> {
    let cached = TOKEN_TTLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&license)
        .copied();
    if let Some(ttl) = cached {
        return Ok(ttl);
    }
    let ttl = issued_token_ttl_secs(store, license).await?;
    TOKEN_TTLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(license, ttl);
    Ok(ttl)
}

async fn issued_token_ttl_secs(store: &EventStore, license: LicenseId) -> Result<u32, SignError> {
    let issued = store
        .event_at(&license.stream_name(), 0)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| SignError::Rejected(format!("license {license} is not in the log")))?;
    match decode(&issued).map_err(anyhow::Error::from)? {
        LicenseEvent::LicenseIssued {
            session_ttl_secs,
            token_ttl_secs,
            ..
        } => Ok(effective_token_ttl(token_ttl_secs, session_ttl_secs)),
        _ => Err(SignError::Rejected(format!(
            "license {license} does not start with LicenseIssued"
        ))),
    }
}
