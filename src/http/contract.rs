//! The statuses every route can answer besides its own, added to the
//! OpenAPI document in one place so that the contract cannot drift from
//! the layers that produce them (schemathesis checks it in CI:
//! `scripts/contract.sh`).
//!
//! | status | produced by | added to |
//! |---|---|---|
//! | 400 | the JSON extractor (malformed JSON) | operations with a body |
//! | 401 | the `Caller` extractors (missing, bad or expired token) | operations with `security` |
//! | 403 | `AdminCaller` (no license-admin role), `VendorCaller` (no license-vendor role) | tags `admin`, `vendor` |
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
                let role = operation
                    .tags
                    .as_ref()
                    .and_then(|t| t.iter().find(|t| *t == "admin" || *t == "vendor"))
                    .cloned();
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
                match role.as_deref() {
                    Some("admin") => {
                        add(operation, "403", "The token lacks the license-admin role")
                    }
                    Some(_) => add(operation, "403", "The token lacks the license-vendor role"),
                    None => {}
                }
            }
        }
    }
}

/// Whitespace that `str::trim` removes (Unicode `White_Space`), as a regex
/// class for the patterns of fields the service trims.
pub const TRIMMED: &str =
    r"[\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// Serde helpers for JSON integers (in `events`, which reads the policy
/// object with them too).
pub use events::integral;
