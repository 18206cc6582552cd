//! Which bucket a request counts against (see the parent module's keying
//! policy): the caller verified by the authentication layer, else the peer
//! address. Nothing a client merely claims picks a bucket.

use crate::auth::Caller;
use axum::extract::{ConnectInfo, Request};
use std::net::SocketAddr;

/// The rate-limit key of a request: `user:<tenant>/<sub>` for a verified
/// caller, `ip:<address>` for everything else (no token, a bad one).
pub fn request_key(request: &Request) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return format!("user:{}/{}", caller.tenant_id, caller.user_id);
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "anonymous".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::header;

    #[test]
    fn keys_are_the_verified_caller_else_the_peer_address() {
        // An unverified token names nobody: the request is keyed by address.
        let mut request = Request::get("/")
            .header(header::AUTHORIZATION, "Bearer x.eyJzdWIiOiJib2IifQ.sig")
            .body(Body::empty())
            .unwrap();
        assert_eq!(request_key(&request), "anonymous");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert_eq!(request_key(&request), "ip:10.0.0.7");
        request.extensions_mut().insert(Caller {
            user_id: "carol".into(),
            tenant_id: "t".into(),
            is_admin: false,
        });
        assert_eq!(request_key(&request), "user:t/carol");
    }
}
