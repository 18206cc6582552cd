//! Acquire requests waiting for their token.
//!
//! The signer records `TokenIssued` in the log; the publisher puts it on
//! NATS; every API replica listens to `<prefix>.*.*.TokenIssued` (a plain
//! core subscription, no consumer state) and hands the token to the request
//! waiting for that session, if it is here. A request that misses the
//! message reads the session stream before giving up with 202. What arrives
//! here is only a hint: the request hands a token out only after verifying
//! it with the service's own keys, for its session (`AppState::verify_session_token`).

use async_nats::Client;
use events::catalog::LicenseEvent;
use events::envelope::{subject_filter, Envelope};
use events::ids::SessionId;
use futures::StreamExt;
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

    /// Listens for `TokenIssued` events until `shutdown`.
    pub async fn listen(
        &self,
        nats: Client,
        subject_prefix: &str,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sub = nats
            .subscribe(subject_filter(subject_prefix, "TokenIssued"))
            .await
            .map_err(|e| anyhow::anyhow!("subscribing to TokenIssued: {e}"))?;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = sub.next() => match m { Some(m) => m, None => return Ok(()) },
            };
            let event = Envelope::from_json(&message.payload).map(|e| e.event());
            if let Ok(Ok(LicenseEvent::TokenIssued {
                session_id,
                key_id,
                token,
                ..
            })) = event
            {
                self.deliver(session_id, (key_id, token));
            }
        }
    }
}
