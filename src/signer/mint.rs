//! License tokens: minting (RS256 via a [`SigningBackend`]).
//!
//! Minting builds the JWS by hand (header, payload, signature, all base64url
//! without padding) because the signature comes from a backend that may be
//! remote (Cloud KMS). The claims and verification live in `keys`
//! ([`LicenseClaims`], `keys::verify_license_token`). Tokens are never logged.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use keys::LicenseClaims;
use serde::Serialize;

use super::{SignerError, SigningBackend};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::local::tests::{claims, TEST_KEY_PEM};
    use crate::signer::LocalPemSigner;
    use keys::verify_license_token;

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
}
