//! A local HTTP **stand-in** of the Cloud KMS REST API, for tests only.
//!
//! It is not Cloud KMS and not a mock of our code: it speaks the same
//! HTTP/JSON protocol that the official `google-cloud-kms-v1` client uses
//! (`GET /v1/{key}/cryptoKeyVersions`, `GET /v1/{version}/publicKey`,
//! `POST /v1/{version}:asymmetricSign`), so [`super::KmsSigner`] runs its real
//! code path against it with anonymous credentials. It holds its own
//! `aws-lc-rs` RSA keys, one per key version, each ENABLED or DISABLED, and
//! has a fault switch ([`StandinFault`]) to exercise the integrity checks.
//! Listens on `127.0.0.1:0`; the server stops when the value is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{Digest, SHA256};
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keys::PublicKey;
use serde_json::{json, Value};

/// A well-formed crypto key name for tests that need no particular one.
pub const STANDIN_KEY_NAME: &str =
    "projects/standin/locations/global/keyRings/license-ledger/cryptoKeys/license-signing";

/// One key version served by the stand-in.
pub struct StandinVersion {
    key: Arc<RsaKeyPair>,
    enabled: bool,
}

impl StandinVersion {
    /// A version holding `key`, in state ENABLED or DISABLED.
    pub fn new(key: Arc<RsaKeyPair>, enabled: bool) -> Self {
        Self { key, enabled }
    }
}

/// Faults the stand-in can inject into `asymmetricSign` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StandinFault {
    /// Answer correctly.
    #[default]
    None,
    /// Send a `signatureCrc32c` that does not match the signature.
    CorruptSignatureCrc32c,
    /// Answer `verifiedDigestCrc32c: false`.
    UnverifiedDigest,
    /// Answer with another version's `name`.
    WrongName,
}

#[derive(Clone)]
struct Version {
    name: String,
    enabled: bool,
    key: Arc<RsaKeyPair>,
    pem: String,
    algorithm: &'static str,
}

struct Standin {
    key_name: String,
    versions: std::sync::RwLock<Vec<Version>>,
    fault: Mutex<StandinFault>,
    sign_calls: AtomicU64,
}

/// A running KMS REST stand-in.
pub struct KmsStandin {
    endpoint: String,
    shared: Arc<Standin>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KmsStandin {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl KmsStandin {
    /// Serves `versions` as `{key_name}/cryptoKeyVersions/1..` on `127.0.0.1:0`.
    pub async fn start(
        key_name: impl Into<String>,
        versions: Vec<StandinVersion>,
    ) -> std::io::Result<Self> {
        let key_name = key_name.into();
        let versions = versions
            .into_iter()
            .enumerate()
            .map(|(i, v)| version(&key_name, i, v))
            .collect::<std::io::Result<Vec<_>>>()?;
        let shared = Arc::new(Standin {
            key_name,
            versions: std::sync::RwLock::new(versions),
            fault: Mutex::new(StandinFault::None),
            sign_calls: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/v1/{*path}", get(get_route).post(post_route))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "KMS stand-in server stopped");
            }
        });
        Ok(Self {
            endpoint,
            shared,
            server,
        })
    }

    /// The base URL to pass as the client's endpoint (`KMS_ENDPOINT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The crypto key name.
    pub fn key_name(&self) -> &str {
        &self.shared.key_name
    }

    /// Full resource name of the version at `index` (0-based; the id is `index + 1`).
    pub fn version_name(&self, index: usize) -> String {
        format!("{}/cryptoKeyVersions/{}", self.shared.key_name, index + 1)
    }

    /// SPKI PEM of the version at `index`.
    pub fn public_key_pem(&self, index: usize) -> Option<String> {
        self.shared.read().get(index).map(|v| v.pem.clone())
    }

    /// Switches the fault injected into subsequent `asymmetricSign` answers.
    pub fn set_fault(&self, fault: StandinFault) {
        *self.shared.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// How many `asymmetricSign` requests reached the stand-in.
    pub fn sign_calls(&self) -> u64 {
        self.shared.sign_calls.load(Ordering::Relaxed)
    }
}

/// A Google-style JSON error (`{"error":{"code","message","status"}}`).
struct StandinError {
    code: StatusCode,
    status: &'static str,
    message: String,
}

impl IntoResponse for StandinError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code.as_u16(), "message": self.message, "status": self.status,
        }});
        (self.code, Json(body)).into_response()
    }
}

fn error(code: StatusCode, status: &'static str, message: impl Into<String>) -> StandinError {
    StandinError {
        code,
        status,
        message: message.into(),
    }
}

fn not_found(path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{path} not found"),
    )
    .into_response()
}

fn crc32c_string(data: &[u8]) -> String {
    crc32c::crc32c(data).to_string()
}

impl KmsStandin {
    /// Adds an enabled version holding `key`; returns its index.
    pub fn add_version(&self, key: Arc<RsaKeyPair>) -> std::io::Result<usize> {
        let mut versions = self
            .shared
            .versions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let index = versions.len();
        versions.push(version(
            &self.shared.key_name,
            index,
            StandinVersion::new(key, true),
        )?);
        Ok(index)
    }

