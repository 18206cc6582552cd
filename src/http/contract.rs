//! The statuses every route can answer besides its own, added to the
//! OpenAPI document in one place so that the contract cannot drift from
//! the layers that produce them (schemathesis checks it in CI:
//! `scripts/contract.sh`).
//!
//! | status | produced by | added to |
//! |---|---|---|
//! | 400 | the JSON extractor (malformed JSON) | operations with a body |
//! | 401 | the `Caller` extractors (missing, bad or expired token) | operations with `security` |
//! | 403 | `AdminCaller` (no license-admin role) | tag `admin` |
//! | 413 | the body limit (`MAX_BODY_BYTES`) | operations with a body |
//! | 415 | the JSON extractor (not `application/json`) | operations with a body |
//! | 422 | the JSON extractor and field validation | operations with a body |
//! | 429 | the rate limiter (per identity, per address) | operations with `security` |
//! | 503 | the log's database does not answer | operations with `security` |

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, Ref, RefOr, ResponseBuilder};

/// The modifier (see the module docs).
pub struct CommonResponses;

const PROBLEM: &str = "application/problem+json";

fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| problem(description));
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let admin = operation
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == "admin"));
                if operation.request_body.is_some() {
                    add(operation, "400", "Malformed JSON");
                    add(operation, "413", "Body larger than the limit");
                    add(operation, "415", "Body is not application/json");
                    add(operation, "422", "A field is missing or invalid");
                }
                if secured {
                    add(
                        operation,
                        "401",
                        "Missing, malformed or expired bearer token",
                    );
                    add(
                        operation,
                        "429",
                        "Rate limited; retry after Retry-After seconds",
                    );
                    add(
                        operation,
                        "503",
                        "The license log is unavailable; retry shortly",
                    );
                }
                if admin {
                    add(operation, "403", "The token lacks the license-admin role");
                }
            }
        }
    }
}

/// Whitespace that `str::trim` removes (Unicode `White_Space`), as a regex
/// class for the patterns of fields the service trims.
pub const TRIMMED: &str =
    r"[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// Serde helpers for JSON integers: JSON Schema's `integer` is any number
/// with a zero fractional part (`315.0` is one), which serde's `u32` alone
/// refuses.
pub mod integral {
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
}
