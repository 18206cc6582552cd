//! Serde helpers for JSON integers: JSON Schema's `integer` is any number
//! with a zero fractional part (`315.0` is one), which serde's `u32` alone
//! refuses. The HTTP bodies and the policy object read their integers with
//! these.

use serde::{Deserialize, Deserializer};

fn to_u32<E: serde::de::Error>(n: serde_json::Number) -> Result<u32, E> {
    if let Some(u) = n.as_u64() {
        return u32::try_from(u).map_err(|_| E::custom(format!("{u} is out of range")));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Ok(f as u32)
        }
        _ => Err(E::custom(format!(
            "expected a non-negative integer, got {n}"
        ))),
    }
}

/// A `u32` from any integral JSON number.
pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    to_u32(serde_json::Number::deserialize(d)?)
}

/// An optional `u32` from any integral JSON number (or `null`).
pub fn option_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?
        .map(to_u32)
        .transpose()
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize, Debug)]
    struct Body {
        #[serde(deserialize_with = "super::u32")]
        n: u32,
        #[serde(default, deserialize_with = "super::option_u32")]
        m: Option<u32>,
    }

    #[test]
    fn integral_numbers_are_integers() {
        let parse = |s: &str| serde_json::from_str::<Body>(s).map(|b| (b.n, b.m));
        assert_eq!(parse(r#"{"n": 315.0, "m": 2}"#).unwrap(), (315, Some(2)));
        assert_eq!(parse(r#"{"n": 7, "m": null}"#).unwrap(), (7, None));
        assert_eq!(parse(r#"{"n": 7}"#).unwrap(), (7, None));
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": "1"}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
