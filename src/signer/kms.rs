//! The Cloud KMS signing backend, through the official `google-cloud-kms-v1` client.
//!
//! Signing sends only the SHA-256 digest of the JWS signing input
//! (`AsymmetricSign`) and applies Google's end-to-end integrity checks:
//! the request carries `digest_crc32c`, and the response must have
//! `verified_digest_crc32c`, the requested `name`, and a `signature_crc32c`
//! matching the returned signature; a failed CRC check is retried a few
//! times, then reported. Public keys (`GetPublicKey`, `pem_crc32c` checked)
//! of every ENABLED version of the crypto key are cached: versions never
//! change their key, only their state, so a refresh is needed only after a
//! rotation. The private key never leaves KMS.

use std::fmt;

use futures::future::{try_join_all, BoxFuture};
use futures::FutureExt as _;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key_version::{
    CryptoKeyVersionAlgorithm as Algo, CryptoKeyVersionState,
};
use google_cloud_kms_v1::model::{CryptoKeyVersion, Digest};
use keys::PublicKey;
use sha2::{Digest as _, Sha256};
use tokio::sync::RwLock;

use super::{SignerError, SigningBackend};

/// How many times a sign call is attempted when a CRC32C check fails.
const CRC_ATTEMPTS: usize = 3;

/// A signing key version in Cloud KMS (`RSA_SIGN_PKCS1_*_SHA256`).
pub struct KmsSigner {
    client: KeyManagementService,
    key_version: String,
    key_name: String,
    cache: RwLock<Option<Vec<PublicKey>>>,
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsSigner")
            .field("key_version", &self.key_version)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

/// The crypto key of a full key version name, or `None` if malformed.
fn crypto_key_of(version: &str) -> Option<&str> {
    let parts: Vec<&str> = version.split('/').collect();
    let shape = [
        "projects",
        "",
        "locations",
        "",
        "keyRings",
        "",
        "cryptoKeys",
        "",
        "cryptoKeyVersions",
        "",
    ];
    let well_formed = parts.len() == shape.len()
        && parts
            .iter()
            .zip(shape)
            .all(|(part, lit)| !part.is_empty() && (lit.is_empty() || *part == lit));
    if !well_formed {
        return None;
    }
    version
        .rfind("/cryptoKeyVersions/")
        .map(|end| &version[..end])
}

fn kms_error(operation: &'static str, err: google_cloud_kms_v1::Error) -> SignerError {
    SignerError::Kms {
        operation,
        message: err.to_string(),
    }
}

fn crc32c_i64(data: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(data))
}

impl KmsSigner {
    /// A signer for `key_version`
    /// (`projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*`).
    ///
    /// `key_name` is the crypto key whose ENABLED versions are published
    /// (default: the key of `key_version`). With an `endpoint` override the
    /// client uses anonymous credentials (the local stand-in); without, it
    /// uses Google's endpoint and Application Default Credentials
    /// (Workload Identity on GKE). No RPC is made here.
    pub async fn new(
        key_version: String,
        key_name: Option<String>,
        endpoint: Option<String>,
    ) -> Result<Self, SignerError> {
        let parent = crypto_key_of(&key_version).ok_or_else(|| {
            SignerError::KmsConfig(format!(
                "KMS_KEY_VERSION {key_version:?} is not projects/*/locations/*/keyRings/*/cryptoKeys/*/cryptoKeyVersions/*"
            ))
        })?;
        let key_name = key_name.unwrap_or_else(|| parent.to_owned());
        if key_name != parent {
            return Err(SignerError::KmsConfig(format!(
                "KMS_KEY_VERSION {key_version:?} is not a version of KMS_KEY_NAME {key_name:?}"
            )));
        }
        let mut builder = KeyManagementService::builder();
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = builder
            .build()
            .await
            .map_err(|e| SignerError::KmsConfig(e.to_string()))?;
        Ok(Self {
            client,
            key_version,
            key_name,
            cache: RwLock::new(None),
        })
    }

