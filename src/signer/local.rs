//! The local signing backend: an RSA private key in a PKCS#8 PEM file.
//!
//! For development and tests. On first use it generates an RSA-4096 key and
//! writes it with mode 0600. Signing (~5 ms of CPU for RSA-4096) runs on
//! tokio's blocking pool so it never stalls the async workers. The private
//! key is never printed: `Debug` shows the key id only.

use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use keys::{pem_encode, private_key_from_pem, PublicKey, RsaSigner};

use super::{SignerError, SigningBackend};

/// An RSA key held in process memory, loaded from (or generated into) a PEM file.
pub struct LocalPemSigner {
    key: Arc<RsaSigner>,
}

impl fmt::Debug for LocalPemSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPemSigner")
            .field("kid", &self.key.public_key().kid)
            .finish_non_exhaustive()
    }
}

impl LocalPemSigner {
    /// Loads the PEM key at `path`, or, when the file does not exist,
    /// generates an RSA-4096 key and writes it there (parent directories
    /// created, file mode 0600). Blocking: call from a blocking context.
    pub fn load_or_generate(path: impl AsRef<Path>) -> Result<Self, SignerError> {
        let path = path.as_ref();
        let file_err = |source| SignerError::KeyFile {
            path: path.to_owned(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = RsaKeyPair::generate(KeySize::Rsa4096)
                    .map_err(|_| SignerError::KeyGeneration)?;
                let pkcs8: Pkcs8V1Der<'static> = key
                    .as_der()
                    .map_err(|_| SignerError::InvalidKey("cannot encode private key"))?;
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(file_err)?;
                }
                write_private(path, &pem_encode("PRIVATE KEY", pkcs8.as_ref()))
                    .map_err(file_err)?;
                tracing::info!(path = %path.display(), "generated a new RSA-4096 signing key");
                Self::from_key_pair(key)
            }
            Err(e) => Err(file_err(e)),
        }
    }

    /// Parses a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, SignerError> {
        Self::from_key_pair(private_key_from_pem(pem)?)
    }

    /// Wraps an `aws-lc-rs` key pair (refused below 2048 bits).
    pub fn from_key_pair(key: RsaKeyPair) -> Result<Self, SignerError> {
        Ok(Self {
            key: Arc::new(RsaSigner::from_key_pair(key)?),
        })
    }

    /// The public key (SPKI PEM and JWK components) of this signer.
    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// Signs synchronously on the calling thread (RSASSA-PKCS1-v1_5, SHA-256).
    pub fn sign_blocking(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        self.key
            .sign_rs256(message)
            .map_err(|_| SignerError::Signing)
    }
}

/// Creates `path` exclusively with owner-only permissions and writes `pem`.
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

impl SigningBackend for LocalPemSigner {
    fn key_id(&self) -> &str {
        &self.key.public_key().kid
    }

    fn sign_rs256<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, SignerError>> {
        let key = Arc::clone(&self.key);
        let message = message.to_vec();
        async move {
            tokio::task::spawn_blocking(move || {
                key.sign_rs256(&message).map_err(|_| SignerError::Signing)
            })
            .await?
        }
        .boxed()
    }

    fn public_keys(&self) -> BoxFuture<'_, Result<Vec<PublicKey>, SignerError>> {
        let keys = vec![self.key.public_key().clone()];
        async move { Ok(keys) }.boxed()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::signer::TokenMinter;
    use keys::{verify_license_token, verify_license_token_jwk, LicenseClaims};

    /// One RSA-4096 key per test process (generation takes about a second).
    pub(crate) static TEST_KEY_PEM: LazyLock<String> = LazyLock::new(|| {
        let key = RsaKeyPair::generate(KeySize::Rsa4096).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        pem_encode("PRIVATE KEY", der.as_ref())
    });

    pub(crate) fn claims(issuer: &str) -> LicenseClaims {
        let now = chrono::Utc::now().timestamp();
        LicenseClaims {
            iss: issuer.into(),
            sub: "user-1".into(),
            tenant: "tenant-a".into(),
            license: "lic-1".into(),
            product: "cad-pro".into(),
            sid: "sess-1".into(),
            hwid: "hw-1".into(),
            iat: now,
            nbf: now,
            exp: now + 360,
            jti: Some("j-1".into()),
            pos: Some(7),
            srv: Some(now * 1000),
        }
    }

    #[tokio::test]
    async fn the_public_half_publishes_keys_and_refuses_to_sign() {
        let signer = Arc::new(LocalPemSigner::from_pem(&TEST_KEY_PEM).unwrap());
        let public = crate::signer::PublicOnly(signer.clone());
        assert_eq!(public.key_id(), signer.key_id());
        assert_eq!(
            public.public_keys().await.unwrap(),
            signer.public_keys().await.unwrap()
        );
        let minter = TokenMinter::new(Arc::new(public), "https://ledger.test");
        let refused = minter.mint(&claims("https://ledger.test")).await;
        assert!(
            matches!(refused, Err(crate::signer::SignerError::NotTheSigner)),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn minted_tokens_verify_with_pem_and_jwk() {
        let signer = Arc::new(LocalPemSigner::from_pem(&TEST_KEY_PEM).unwrap());
        assert!(signer.key_id().starts_with("local-") && signer.key_id().len() == 22);
        let minter = TokenMinter::new(signer.clone(), "https://ledger.test");
        let claims = claims("https://ledger.test");
        let token = minter.mint(&claims).await.unwrap();

        let public = signer.public_keys().await.unwrap().remove(0);
        assert_eq!(public.kid, signer.key_id());
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(signer.key_id()));
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);

        let via_pem = verify_license_token(&token, &public.pem, "https://ledger.test").unwrap();
        assert_eq!(via_pem, claims);
        let via_jwk =
            verify_license_token_jwk(&token, &public.n, &public.e, "https://ledger.test").unwrap();
        assert_eq!(via_jwk, claims);
        // Altered tokens and other issuers are refused: see the `keys` crate's tests.
        assert!(verify_license_token(&token, &public.pem, "https://other.test").is_err());
    }

    #[tokio::test]
    async fn key_generated_on_first_use_is_persisted_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("signer-test-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested/signing-key.pem");
        let first = LocalPemSigner::load_or_generate(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(first.key.key_pair().public_modulus_len(), 512, "RSA-4096");
        let second = LocalPemSigner::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key(), second.public_key());
        assert!(!format!("{second:?}").contains("PRIVATE"));

        // A token signed by the first instance verifies with the reloaded key.
        let token = TokenMinter::new(Arc::new(first), "iss")
            .mint(&claims("iss"))
            .await
            .unwrap();
        verify_license_token(&token, &second.public_key().pem, "iss").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let err = LocalPemSigner::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid signing key: not a valid RSA private key"
        );
    }
}
