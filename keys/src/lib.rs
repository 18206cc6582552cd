//! Public keys and what can be checked with them, shared by the service
//! (`licensed`) and the auditor (`replay`).
//!
//! Owns:
//! - [`PublicKey`]: a published RSA key (kid, SPKI PEM, JWK `n`/`e`), read
//!   from a public PEM or from the public half of a private PEM;
//! - JWKS documents: [`jwks_document`] writes one, [`parse_jwks`] and
//!   [`jwks_keys`] read the RS256 signing keys out of one;
//! - RS256 license-token verification ([`verify_license_token`],
//!   [`verify_license_token_jwk`]) and the [`LicenseClaims`] it yields;
//! - [`TrustedKeys`]: the keys an auditor trusts, and RS256 signature checks
//!   over arbitrary messages (checkpoint heads);
//! - the PEM/DER helpers `aws-lc-rs` lacks ([`pem_encode`], [`pem_decode`],
//!   [`spki_der`]);
//! - [`RsaSigner`]: an in-memory RSA key that signs RS256, behind the
//!   service's local development backend and the audit tool's tests.
//!
//! Policy:
//! - RSA work goes through `aws-lc-rs` or `jsonwebtoken` with its `aws_lc_rs`
//!   backend; never the `rsa` crate (RUSTSEC-2023-0071).
//! - Verification pins the algorithm to RS256.
//! - Errors never quote key material or tokens.
//!
//! Must not: hold a production key (those stay in Cloud KMS), mint tokens
//! (the service's `TokenMinter` does), read files, talk to the network (callers fetch a
//! JWKS or read a key file and hand over the text), or depend on the service.

mod encoding;
mod jwks;
mod public;
mod signer;
mod token;
mod trusted;

pub use encoding::{pem_decode, pem_encode, spki_der};
pub use jwks::{jwks_document, jwks_keys, parse_jwks, RsaJwk};
pub use public::{private_key_from_pem, PublicKey};
pub use signer::RsaSigner;
pub use token::{
    token_key_id, verify_license_token, verify_license_token_jwk, LicenseClaims, TokenVerifier,
    VERIFY_LEEWAY_SECS,
};
pub use trusted::{SignatureCheck, TrustedKeys};

/// Everything that can go wrong while reading keys or verifying with them.
///
/// Messages say what was wrong, never the key material or the token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// PEM, DER or JWK components could not be parsed, or are not a usable RSA key.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A JWKS document is not JSON, has no `keys` array, or holds no usable key.
    #[error("invalid JWKS document: {0}")]
    InvalidJwks(String),
    /// A license token failed verification (signature, algorithm, `iss`,
    /// `exp`/`nbf`, or a missing claim).
    #[error("invalid license token: {0}")]
    InvalidToken(#[source] jsonwebtoken::errors::Error),
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::LazyLock;

    use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::RsaKeyPair;

    /// One RSA-2048 PKCS#8 PEM key per test process.
    pub(crate) static TEST_KEY_PEM: LazyLock<String> = LazyLock::new(|| {
        let key = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'static> = key.as_der().unwrap();
        crate::pem_encode("PRIVATE KEY", der.as_ref())
    });

    /// RSASSA-PKCS1-v1_5 SHA-256 signature of `message` with [`TEST_KEY_PEM`].
    pub(crate) fn sign(message: &[u8]) -> Vec<u8> {
        use aws_lc_rs::signature::RSA_PKCS1_SHA256;
        let key = crate::private_key_from_pem(&TEST_KEY_PEM).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .unwrap();
        signature
    }
}
