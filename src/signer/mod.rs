//! The signer: RS256 license tokens signed by a key that never leaves its backend.
//!
//! Owns the [`SigningBackend`] trait and its two implementations — Google Cloud
//! KMS ([`KmsSigner`], production) and a local PKCS#8 PEM key
//! ([`LocalPemSigner`], development and tests) — plus token minting
//! ([`TokenMinter`]). Public keys, the JWKS document and token verification
//! live in the `keys` crate, shared with the auditor.
//!
//! Policy:
//! - RSA private-key work goes through `aws-lc-rs` (or Cloud KMS); never the
//!   `rsa` crate (RUSTSEC-2023-0071).
//! - Key material (private keys, PEM bodies of private keys) never appears in
//!   `Debug`, `Display`, errors or logs; public keys and key ids may.
//! - This module does not consume NATS or touch the event log: the worker that
//!   consumes approved acquisitions calls [`TokenMinter::mint`].
//! - [`kms_standin`] is a local HTTP stand-in of the Cloud KMS REST API for
//!   tests; it is never wired into production configuration by this module.

pub mod kms;
pub mod kms_standin;
pub mod local;
pub mod mint;

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use keys::{KeyError, PublicKey};

/// The claims [`TokenMinter::mint`] signs (defined with their verification in `keys`).
pub use keys::LicenseClaims;
pub use kms::KmsSigner;
pub use local::LocalPemSigner;
pub use mint::TokenMinter;

/// Everything that can go wrong while loading keys, signing or verifying.
///
/// Messages name the operation and the resource (paths, key version names),
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    /// The local key file could not be read, created or written.
    #[error("signing key file {path}: {source}")]
    KeyFile {
        /// Path of the key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be parsed or is not a usable RSA key.
    #[error("invalid signing key: {0}")]
    InvalidKey(&'static str),
    /// Generating a new RSA key failed.
    #[error("RSA key generation failed")]
    KeyGeneration,
    /// The RSA signing primitive failed.
    #[error("RSA signing failed")]
    Signing,
    /// The blocking signing task panicked or was cancelled.
    #[error("signing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The KMS client could not be built or configured.
    #[error("Cloud KMS client: {0}")]
    KmsConfig(String),
    /// A Cloud KMS call failed.
    #[error("Cloud KMS {operation} failed: {message}")]
    Kms {
        /// The RPC, e.g. `AsymmetricSign`.
        operation: &'static str,
        /// The error reported by the client library.
        message: String,
    },
    /// A CRC32C integrity check of a KMS request or response failed.
    #[error("Cloud KMS {operation}: CRC32C check failed ({what}); data corrupted in transit")]
    Crc32c {
        /// The RPC, e.g. `AsymmetricSign`.
        operation: &'static str,
        /// Which checksum failed.
        what: &'static str,
    },
    /// KMS answered for a different key version than the one asked for.
    #[error("Cloud KMS {operation}: answered for {got}, expected {expected}")]
    KmsNameMismatch {
        /// The RPC, e.g. `AsymmetricSign`.
        operation: &'static str,
        /// The key version name we asked for.
        expected: String,
        /// The key version name in the response.
        got: String,
    },
    /// The key version uses an algorithm other than RSA PKCS#1 v1.5 SHA-256.
    #[error("key version {name} has algorithm {algorithm}, expected RSA_SIGN_PKCS1_*_SHA256")]
    UnsupportedAlgorithm {
        /// The key version name.
        name: String,
        /// The algorithm KMS reports.
        algorithm: String,
    },
    /// The signing key is not among the enabled, published keys.
    #[error("signing key {0} is not an enabled key version")]
    SigningKeyNotPublished(String),
    /// This process does not run the signer: it holds public keys only.
    #[error("this process does not sign: only the signer component (`licensed sign`) does")]
    NotTheSigner,
    /// Claims or header could not be encoded as JSON.
    #[error("token encoding failed: {0}")]
    Encoding(#[from] serde_json::Error),
    /// Any other failure reported by the `keys` crate.
    #[error(transparent)]
    Key(KeyError),
}

impl From<KeyError> for SignerError {
    /// Unusable key material stays [`SignerError::InvalidKey`], so messages
    /// read "invalid signing key: ..." whichever crate found the problem.
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::InvalidKey(reason) => Self::InvalidKey(reason),
            other => Self::Key(other),
        }
    }
}

