//! Connecting to Redis, with TLS when the URL says `rediss://`.
//!
//! Memorystore with in-transit encryption presents a certificate signed by
//! a per-instance CA that no system trust store holds: the CA file is
//! passed explicitly (`REDIS_CA_FILE`, `ledger --redis-ca-file`).

use anyhow::Context as _;
use std::path::Path;

/// A Redis client for `url`, trusting `ca_file` (PEM) when given.
///
/// Errors: a malformed URL, an unreadable CA file, or a CA file given for a
/// plain `redis://` URL (a TLS setting that would silently do nothing).
pub fn client(url: &str, ca_file: Option<&Path>) -> anyhow::Result<redis::Client> {
    install_crypto_provider();
    let Some(ca_file) = ca_file else {
        return redis::Client::open(url).context("parsing the Redis URL");
    };
    if !url.starts_with("rediss://") {
        anyhow::bail!("a Redis CA file is set but the URL is not rediss://");
    }
    let root_cert = std::fs::read(ca_file)
        .with_context(|| format!("reading the Redis CA file {}", ca_file.display()))?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        },
    )
    .context("parsing the Redis URL or its CA file")
}

/// A reconnecting connection to Redis (see [`client`]).
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
) -> anyhow::Result<redis::aio::ConnectionManager> {
    redis::aio::ConnectionManager::new(client(url, ca_file)?)
        .await
        .context("connecting to Redis")
}

/// Makes aws-lc-rs the process's TLS crypto provider (rustls needs one
/// chosen when several are compiled in). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