    /// The crypto key whose enabled versions are published.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        const OP: &str = "AsymmetricSign";
        let digest = Sha256::digest(message).to_vec();
        let digest_crc32c = crc32c_i64(&digest);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = self
                .client
                .asymmetric_sign()
                .set_name(&self.key_version)
                .set_digest(Digest::new().set_sha256(digest.clone()))
                .set_digest_crc32c(digest_crc32c)
                .send()
                .await
                .map_err(|e| kms_error(OP, e))?;
            if response.name != self.key_version {
                return Err(SignerError::KmsNameMismatch {
                    operation: OP,
                    expected: self.key_version.clone(),
                    got: response.name,
                });
            }
            let failed = if !response.verified_digest_crc32c {
                "request digest not verified by KMS"
            } else if response.signature_crc32c != Some(crc32c_i64(&response.signature)) {
                "signature_crc32c does not match the signature"
            } else {
                return Ok(response.signature.to_vec());
            };
            tracing::warn!(
                attempt,
                check = failed,
                "Cloud KMS AsymmetricSign CRC32C check failed"
            );
            if attempt >= CRC_ATTEMPTS {
                return Err(SignerError::Crc32c {
                    operation: OP,
                    what: failed,
                });
            }
        }
    }

    async fn enabled_versions(&self) -> Result<Vec<CryptoKeyVersion>, SignerError> {
        let mut versions = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .list_crypto_key_versions()
                .set_parent(&self.key_name)
                .set_page_token(page_token)
                .send()
                .await
                .map_err(|e| kms_error("ListCryptoKeyVersions", e))?;
            versions.extend(
                page.crypto_key_versions
                    .into_iter()
                    .filter(|v| v.state == CryptoKeyVersionState::Enabled),
            );
            if page.next_page_token.is_empty() {
                return Ok(versions);
            }
            page_token = page.next_page_token;
        }
    }

    async fn public_key_of(&self, name: String) -> Result<PublicKey, SignerError> {
        const OP: &str = "GetPublicKey";
        let response = self
            .client
            .get_public_key()
            .set_name(&name)
            .send()
            .await
            .map_err(|e| kms_error(OP, e))?;
        if response.name != name {
            return Err(SignerError::KmsNameMismatch {
                operation: OP,
                expected: name,
                got: response.name,
            });
        }
        if response.pem_crc32c != Some(crc32c_i64(response.pem.as_bytes())) {
            return Err(SignerError::Crc32c {
                operation: OP,
                what: "pem_crc32c does not match the PEM",
            });
        }
        if !matches!(
            response.algorithm,
            Algo::RsaSignPkcs12048Sha256
                | Algo::RsaSignPkcs13072Sha256
                | Algo::RsaSignPkcs14096Sha256
        ) {
            return Err(SignerError::UnsupportedAlgorithm {
                name,
                algorithm: response.algorithm.name().unwrap_or("UNKNOWN").to_owned(),
            });
        }
        Ok(PublicKey::from_pem(name, &response.pem)?)
    }

    async fn fetch_public_keys(&self) -> Result<Vec<PublicKey>, SignerError> {
        let versions = self.enabled_versions().await?;
        let keys = try_join_all(versions.into_iter().map(|v| self.public_key_of(v.name))).await?;
        *self.cache.write().await = Some(keys.clone());
        Ok(keys)
    }
}

impl SigningBackend for KmsSigner {
    fn key_id(&self) -> &str {
        &self.key_version
    }

    fn sign_rs256<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignerError>> {
        self.sign(message).boxed()
    }

