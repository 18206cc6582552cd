//! License tokens: the claims, minting (RS256 via a [`SigningBackend`]) and verification.
//!
//! Minting builds the JWS by hand (header, payload, signature, all base64url
//! without padding) because the signature comes from a backend that may be
//! remote (Cloud KMS). Verification uses `jsonwebtoken` with the algorithm
//! pinned to RS256. Tokens are never logged.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{SignerError, SigningBackend};

/// Allowed clock skew, in seconds, when checking `exp` and `nbf`.
pub const VERIFY_LEEWAY_SECS: u64 = 30;

/// The claims of a license token. Times are seconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// Issuer: the license server (overwritten by [`TokenMinter::mint`]).
    pub iss: String,
    /// Subject: the user id.
    pub sub: String,
    /// Tenant id.
    pub tenant: String,
    /// License id.
    pub license: String,
    /// Product the license is for.
    pub product: String,
    /// Session id of the seat.
    pub sid: String,
    /// Hardware id of the machine holding the seat.
    pub hwid: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

/// Mints RS256 license tokens with one signing backend and one issuer.
#[derive(Clone)]
pub struct TokenMinter {
    backend: Arc<dyn SigningBackend>,
    issuer: String,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("kid", &self.backend.key_id())
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenMinter {
    /// A minter signing with `backend` and stamping `issuer` as `iss`.
    pub fn new(backend: Arc<dyn SigningBackend>, issuer: impl Into<String>) -> Self {
        Self {
            backend,
            issuer: issuer.into(),
        }
    }

    /// The issuer written into every token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id (`kid`) of the signing key.
    pub fn key_id(&self) -> &str {
        self.backend.key_id()
    }

    /// The signing backend.
    pub fn backend(&self) -> &Arc<dyn SigningBackend> {
        &self.backend
    }

    /// Signs `claims` as a compact JWS: `{"alg":"RS256","typ":"JWT","kid":..}`.
    /// The token's `iss` is always this minter's issuer, whatever `claims.iss` says.
    pub async fn mint(&self, claims: &LicenseClaims) -> Result<String, SignerError> {
        let header = serde_json::to_vec(&Header {
            alg: "RS256",
            typ: "JWT",
            kid: self.backend.key_id(),
        })?;
        let claims = LicenseClaims {
            iss: self.issuer.clone(),
            ..claims.clone()
        };
        let payload = serde_json::to_vec(&claims)?;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = self.backend.sign_rs256(token.as_bytes()).await?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// Verifies a license token against an SPKI (or PKCS#1) public key PEM:
/// RS256 only, `iss` must equal `expected_issuer`, `exp`/`nbf` checked with
/// [`VERIFY_LEEWAY_SECS`] of leeway.
pub fn verify_license_token(
    token: &str,
    public_key_pem: &str,
    expected_issuer: &str,
) -> Result<LicenseClaims, SignerError> {
    let key =
        DecodingKey::from_rsa_pem(public_key_pem.as_bytes()).map_err(SignerError::InvalidToken)?;
    verify_with(token, &key, expected_issuer)
}

/// Like [`verify_license_token`], with the key given as JWK `n` and `e`
/// (base64url), e.g. taken from the JWKS.
pub fn verify_license_token_jwk(
    token: &str,
    n: &str,
    e: &str,
    expected_issuer: &str,
) -> Result<LicenseClaims, SignerError> {
    let key = DecodingKey::from_rsa_components(n, e).map_err(SignerError::InvalidToken)?;
    verify_with(token, &key, expected_issuer)
}

fn verify_with(
    token: &str,
    key: &DecodingKey,
    expected_issuer: &str,
) -> Result<LicenseClaims, SignerError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[expected_issuer]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = VERIFY_LEEWAY_SECS;
    jsonwebtoken::decode::<LicenseClaims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(SignerError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::local::tests::{claims, TEST_KEY_PEM};
    use crate::signer::LocalPemSigner;

    #[tokio::test]
    async fn minter_stamps_its_issuer_and_pins_rs256() {
        let signer = Arc::new(LocalPemSigner::from_pem(&TEST_KEY_PEM).unwrap());
        let pem = signer.public_key().pem.clone();
        let minter = TokenMinter::new(signer, "https://ledger.test");
        let token = minter.mint(&claims("ignored")).await.unwrap();
        let verified = verify_license_token(&token, &pem, "https://ledger.test").unwrap();
        assert_eq!(verified.iss, "https://ledger.test");

        // The same claims with alg "none" are refused.
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(verify_license_token(&none, &pem, "https://ledger.test").is_err());
    }

    #[tokio::test]
    async fn expired_token_is_refused() {
        let signer = Arc::new(LocalPemSigner::from_pem(&TEST_KEY_PEM).unwrap());
        let pem = signer.public_key().pem.clone();
        let mut old = claims("iss");
        old.iat -= 3600;
        old.nbf -= 3600;
        old.exp = old.iat + 60;
        let token = TokenMinter::new(signer, "iss").mint(&old).await.unwrap();
        let err = verify_license_token(&token, &pem, "iss").unwrap_err();
        assert!(err.to_string().contains("xpired"), "{err}");
    }
}