    /// Enables or disables the version at `index` (as `gcloud kms keys versions disable`).
    pub fn set_enabled(&self, index: usize, enabled: bool) {
        let mut versions = self
            .shared
            .versions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(v) = versions.get_mut(index) {
            v.enabled = enabled;
        }
    }
}

/// Version `index` (0-based) of `key_name`.
fn version(key_name: &str, index: usize, v: StandinVersion) -> std::io::Result<Version> {
    let name = format!("{key_name}/cryptoKeyVersions/{}", index + 1);
    let public = PublicKey::from_rsa_public_key(name.clone(), v.key.public_key())
        .map_err(std::io::Error::other)?;
    let algorithm = match v.key.public_modulus_len() * 8 {
        2048 => "RSA_SIGN_PKCS1_2048_SHA256",
        3072 => "RSA_SIGN_PKCS1_3072_SHA256",
        _ => "RSA_SIGN_PKCS1_4096_SHA256",
    };
    Ok(Version {
        name,
        enabled: v.enabled,
        key: v.key,
        pem: public.pem,
        algorithm,
    })
}

impl Standin {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Version>> {
        self.versions.read().unwrap_or_else(|p| p.into_inner())
    }

    fn version(&self, name: &str) -> Result<Version, StandinError> {
        let version = self
            .read()
            .iter()
            .find(|v| v.name == name)
            .cloned()
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    format!("{name} not found"),
                )
            })?;
        if !version.enabled {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                format!("{name} is not enabled, current state is: DISABLED."),
            ));
        }
        Ok(version)
    }
}

async fn get_route(State(shared): State<Arc<Standin>>, Path(path): Path<String>) -> Response {
    if let Some(name) = path.strip_suffix("/publicKey") {
        return match shared.version(name) {
            Ok(v) => Json(json!({
                "name": v.name,
                "pem": v.pem,
                "pemCrc32c": crc32c_string(v.pem.as_bytes()),
                "algorithm": v.algorithm,
                "protectionLevel": "SOFTWARE",
            }))
            .into_response(),
            Err(e) => e.into_response(),
        };
    }
    match path.strip_suffix("/cryptoKeyVersions") {
        Some(parent) if parent == shared.key_name => {
            let versions: Vec<Value> = shared
                .read()
                .iter()
                .map(|v| {
                    json!({
                        "name": v.name,
                        "state": if v.enabled { "ENABLED" } else { "DISABLED" },
                        "protectionLevel": "SOFTWARE",
                        "algorithm": v.algorithm,
                    })
                })
                .collect();
            let total = versions.len();
            Json(json!({"cryptoKeyVersions": versions, "totalSize": total})).into_response()
        }
        _ => not_found(&path),
    }
}

async fn post_route(
    State(shared): State<Arc<Standin>>,
    Path(path): Path<String>,
    body: Bytes,
) -> Response {
    let Some(name) = path.strip_suffix(":asymmetricSign") else {
        return not_found(&path);
    };
    shared.sign_calls.fetch_add(1, Ordering::Relaxed);
    match asymmetric_sign(&shared, name, &body) {
        Ok(response) => Json(response).into_response(),
        Err(e) => e.into_response(),
    }
}

fn asymmetric_sign(shared: &Standin, name: &str, body: &[u8]) -> Result<Value, StandinError> {
    let invalid = |message: &str| error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message);
    let version = shared.version(name)?;
    let request: Value = serde_json::from_slice(body).map_err(|_| invalid("body is not JSON"))?;
    let digest = request["digest"]["sha256"]
        .as_str()
        .and_then(|b64| STANDARD.decode(b64).ok())
        .ok_or_else(|| invalid("digest.sha256 is required"))?;
    let verified = match &request["digestCrc32c"] {
        Value::Null => false,
        given => {
            let given = given
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| given.to_string());
            if given != crc32c_string(&digest) {
                return Err(invalid(
                    "The checksum in field digest_crc32c did not match the data",
                ));
            }
            true
        }
    };
    let digest = Digest::import_less_safe(&digest, &SHA256)
        .map_err(|_| invalid("digest.sha256 must be 32 bytes"))?;
    let mut signature = vec![0; version.key.public_modulus_len()];
    version
        .key
        .sign_digest(&RSA_PKCS1_SHA256, &digest, &mut signature)
        .map_err(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "signing failed",
            )
        })?;
    let fault = *shared.fault.lock().unwrap_or_else(|e| e.into_inner());
    let mut signature_crc32c = crc32c::crc32c(&signature);
    if fault == StandinFault::CorruptSignatureCrc32c {
        signature_crc32c ^= 1;
    }
    let answered_name = if fault == StandinFault::WrongName {
        format!("{}/cryptoKeyVersions/999", shared.key_name)
    } else {
        version.name.clone()
    };
    Ok(json!({
        "signature": STANDARD.encode(&signature),
        "signatureCrc32c": signature_crc32c.to_string(),
        "verifiedDigestCrc32c": verified && fault != StandinFault::UnverifiedDigest,
        "name": answered_name,
        "protectionLevel": "SOFTWARE",
    }))
}