    fn public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        async move {
            if let Some(keys) = self.cache.read().await.as_ref() {
                return Ok(keys.clone());
            }
            self.fetch_public_keys().await
        }
        .boxed()
    }

    fn refresh_public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        self.fetch_public_keys().boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aws_lc_rs::signature::RsaKeyPair;

    use super::*;
    use crate::signer::kms_standin::{KmsStandin, StandinFault, StandinVersion, STANDIN_KEY_NAME};
    use crate::signer::local::tests::{claims, TEST_KEY_PEM};
    use crate::signer::signing_public_key;
    use crate::signer::{SignerBackendConfig, SignerConfig, TokenMinter};
    use keys::{pem_decode, verify_license_token, verify_license_token_jwk};

    fn rsa_4096() -> Arc<RsaKeyPair> {
        let (_, der) = pem_decode(&TEST_KEY_PEM).unwrap();
        Arc::new(RsaKeyPair::from_pkcs8(&der).unwrap())
    }

    fn rsa_2048() -> Arc<RsaKeyPair> {
        Arc::new(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    /// Stand-in with v1 ENABLED (RSA-4096), v2 DISABLED, v3 ENABLED.
    async fn standin() -> KmsStandin {
        let versions = vec![
            StandinVersion::new(rsa_4096(), true),
            StandinVersion::new(rsa_2048(), false),
            StandinVersion::new(rsa_2048(), true),
        ];
        KmsStandin::start(STANDIN_KEY_NAME, versions).await.unwrap()
    }

    async fn signer_for(standin: &KmsStandin, version: usize) -> Arc<dyn SigningBackend> {
        let config = SignerConfig {
            backend: SignerBackendConfig::Kms {
                key_version: standin.version_name(version),
                key_name: None,
                endpoint: Some(standin.endpoint().to_owned()),
            },
        };
        crate::signer::backend_from_env_config(&config)
            .await
            .unwrap()
    }

    /// Against the KMS REST stand-in: the token verifies with the stand-in's
    /// public key, `kid` is the version name, only ENABLED versions are listed.
    #[tokio::test]
    async fn kms_rest_standin_token_verifies_and_only_enabled_keys_are_published() {
        let standin = standin().await;
        let signer = signer_for(&standin, 0).await;
        assert_eq!(signer.key_id(), standin.version_name(0));

        let token = TokenMinter::new(signer.clone(), "https://ledger.test")
            .mint(&claims("https://ledger.test"))
            .await
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid, Some(standin.version_name(0)));
        let standin_pem = standin.public_key_pem(0).unwrap();
        let verified = verify_license_token(&token, &standin_pem, "https://ledger.test").unwrap();
        assert_eq!(verified.sid, "sess-1");

        let keys = signer.public_keys().await.unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [standin.version_name(0), standin.version_name(2)]);
        let signing = signing_public_key(signer.as_ref()).await.unwrap();
        assert_eq!(
            signing,
            PublicKey::from_pem(standin.version_name(0), &standin_pem).unwrap()
        );
        verify_license_token_jwk(&token, &signing.n, &signing.e, "https://ledger.test").unwrap();
        assert_eq!(signer.refresh_public_keys().await.unwrap(), keys);
    }

    /// A KMS REST stand-in that corrupts `signatureCrc32c` makes signing fail
    /// with a CRC error (after the bounded retries); other faults are caught too.
    #[tokio::test]
    async fn kms_rest_standin_faults_are_detected() {
        let standin = standin().await;
        let signer = signer_for(&standin, 0).await;
        signer.sign_rs256(b"warm-up").await.unwrap();

        standin.set_fault(StandinFault::CorruptSignatureCrc32c);
        let before = standin.sign_calls();
        let err = signer.sign_rs256(b"payload").await.unwrap_err();
        assert!(matches!(err, SignerError::Crc32c { .. }), "{err}");
        assert!(err.to_string().contains("CRC32C"), "{err}");
        assert_eq!(standin.sign_calls() - before, CRC_ATTEMPTS as u64);

        standin.set_fault(StandinFault::UnverifiedDigest);
        let err = signer.sign_rs256(b"payload").await.unwrap_err();
        assert!(matches!(err, SignerError::Crc32c { .. }), "{err}");

        standin.set_fault(StandinFault::WrongName);
        let err = signer.sign_rs256(b"payload").await.unwrap_err();
        assert!(matches!(err, SignerError::KmsNameMismatch { .. }), "{err}");

        standin.set_fault(StandinFault::None);
        signer.sign_rs256(b"payload").await.unwrap();

        let disabled = signer_for(&standin, 1).await;
        let err = disabled.sign_rs256(b"payload").await.unwrap_err();
        assert!(matches!(err, SignerError::Kms { .. }), "{err}");
    }

    #[tokio::test]
    async fn malformed_key_names_are_refused_before_any_call() {
        let err = KmsSigner::new(
            "projects/p/keys/k".into(),
            None,
            Some("http://127.0.0.1:9".into()),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("KMS_KEY_VERSION"), "{err}");
        let version = format!("{STANDIN_KEY_NAME}/cryptoKeyVersions/1");
        let other = Some("projects/p/locations/l/keyRings/r/cryptoKeys/other".to_owned());
        assert!(KmsSigner::new(version, other, None).await.is_err());
        assert_eq!(
            crypto_key_of(&format!("{STANDIN_KEY_NAME}/cryptoKeyVersions/7")),
            Some(STANDIN_KEY_NAME)
        );
    }
}
