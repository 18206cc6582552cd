//! License tokens as their holders check them: the claims and RS256
//! verification against a published key (PEM or JWK `n`/`e`).
//!
//! Verification uses `jsonwebtoken` with the algorithm pinned to RS256,
//! `iss` required to match, and `exp`/`nbf` checked with
//! [`VERIFY_LEEWAY_SECS`] of leeway.
//!
//! Must not: mint tokens (the service's `TokenMinter` does, with a key this
//! crate never sees) or log tokens.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::KeyError;

/// Allowed clock skew, in seconds, when checking `exp` and `nbf`.
pub const VERIFY_LEEWAY_SECS: u64 = 30;

/// The claims of a license token. Times are seconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// Issuer: the license server (the minter stamps its own).
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
    /// Token id (new for every renewal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Log position of the event that granted or renewed the seat
    /// (`SeatAcquired` or `TokenRenewalDue`): ties the token to the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<i64>,
    /// Server time at signing, milliseconds since the epoch: a client that
    /// sees its clock below the last `srv` it saw knows the clock was set back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv: Option<i64>,
}

/// A license-token verification key, parsed once and used for many
/// tokens (parsing a PEM costs more than checking a signature).
#[derive(Clone)]
pub struct TokenVerifier(DecodingKey);

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenVerifier")
    }
}

impl TokenVerifier {
    /// From an SPKI (or PKCS#1) public key PEM.
    pub fn from_pem(public_key_pem: &str) -> Result<Self, KeyError> {
        DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .map(Self)
            .map_err(KeyError::InvalidToken)
    }

    /// From JWK `n` and `e` (base64url), e.g. taken from the JWKS.
    pub fn from_jwk(n: &str, e: &str) -> Result<Self, KeyError> {
        DecodingKey::from_rsa_components(n, e)
            .map(Self)
            .map_err(KeyError::InvalidToken)
    }

    /// Verifies `token`: RS256 only, `iss` must equal `expected_issuer`,
    /// `exp`/`nbf` checked with [`VERIFY_LEEWAY_SECS`] of leeway.
    pub fn verify(&self, token: &str, expected_issuer: &str) -> Result<LicenseClaims, KeyError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[expected_issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = VERIFY_LEEWAY_SECS;
        jsonwebtoken::decode::<LicenseClaims>(token, &self.0, &validation)
            .map(|data| data.claims)
            .map_err(KeyError::InvalidToken)
    }
}

/// The `kid` of a token's header, read without verifying anything: only to
/// pick the key to verify it with.
pub fn token_key_id(token: &str) -> Result<Option<String>, KeyError> {
    jsonwebtoken::decode_header(token)
        .map(|h| h.kid)
        .map_err(KeyError::InvalidToken)
}

/// Verifies a license token against an SPKI (or PKCS#1) public key PEM
/// (see [`TokenVerifier::verify`]).
pub fn verify_license_token(
    token: &str,
    public_key_pem: &str,
    expected_issuer: &str,
) -> Result<LicenseClaims, KeyError> {
    TokenVerifier::from_pem(public_key_pem)?.verify(token, expected_issuer)
}

/// Like [`verify_license_token`], with the key given as JWK `n` and `e`
/// (base64url), e.g. taken from the JWKS.
pub fn verify_license_token_jwk(
    token: &str,
    n: &str,
    e: &str,
    expected_issuer: &str,
) -> Result<LicenseClaims, KeyError> {
    TokenVerifier::from_jwk(n, e)?.verify(token, expected_issuer)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;
    use crate::test_support::{sign, TEST_KEY_PEM};
    use crate::PublicKey;

    fn claims(issuer: &str) -> LicenseClaims {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
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

    /// A compact RS256 JWS of `claims` signed with the test key.
    fn token(claims: &LicenseClaims) -> String {
        let header = r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#;
        let mut token = URL_SAFE_NO_PAD.encode(header);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()));
        let signature = sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }

    fn public() -> PublicKey {
        PublicKey::from_private_pem("k1", &TEST_KEY_PEM).unwrap()
    }

    /// Replaces one character of a base64url segment with another valid one.
    fn alter(segment: &str) -> String {
        let mut chars: Vec<char> = segment.chars().collect();
        let i = chars.len() / 2;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect()
    }

    #[test]
    fn verifies_with_pem_and_jwk_and_rejects_alterations() {
        let (public, claims) = (public(), claims("https://ledger.test"));
        let token = token(&claims);
        let via_pem = verify_license_token(&token, &public.pem, "https://ledger.test").unwrap();
        assert_eq!(via_pem, claims);
        let via_jwk =
            verify_license_token_jwk(&token, &public.n, &public.e, "https://ledger.test").unwrap();
        assert_eq!(via_jwk, claims);

        let parts: Vec<&str> = token.split('.').collect();
        let bad_payload = format!("{}.{}.{}", parts[0], alter(parts[1]), parts[2]);
        let bad_signature = format!("{}.{}.{}", parts[0], parts[1], alter(parts[2]));
        for bad in [bad_payload, bad_signature] {
            assert!(verify_license_token(&bad, &public.pem, "https://ledger.test").is_err());
        }
        assert!(verify_license_token(&token, &public.pem, "https://other.test").is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let public = public();
        let token = token(&claims("iss"));
        let payload = token.split('.').nth(1).unwrap();
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(verify_license_token(&none, &public.pem, "iss").is_err());
    }

    #[test]
    fn expired_token_is_refused() {
        let mut old = claims("iss");
        old.iat -= 3600;
        old.nbf -= 3600;
        old.exp = old.iat + 60;
        let err = verify_license_token(&token(&old), &public().pem, "iss").unwrap_err();
        assert!(err.to_string().contains("xpired"), "{err}");
    }

    #[test]
    fn a_bad_key_is_an_error_not_a_panic() {
        let token = token(&claims("iss"));
        assert!(verify_license_token(&token, "not a pem", "iss").is_err());
        assert!(verify_license_token_jwk(&token, "!!", "AQAB", "iss").is_err());
    }
}
