//! Which bucket a request counts against (see the parent module's keying
//! policy): a verified caller, else the bearer token's unverified `sub` and
//! tenant, else the peer IP.

use crate::auth::{bearer_token, Caller};
use axum::extract::{ConnectInfo, Request};
use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::net::SocketAddr;

/// Tokens longer than this are not peeked at.
const MAX_PEEK_BYTES: usize = 8 * 1024;

/// The rate-limit key of a request (see the module doc for the order).
pub fn request_key(request: &Request) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return user_key(&caller.tenant_id, &caller.user_id);
    }
    if let Some(key) = peek_user(request.headers()) {
        return key;
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "anonymous".to_owned(),
    }
}

fn user_key(tenant: &str, sub: &str) -> String {
    format!("user:{tenant}/{sub}")
}

/// `sub` + tenant from the bearer token's payload, unverified. Only values
/// that pass the real format rules are used, which bounds key length.
fn peek_user(headers: &HeaderMap) -> Option<String> {
    let token = bearer_token(headers)?;
    if token.len() > MAX_PEEK_BYTES {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: crate::auth::claims::UserClaims = serde_json::from_slice(&bytes).ok()?;
    Some(user_key(claims.tenant().ok()?, claims.subject().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::header;

    #[test]
    fn keys_prefer_a_verified_caller_then_the_peeked_token_then_the_ip() {
        let mut request = Request::get("/")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", super::super::tests::token("bob", "acme")),
            )
            .body(Body::empty())
            .unwrap();
        assert_eq!(request_key(&request), "user:acme/bob");
        request.extensions_mut().insert(Caller {
            user_id: "carol".into(),
            tenant_id: "t".into(),
            is_admin: false,
        });
        assert_eq!(request_key(&request), "user:t/carol");
        let bad = super::super::tests::token("a\u{1}", "acme");
        let request = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {bad}"));
        assert_eq!(
            request_key(&request.body(Body::empty()).unwrap()),
            "anonymous"
        );
    }
}
