//! JWKS documents (RFC 7517 key sets): writing ours, reading anyone's.
//!
//! Reading keeps only what can verify an RS256 signature: `kty` `RSA`, `alg`
//! `RS256` or absent, `use` `sig` or absent, and `kid`, `n`, `e` present.
//! Every other entry (EC, symmetric, encryption keys, other algorithms,
//! entries of the wrong shape) is skipped, not an error: a key set may carry
//! keys meant for others.
//!
//! Must not: fetch documents (callers do, with their own limits) or decide
//! what an empty key set means.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{KeyError, PublicKey};

/// The JWKS document of `keys`, as served at `/.well-known/jwks.json`.
pub fn jwks_document(keys: &[PublicKey]) -> Value {
    json!({ "keys": keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
}

/// One RS256 signing key read from a JWKS. `n` and `e` are as published
/// (base64url, unchecked): decoding them is the verifier's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaJwk {
    /// The key id (`kid`).
    pub kid: String,
    /// The modulus (`n`), base64url.
    pub n: String,
    /// The public exponent (`e`), base64url.
    pub e: String,
}

/// The fields of a JWK this module looks at.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// Parses a JWKS document given as JSON text; see [`jwks_keys`].
pub fn parse_jwks(json: &[u8]) -> Result<Vec<RsaJwk>, KeyError> {
    let doc: Value = serde_json::from_slice(json)
        .map_err(|e| KeyError::InvalidJwks(format!("not JSON: {e}")))?;
    jwks_keys(&doc)
}

/// The RS256 signing keys of a JWKS document, in document order. Fails only
/// when the document has no `keys` array; the result may be empty.
pub fn jwks_keys(doc: &Value) -> Result<Vec<RsaJwk>, KeyError> {
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| KeyError::InvalidJwks("no \"keys\" array".into()))?;
    Ok(list.iter().filter_map(rs256_key).collect())
}

fn rs256_key(raw: &Value) -> Option<RsaJwk> {
    let jwk = RawJwk::deserialize(raw).ok()?;
    let usable = jwk.kty == "RSA"
        && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
        && jwk.usage.as_deref().is_none_or(|u| u == "sig");
    match (jwk.kid, jwk.n, jwk.e, usable) {
        (Some(kid), Some(n), Some(e), true) => Some(RsaJwk { kid, n, e }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rs256_rsa_signing_keys_are_kept() {
        let doc = json!({"keys": [
            {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "c", "alg": "RS512", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "d", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "oct", "kid": "e", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "f", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": 7, "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "g", "e": "AQAB"},
            "not an object"
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["a", "b"]);
        assert_eq!(
            keys[1],
            RsaJwk {
                kid: "b".into(),
                n: "sXch".into(),
                e: "AQAB".into()
            }
        );
    }

    #[test]
    fn a_document_without_a_keys_array_is_an_error_an_empty_one_is_not() {
        assert!(parse_jwks(b"not json").is_err());
        let err = jwks_keys(&json!({"keys": {}})).unwrap_err();
        assert_eq!(err.to_string(), "invalid JWKS document: no \"keys\" array");
        assert_eq!(jwks_keys(&json!({"keys": []})).unwrap(), []);
    }

    #[test]
    fn our_document_reads_back() {
        let key =
            crate::PublicKey::from_private_pem("k1", &crate::test_support::TEST_KEY_PEM).unwrap();
        let keys = jwks_keys(&jwks_document(std::slice::from_ref(&key))).unwrap();
        assert_eq!(
            keys,
            [RsaJwk {
                kid: key.kid,
                n: key.n,
                e: key.e
            }]
        );
    }
}