/// A place where an RS256 signing key lives.
///
/// Object safe: the service holds an `Arc<dyn SigningBackend>`.
pub trait SigningBackend: Send + Sync + 'static {
    /// The id of the signing key version, used as the JWT `kid`.
    ///
    /// KMS: the full `projects/*/.../cryptoKeyVersions/*` resource name.
    /// Local: `local-<first 16 hex digits of SHA-256(SPKI DER)>`.
    fn key_id(&self) -> &str;

    /// RSASSA-PKCS1-v1_5 SHA-256 signature of `message` (the JWS signing input).
    fn sign_rs256<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignerError>>;

    /// Every enabled key version's public key (the JWKS), possibly cached.
    fn public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>>;

    /// Like [`SigningBackend::public_keys`] but bypasses any cache (e.g. after
    /// a key rotation, or when a client reports an unknown `kid`).
    fn refresh_public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        self.public_keys()
    }
}

/// The public half of a backend, for every process but the signer's: it
/// publishes and checks keys and refuses to sign. In production the Cloud
/// IAM roles say the same (only the signer's service account may sign);
/// this keeps a misrouted call in any other component from minting.
pub struct PublicOnly(pub Arc<dyn SigningBackend>);

impl SigningBackend for PublicOnly {
    fn key_id(&self) -> &str {
        self.0.key_id()
    }

    fn sign_rs256<'a>(&'a self, _: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignerError>> {
        Box::pin(async { Err(SignerError::NotTheSigner) })
    }

    fn public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        self.0.public_keys()
    }

    fn refresh_public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        self.0.refresh_public_keys()
    }
}

/// The public key of the key version that currently signs (returned by
/// acquire next to the token).
pub async fn signing_public_key(backend: &dyn SigningBackend) -> Result<PublicKey, SignerError> {
    let kid = backend.key_id();
    let find = |keys: Vec<PublicKey>| keys.into_iter().find(|k| k.kid == kid);
    if let Some(key) = find(backend.public_keys().await?) {
        return Ok(key);
    }
    find(backend.refresh_public_keys().await?)
        .ok_or_else(|| SignerError::SigningKeyNotPublished(kid.to_owned()))
}

/// Which signing backend to build; the service maps `SIGNER_BACKEND`,
/// `SIGNING_KEY_PATH`, `KMS_KEY_VERSION`, `KMS_KEY_NAME` and `KMS_ENDPOINT`
/// onto it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerConfig {
    /// The backend and its settings.
    pub backend: SignerBackendConfig,
}

/// Settings of one signing backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerBackendConfig {
    /// A PKCS#8 PEM RSA key on disk, generated (RSA-4096) if missing.
    Local {
        /// `SIGNING_KEY_PATH`.
        path: PathBuf,
    },
    /// A Cloud KMS asymmetric signing key.
    Kms {
        /// `KMS_KEY_VERSION`: `projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*`.
        key_version: String,
        /// `KMS_KEY_NAME`: the crypto key whose enabled versions are published;
        /// derived from `key_version` when absent.
        key_name: Option<String>,
        /// `KMS_ENDPOINT`: an endpoint override (the stand-in); anonymous
        /// credentials are used with it. Absent: Google's endpoint with
        /// Application Default Credentials.
        endpoint: Option<String>,
    },
}

/// Builds the configured backend. Local keys are loaded (or generated) on a
/// blocking thread; a KMS backend only builds its client here.
pub async fn backend_from_env_config(
    config: &SignerConfig,
) -> Result<Arc<dyn SigningBackend>, SignerError> {
    match &config.backend {
        SignerBackendConfig::Local { path } => {
            let path = path.clone();
            let signer =
                tokio::task::spawn_blocking(move || LocalPemSigner::load_or_generate(&path))
                    .await??;
            Ok(Arc::new(signer))
        }
        SignerBackendConfig::Kms {
            key_version,
            key_name,
            endpoint,
        } => {
            let signer =
                KmsSigner::new(key_version.clone(), key_name.clone(), endpoint.clone()).await?;
            Ok(Arc::new(signer))
        }
    }
}
