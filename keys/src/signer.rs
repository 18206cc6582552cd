//! [`RsaSigner`]: an RSA private key held in memory that signs RS256
//! (RSASSA-PKCS1-v1_5, SHA-256). It backs the service's local (development)
//! signing backend and the audit tool's tests; production keys live in Cloud
//! KMS and never pass through here.

use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};

use crate::{spki_der, KeyError, PublicKey};

/// An in-memory RSA key (2048 bits or more) and its public half. Its key id
/// is `local-` and the first 16 hex digits of the SPKI's SHA-256.
pub struct RsaSigner {
    key: RsaKeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigner")
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl RsaSigner {
    /// Wraps a key pair (refused below 2048 bits).
    pub fn from_key_pair(key: RsaKeyPair) -> Result<Self, KeyError> {
        if key.public_modulus_len() < 256 {
            return Err(KeyError::InvalidKey("RSA keys below 2048 bits are refused"));
        }
        let spki = spki_der(key.public_key())?;
        let hash = digest(&SHA256, &spki);
        let hex: String = hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let public = PublicKey::from_rsa_public_key(format!("local-{hex}"), key.public_key())?;
        Ok(Self { key, public })
    }

    /// A fresh key of `size`.
    pub fn generate(size: KeySize) -> Result<Self, KeyError> {
        let key = RsaKeyPair::generate(size)
            .map_err(|_| KeyError::InvalidKey("key generation failed"))?;
        Self::from_key_pair(key)
    }

    /// The key pair (to encode it).
    pub fn key_pair(&self) -> &RsaKeyPair {
        &self.key
    }

    /// The public key (kid, SPKI PEM, JWK components).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `message` (RS256) on the calling thread (~5 ms for RSA-4096).
    pub fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| KeyError::InvalidKey("signing failed"))?;
        Ok(signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SignatureCheck, TrustedKeys};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn signatures_verify_with_the_public_half() {
        let signer = RsaSigner::generate(KeySize::Rsa2048).unwrap();
        assert!(signer.public_key().kid.starts_with("local-"));
        let signature = URL_SAFE_NO_PAD.encode(signer.sign_rs256(b"head").unwrap());
        let trusted = TrustedKeys::from_pem(&signer.public_key().pem).unwrap();
        let kid = &signer.public_key().kid;
        assert_eq!(
            trusted.verify(kid, b"head", &signature),
            SignatureCheck::Valid
        );
        assert_eq!(
            trusted.verify(kid, b"other", &signature),
            SignatureCheck::Invalid
        );
    }
}
