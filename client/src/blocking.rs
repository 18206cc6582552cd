//! The same client for programs without an async runtime: calls block, and
//! heartbeats run on a small runtime of the client's own (one thread).
//!
//! Must not be called from inside an async runtime (blocking there would
//! stall it); use the async [`crate::Client`] there.

use crate::{ClientBuilder, Error, LeaseStatus, VerifiedToken, Verifier};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;
use uuid::Uuid;

/// A blocking client; see [`crate::Client`].
#[derive(Clone, Debug)]
pub struct Client {
    inner: crate::Client,
    runtime: Arc<Runtime>,
}

impl Client {
    /// A blocking client from a configured builder
    /// (`ledger_client::Client::builder(url)...`).
    pub fn new(builder: ClientBuilder) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ledger-client")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("starting the client's runtime: {e}")))?;
        // The HTTP client must be built inside the runtime that drives it.
        let inner = runtime.block_on(async { builder.build() })?;
        Ok(Self {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    /// See [`crate::Client::acquire`].
    pub fn acquire(&self, license: Option<Uuid>, hardware_id: &str) -> Result<Lease, Error> {
        let lease = self
            .runtime
            .block_on(self.inner.acquire(license, hardware_id))?;
        Ok(Lease {
            inner: Some(lease),
            runtime: self.runtime.clone(),
        })
    }

    /// See [`crate::Client::acquire_waiting`].
    pub fn acquire_waiting(
        &self,
        license: Option<Uuid>,
        hardware_id: &str,
        wait: Duration,
    ) -> Result<Lease, Error> {
        let lease =
            self.runtime
                .block_on(self.inner.acquire_waiting(license, hardware_id, wait))?;
        Ok(Lease {
            inner: Some(lease),
            runtime: self.runtime.clone(),
        })
    }

    /// The verifier this client checks tokens with.
    pub fn verifier(&self) -> &Verifier {
        self.inner.verifier()
    }
}

/// A blocking lease; see [`crate::Lease`]. Heartbeats run in the
/// background; dropping it releases the seat (waiting up to 5 s).
#[derive(Debug)]
pub struct Lease {
    inner: Option<crate::Lease>,
    runtime: Arc<Runtime>,
}

impl Lease {
    fn lease(&self) -> &crate::Lease {
        self.inner
            .as_ref()
            .expect("a lease is only taken by release or drop")
    }

    /// See [`crate::Lease::session_id`].
    pub fn session_id(&self) -> Uuid {
        self.lease().session_id()
    }

    /// See [`crate::Lease::license_id`].
    pub fn license_id(&self) -> Uuid {
        self.lease().license_id()
    }

    /// See [`crate::Lease::token`].
    pub fn token(&self) -> Option<VerifiedToken> {
        self.lease().token()
    }

    /// See [`crate::Lease::deadline`].
    pub fn deadline(&self) -> DateTime<Utc> {
        self.lease().deadline()
    }

    /// See [`crate::Lease::status`].
    pub fn status(&self) -> LeaseStatus {
        self.lease().status()
    }

    /// Waits up to `timeout` for the state to change; returns the state then.
    pub fn wait_for_change(&self, timeout: Duration) -> LeaseStatus {
        let mut watch = self.lease().watch();
        watch.mark_unchanged();
        let _ = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, watch.changed()).await });
        self.status()
    }

    /// See [`crate::Lease::release`].
    pub fn release(mut self) -> Result<(), Error> {
        match self.inner.take() {
            Some(lease) => self.runtime.block_on(lease.release()),
            None => Ok(()),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(lease) = self.inner.take() {
            let done = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), lease.release()).await
            });
            if !matches!(done, Ok(Ok(()))) {
                tracing::warn!(
                    "releasing a dropped lease did not complete; the seat expires at its deadline"
                );
            }
        }
    }
}
