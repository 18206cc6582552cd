//! Public signing keys: PEM (SPKI `PUBLIC KEY`), JWK `n`/`e`, and the JWKS document.
//!
//! Owns the small PEM and DER helpers the signer needs (`aws-lc-rs` speaks
//! DER only). It handles public keys; private keys are only PEM-decoded here
//! and never logged or echoed in errors.

use aws_lc_rs::signature::RsaSubjectPublicKey;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use super::SignerError;

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
    pub fn from_pem(kid: impl Into<String>, pem: &str) -> Result<Self, SignerError> {
        let (label, der) = pem_decode(pem)?;
        if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
            return Err(SignerError::InvalidKey("expected a PUBLIC KEY PEM"));
        }
        let key = RsaSubjectPublicKey::from_der(&der)
            .map_err(|_| SignerError::InvalidKey("not an RSA public key"))?;
        Self::from_rsa_public_key(kid, &key)
    }

    /// Builds the published form of an `aws-lc-rs` RSA public key.
    pub fn from_rsa_public_key(
        kid: impl Into<String>,
        key: &RsaSubjectPublicKey,
    ) -> Result<Self, SignerError> {
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

/// The JWKS document served at `/.well-known/jwks.json`.
pub fn jwks_document(keys: &[PublicKey]) -> Value {
    json!({ "keys": keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
}

/// SPKI (X.509 `SubjectPublicKeyInfo`) DER of an RSA public key.
pub(crate) fn spki_der(key: &RsaSubjectPublicKey) -> Result<Vec<u8>, SignerError> {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let der: PublicKeyX509Der<'static> = key
        .as_der()
        .map_err(|_| SignerError::InvalidKey("cannot encode public key"))?;
    Ok(der.as_ref().to_vec())
}

/// Encodes DER as PEM with 64-column lines.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block: `(label, der)`. Errors never quote the input.
pub(crate) fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), SignerError> {
    let bad = || SignerError::InvalidKey("malformed PEM");
    let start = pem.find("-----BEGIN ").ok_or_else(bad)?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(bad)?;
    let label = &rest[..label_end];
    let body = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body.find(&end_marker).ok_or_else(bad)?;
    let b64: String = body[..body_end]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(b64).map_err(|_| bad())?;
    Ok((label.to_owned(), der))
}

/// Splits a PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`
/// into big-endian `n` and `e` without leading zero bytes.
pub(crate) fn rsa_components(pkcs1_der: &[u8]) -> Result<(&[u8], &[u8]), SignerError> {
    let bad = || SignerError::InvalidKey("malformed RSAPublicKey DER");
    let (seq, rest) = der_element(pkcs1_der, 0x30).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let (n, seq) = der_element(seq, 0x02).ok_or_else(bad)?;
    let (e, seq) = der_element(seq, 0x02).ok_or_else(bad)?;
    if !seq.is_empty() {
        return Err(bad());
    }
    Ok((strip_leading_zeros(n), strip_leading_zeros(e)))
}

fn strip_leading_zeros(int: &[u8]) -> &[u8] {
    let first = int.iter().position(|&b| b != 0).unwrap_or(int.len());
    &int[first..]
}

/// Reads one DER element with the expected tag: `(contents, remaining input)`.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[count..];
        len
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};

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
}
