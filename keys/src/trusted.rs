//! The keys an auditor trusts, and RS256 signature checks with them.
//!
//! Keys come from one PEM (public, or a private key whose public half is
//! used) or from a JWKS document. A single PEM is trusted for every `kid`
//! (the auditor was handed one key); JWKS keys only for their own `kid`.
//!
//! Must not: read files or fetch URLs (the caller hands over the text), or
//! say what a failed check means for the audit.

use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::{jwks_keys, pem_decode, KeyError, PublicKey};

/// The `kid` given to a key read from a lone PEM.
const PEM_KID: &str = "pem";

/// The outcome of checking one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The signature verifies with the key of that kid.
    Valid,
    /// It does not verify (or is not valid base64url).
    Invalid,
    /// No trusted key has this kid.
    UnknownKey,
    /// No keys were given: signatures are not checked.
    NoKeys,
}

/// An RSA public key: kid and big-endian modulus and exponent.
#[derive(Debug, Clone)]
struct Rsa {
    kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

/// The keys an auditor trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<Rsa>,
    /// A single PEM key given on the command line is trusted for any kid.
    any_kid: bool,
}

impl TrustedKeys {
    /// No keys (signatures are reported as unchecked).
    pub fn none() -> Self {
        Self::default()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids, for messages.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// One PEM key (SPKI/PKCS#1 public, or a PKCS#8/PKCS#1 private key),
    /// trusted for every kid.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, _) = pem_decode(pem)?;
        let public = match label.as_str() {
            "PUBLIC KEY" | "RSA PUBLIC KEY" => PublicKey::from_pem(PEM_KID, pem)?,
            "PRIVATE KEY" | "RSA PRIVATE KEY" => PublicKey::from_private_pem(PEM_KID, pem)?,
            _ => {
                return Err(KeyError::InvalidKey(
                    "expected an RSA public or private key PEM",
                ))
            }
        };
        Ok(Self {
            keys: vec![Rsa::from_jwk_parts(&public.kid, &public.n, &public.e)?],
            any_kid: true,
        })
    }

    /// Every RS256 signing key of a JWKS document (`{"keys": [{"kid", "n", "e", ...}]}`).
    /// A document without any is an error: the caller meant to trust something.
    pub fn from_jwks(doc: &Value) -> Result<Self, KeyError> {
        let keys = jwks_keys(doc)?
            .iter()
            .map(|jwk| Rsa::from_jwk_parts(&jwk.kid, &jwk.n, &jwk.e))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::InvalidJwks("holds no RS256 signing key".into()));
        }
        Ok(Self {
            keys,
            any_kid: false,
        })
    }

    /// Adds the keys of `other`.
    pub fn merge(&mut self, other: Self) {
        self.any_kid |= other.any_kid && self.keys.is_empty();
        self.keys.extend(other.keys);
    }

    /// Checks an RS256 signature (base64url, no padding) over `message`.
    pub fn verify(&self, kid: &str, message: &[u8], signature_b64: &str) -> SignatureCheck {
        if self.keys.is_empty() {
            return SignatureCheck::NoKeys;
        }
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature_b64) else {
            return SignatureCheck::Invalid;
        };
        let candidates: Vec<&Rsa> = match self
            .keys
            .iter()
            .filter(|k| k.kid == kid)
            .collect::<Vec<_>>()
        {
            found if !found.is_empty() => found,
            _ if self.any_kid => self.keys.iter().collect(),
            _ => return SignatureCheck::UnknownKey,
        };
        let ok = candidates.iter().any(|key| {
            RsaPublicKeyComponents {
                n: key.n.as_slice(),
                e: key.e.as_slice(),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, &signature)
            .is_ok()
        });
        if ok {
            SignatureCheck::Valid
        } else {
            SignatureCheck::Invalid
        }
    }
}

impl Rsa {
    fn from_jwk_parts(kid: &str, n: &str, e: &str) -> Result<Self, KeyError> {
        let decode = |b64: &str, what| URL_SAFE_NO_PAD.decode(b64).map_err(|_| what);
        Ok(Self {
            kid: kid.to_owned(),
            n: decode(n, KeyError::InvalidKey("JWK n is not base64url"))?,
            e: decode(e, KeyError::InvalidKey("JWK e is not base64url"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::jwks_document;
    use crate::test_support::{sign, TEST_KEY_PEM};

    fn signature(message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(sign(message))
    }

    fn public(kid: &str) -> PublicKey {
        PublicKey::from_private_pem(kid, &TEST_KEY_PEM).unwrap()
    }

    #[test]
    fn a_pem_key_is_trusted_for_any_kid_public_or_private() {
        let sig = signature(b"head");
        for pem in [public("x").pem, TEST_KEY_PEM.clone()] {
            let keys = TrustedKeys::from_pem(&pem).unwrap();
            assert_eq!(keys.kids(), ["pem"]);
            assert_eq!(keys.verify("any", b"head", &sig), SignatureCheck::Valid);
            assert_eq!(keys.verify("any", b"tail", &sig), SignatureCheck::Invalid);
            assert_eq!(keys.verify("any", b"head", "*"), SignatureCheck::Invalid);
        }
        let err =
            TrustedKeys::from_pem("-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid key: expected an RSA public or private key PEM"
        );
    }

    #[test]
    fn jwks_keys_are_trusted_for_their_own_kid_only() {
        let keys = TrustedKeys::from_jwks(&jwks_document(&[public("k1")])).unwrap();
        assert_eq!(keys.kids(), ["k1"]);
        let sig = signature(b"head");
        assert_eq!(keys.verify("k1", b"head", &sig), SignatureCheck::Valid);
        assert_eq!(keys.verify("k2", b"head", &sig), SignatureCheck::UnknownKey);
    }

    #[test]
    fn no_keys_means_unchecked_and_an_empty_jwks_is_an_error() {
        let keys = TrustedKeys::none();
        assert!(keys.is_empty());
        assert_eq!(keys.verify("k1", b"head", "AA"), SignatureCheck::NoKeys);
        assert!(TrustedKeys::from_jwks(&json!({"keys": []})).is_err());
        assert!(TrustedKeys::from_jwks(&json!({"nope": []})).is_err());
        let bad = json!({"keys": [{"kty": "RSA", "kid": "k", "n": "!!", "e": "AQAB"}]});
        let err = TrustedKeys::from_jwks(&bad).unwrap_err();
        assert_eq!(err.to_string(), "invalid key: JWK n is not base64url");
    }

    #[test]
    fn a_pem_merged_first_still_covers_every_kid() {
        let sig = signature(b"head");
        let mut keys = TrustedKeys::none();
        keys.merge(TrustedKeys::from_pem(&public("x").pem).unwrap());
        keys.merge(TrustedKeys::from_jwks(&jwks_document(&[public("k1")])).unwrap());
        assert_eq!(keys.kids(), ["pem", "k1"]);
        assert_eq!(keys.verify("other", b"head", &sig), SignatureCheck::Valid);
    }
}
