//! Acquire requests waiting for their token.
//!
//! The signer records `TokenIssued` in the log and then publishes the token
//! on the core subject `<prefix>-direct.TokenIssued`; the publisher later
//! puts the event on the stream too. Every API replica listens to both (plain
//! core subscriptions, no consumer state) and hands the token to the request
//! waiting for that session, if it is here; the first to arrive wins. A request that misses the
//! message reads the session stream before giving up with 202. What arrives
//! here is only a hint: the request hands a token out only after verifying
//! it with the service's own keys, for its session (`AppState::verify_session_token`).

use async_nats::Client;
use events::catalog::LicenseEvent;
use events::envelope::{direct_token_subject, subject_filter, Envelope};
use events::ids::SessionId;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// A minted token: (key id, compact JWS).
pub type Minted = (String, String);

/// Requests waiting for a session's token.
#[derive(Default)]
pub struct TokenWaiters {
    waiting: Mutex<HashMap<SessionId, Vec<oneshot::Sender<Minted>>>>,
}

impl TokenWaiters {
    /// Waits for `session`'s token; drop the receiver to stop waiting.
    pub fn register(&self, session: SessionId) -> oneshot::Receiver<Minted> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.retain(|_, senders| {
            senders.retain(|s| !s.is_closed());
            !senders.is_empty()
        });
        waiting.entry(session).or_default().push(tx);
        rx
    }

    /// Hands a token to everyone waiting for it.
    pub fn deliver(&self, session: SessionId, minted: Minted) {
        let senders = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(minted.clone());
        }
    }

    /// Listens for tokens until `shutdown`: the signer's direct messages and
    /// the `TokenIssued` events the publisher puts on the stream.
    pub async fn listen(
        &self,
        nats: Client,
        subject_prefix: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let logged = nats
            .subscribe(subject_filter(subject_prefix, "TokenIssued"))
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to TokenIssued: {e}"))?;
        let direct = nats
            .subscribe(direct_token_subject(subject_prefix))
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to direct tokens: {e}"))?;
        let mut messages = futures::stream::select(
            logged.map(|m| from_event(&m.payload)),
            direct.map(|m| {
                serde_json::from_slice::<DirectToken>(&m.payload)
                    .ok()
                    .map(|d| (d.session_id, (d.key_id, d.token)))
            }),
        );
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = messages.next() => match m { Some(m) => m, None => return Ok(()) },
            };
            if let Some((session, minted)) = message {
                self.deliver(session, minted);
            }
        }
    }
}

/// What the signer publishes on [`direct_token_subject`] once a token is in the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectToken {
    /// The session.
    pub session_id: SessionId,
    /// Signing key version.
    pub key_id: String,
    /// The compact JWS.
    pub token: String,
}

fn from_event(payload: &[u8]) -> Option<(SessionId, Minted)> {
    match Envelope::from_json(payload).ok()?.event().ok()? {
        LicenseEvent::TokenIssued {
            session_id,
            key_id,
            token,
            ..
        } => Some((session_id, (key_id, token))),
        _ => None,
    }
}
