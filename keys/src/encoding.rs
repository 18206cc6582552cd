//! PEM armour and the little DER `aws-lc-rs` does not expose: SPKI encoding
//! of an RSA public key and the `n`/`e` of a PKCS#1 `RSAPublicKey`.
//!
//! Must not: log or echo its input (it may be a private key); errors name
//! what is wrong, never the bytes.

use aws_lc_rs::signature::RsaSubjectPublicKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::KeyError;

/// SPKI (X.509 `SubjectPublicKeyInfo`) DER of an RSA public key.
pub fn spki_der(key: &RsaSubjectPublicKey) -> Result<Vec<u8>, KeyError> {
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    let der: PublicKeyX509Der<'static> = key
        .as_der()
        .map_err(|_| KeyError::InvalidKey("cannot encode public key"))?;
    Ok(der.as_ref().to_vec())
}

/// Encodes DER as PEM under `label` (e.g. `PUBLIC KEY`) with 64-column lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
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
pub fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let bad = || KeyError::InvalidKey("malformed PEM");
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
pub(crate) fn rsa_components(pkcs1_der: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let bad = || KeyError::InvalidKey("malformed RSAPublicKey DER");
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

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_encode("TEST", &der);
        assert!(pem.lines().all(|line| line.len() <= 64));
        assert_eq!(pem_decode(&pem).unwrap(), ("TEST".to_owned(), der));
    }
}
