//! One published RSA public key: SPKI PEM and JWK `n`/`e` under a key id.
//!
//! A private PEM is only ever decoded here to take its public half (or to
//! hand the key pair to the service's local signer); it is never logged,
//! echoed in errors, or used to sign by this crate.

use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RsaSubjectPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::encoding::{pem_decode, pem_encode, rsa_components, spki_der};
use crate::KeyError;

/// One published RSA public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    /// The key id (JWT `kid`).
    pub kid: String,
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
    /// JWK modulus, base64url without padding.
    pub n: String,
    /// JWK public exponent, base64url without padding.
    pub e: String,
}

impl PublicKey {
    /// Parses an SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM.
    /// The stored `pem` is always the SPKI form.
    pub fn from_pem(kid: impl Into<String>, pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_decode(pem)?;
        if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
            return Err(KeyError::InvalidKey("expected a PUBLIC KEY PEM"));
        }
        let key = RsaSubjectPublicKey::from_der(&der)
            .map_err(|_| KeyError::InvalidKey("not an RSA public key"))?;
        Self::from_rsa_public_key(kid, &key)
    }

    /// The public half of a PKCS#8 (`PRIVATE KEY`) or PKCS#1
    /// (`RSA PRIVATE KEY`) PEM.
    pub fn from_private_pem(kid: impl Into<String>, pem: &str) -> Result<Self, KeyError> {
        let key = private_key_from_pem(pem)?;
        Self::from_rsa_public_key(kid, key.public_key())
    }

    /// Builds the published form of an `aws-lc-rs` RSA public key.
    pub fn from_rsa_public_key(
        kid: impl Into<String>,
        key: &RsaSubjectPublicKey,
    ) -> Result<Self, KeyError> {
        let (n, e) = rsa_components(key.as_ref())?;
        Ok(Self {
            kid: kid.into(),
            pem: pem_encode("PUBLIC KEY", &spki_der(key)?),
            n: URL_SAFE_NO_PAD.encode(n),
            e: URL_SAFE_NO_PAD.encode(e),
        })
    }

    /// The JWK of this key (`kty`, `use`, `alg`, `kid`, `n`, `e`).
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
        })
    }
}

/// Parses a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM into an
/// `aws-lc-rs` key pair. Errors never quote the key.
pub fn private_key_from_pem(pem: &str) -> Result<RsaKeyPair, KeyError> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
        _ => return Err(KeyError::InvalidKey("expected a PRIVATE KEY PEM")),
    }
    .map_err(|_| KeyError::InvalidKey("not a valid RSA private key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks_document;
    use crate::test_support::TEST_KEY_PEM;

    #[test]
    fn pem_round_trip_and_components_match_aws_lc() {
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = PublicKey::from_rsa_public_key("k1", key.public_key()).unwrap();
        assert!(public.pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(public.e, "AQAB");
        assert_eq!(URL_SAFE_NO_PAD.decode(&public.n).unwrap().len(), 256);

        let reparsed = PublicKey::from_pem("k1", &public.pem).unwrap();
        assert_eq!(reparsed, public);

        let jwks = jwks_document(std::slice::from_ref(&public));
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert_eq!(jwks["keys"][0]["kid"], "k1");
        assert_eq!(jwks["keys"][0]["n"], public.n.as_str());
    }

    #[test]
    fn malformed_input_is_rejected_without_echo() {
        let err = PublicKey::from_pem(
            "k",
            "-----BEGIN PUBLIC KEY-----\nsecret!!\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("secret"));
        assert!(rsa_components(&[0x30, 0x03, 0x02, 0x01]).is_err());
        assert!(pem_decode("no pem here").is_err());
    }

    #[test]
    fn a_private_pem_yields_its_public_half_and_is_never_taken_for_a_public_one() {
        let public = PublicKey::from_private_pem("k", &TEST_KEY_PEM).unwrap();
        assert_eq!(PublicKey::from_pem("k", &public.pem).unwrap(), public);
        let err = PublicKey::from_pem("k", &TEST_KEY_PEM).unwrap_err();
        assert_eq!(err.to_string(), "invalid key: expected a PUBLIC KEY PEM");
        let err = PublicKey::from_private_pem("k", &public.pem).unwrap_err();
        assert_eq!(err.to_string(), "invalid key: expected a PRIVATE KEY PEM");
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = private_key_from_pem(garbage).unwrap_err();
        assert_eq!(err.to_string(), "invalid key: not a valid RSA private key");
    }
}
