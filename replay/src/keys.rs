//! Trusted public keys for checkpoint signatures, loaded the auditor's way:
//! a PEM file (`--key`), a JWKS file (`--keys`) or a JWKS URL (`--jwks-url`,
//! as served at `/.well-known/jwks.json`).
//!
//! Parsing and the signature check itself are the `keys` crate's
//! ([`TrustedKeys`], [`SignatureCheck`]); this module only reads files and
//! fetches URLs. A private PEM is accepted for convenience (its public half
//! is used, the private key is never printed).

use std::path::Path;

use anyhow::Context as _;
pub use keys::{SignatureCheck, TrustedKeys};
use serde_json::Value;

/// Reads a PEM (`jwks == false`) or JWKS (`jwks == true`) file.
pub fn from_file(path: &Path, jwks: bool) -> anyhow::Result<TrustedKeys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    if jwks {
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        TrustedKeys::from_jwks(&doc).with_context(|| format!("JWKS file {}", path.display()))
    } else {
        TrustedKeys::from_pem(&text).with_context(|| format!("key file {}", path.display()))
    }
}

/// Fetches a JWKS document (e.g. `https://host/.well-known/jwks.json`).
pub async fn from_url(url: &str) -> anyhow::Result<TrustedKeys> {
    let doc: Value = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("fetching JWKS from {url}"))?
        .json()
        .await
        .with_context(|| format!("JWKS at {url} is not JSON"))?;
    TrustedKeys::from_jwks(&doc).with_context(|| format!("JWKS at {url}"))
}
