//! Trusted public keys for checkpoint signatures: a PEM file, a JWKS
//! document (file or URL, as served at `/.well-known/jwks.json`).
//!
//! Only public keys are needed; a private PEM is accepted for convenience
//! (its public half is used, the private key is never printed).

use anyhow::{bail, Context as _};
use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use licensed::signer::{LocalPemSigner, PublicKey};
use serde_json::Value;
use std::path::Path;

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

    /// One PEM key (SPKI/PKCS#1 public, or a private key), trusted for every kid.
    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        let public = match PublicKey::from_pem("pem", pem) {
            Ok(key) => key,
            Err(_) => LocalPemSigner::from_pem(pem)
                .map(|signer| signer.public_key().clone())
                .map_err(|e| anyhow::anyhow!("not an RSA public or private key PEM: {e}"))?,
        };
        let mut keys = Self::from_jwk_parts(&public.kid, &public.n, &public.e)?;
        keys.any_kid = true;
        Ok(keys)
    }

    /// Every RSA key of a JWKS document (`{"keys": [{"kid", "n", "e", ...}]}`).
    pub fn from_jwks(doc: &Value) -> anyhow::Result<Self> {
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .context("JWKS has no \"keys\" array")?;
        let mut out = Self::default();
        for key in list {
            if key.get("kty").and_then(Value::as_str) != Some("RSA") {
                continue;
            }
            let field = |name: &str| {
                key.get(name)
                    .and_then(Value::as_str)
                    .with_context(|| format!("JWK without {name}"))
            };
            out.keys
                .extend(Self::from_jwk_parts(field("kid")?, field("n")?, field("e")?)?.keys);
        }
        if out.keys.is_empty() {
            bail!("JWKS holds no RSA key");
        }
        Ok(out)
    }

    fn from_jwk_parts(kid: &str, n: &str, e: &str) -> anyhow::Result<Self> {
        let n = URL_SAFE_NO_PAD
            .decode(n)
            .context("JWK n is not base64url")?;
        let e = URL_SAFE_NO_PAD
            .decode(e)
            .context("JWK e is not base64url")?;
        Ok(Self {
            keys: vec![Rsa {
                kid: kid.to_owned(),
                n,
                e,
            }],
            any_kid: false,
        })
    }

    /// Reads a PEM (`--key`) or JWKS (`--keys`) file.
    pub fn from_file(path: &Path, jwks: bool) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        if jwks {
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            Self::from_jwks(&doc)
        } else {
            Self::from_pem(&text).with_context(|| format!("key file {}", path.display()))
        }
    }

    /// Fetches a JWKS document (e.g. `https://host/.well-known/jwks.json`).
    pub async fn from_url(url: &str) -> anyhow::Result<Self> {
        let doc: Value = reqwest::get(url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("fetching JWKS from {url}"))?
            .json()
            .await
            .with_context(|| format!("JWKS at {url} is not JSON"))?;
        Self::from_jwks(&doc)
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
