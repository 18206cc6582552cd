//! Which bucket a request counts against (see the parent module's keying
//! policy): the caller verified by the authentication layer, else the
//! client address: the TCP peer, or, behind proxies, the entry of
//! `X-Forwarded-For` that the last trusted proxy appended. Nothing a client
//! merely claims picks a bucket (entries to the left of that one are the
//! client's own and are ignored).

use crate::auth::Caller;
use axum::extract::{ConnectInfo, Request};
use std::net::SocketAddr;

/// The rate-limit key of a request: `user:<tenant>/<sub>` for a verified
/// caller, `ip:<address>` for everything else (no token, a bad one), the
/// address being the `hops`-th entry from the right of `X-Forwarded-For`
/// when `hops > 0` (the TCP peer when the header has fewer entries).
pub fn request_key(request: &Request, hops: usize) -> String {
    if let Some(caller) = request.extensions().get::<Caller>() {
        return format!("user:{}/{}", caller.tenant_id, caller.user_id);
    }
    if hops > 0 {
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if let Some(entry) = forwarded.len().checked_sub(hops).map(|i| forwarded[i]) {
            if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
                return format!("ip:{ip}");
            }
        }
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
        assert_eq!(request_key(&request, 0), "anonymous");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
        assert_eq!(request_key(&request, 0), "ip:10.0.0.7");
        request.extensions_mut().insert(Caller {
            user_id: "carol".into(),
            tenant_id: "t".into(),
            is_admin: false,
            is_vendor: false,
            groups: Vec::new(),
        });
        assert_eq!(request_key(&request, 0), "user:t/carol");
    }

    #[test]
    fn behind_proxies_the_trusted_entry_of_x_forwarded_for_is_the_client() {
        let request = |xff: &[&str]| {
            let mut b = Request::get("/");
            for v in xff {
                b = b.header("x-forwarded-for", *v);
            }
            let mut r = b.body(Body::empty()).unwrap();
            r.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 7], 4000))));
            r
        };
        // A Google Cloud load balancer appends "<client>, <its own address>".
        let lb = request(&["203.0.113.9, 34.1.2.3"]);
        assert_eq!(request_key(&lb, 2), "ip:203.0.113.9");
        // What the client writes itself sits further left: ignored.
        let spoofed = request(&["1.1.1.1, 2.2.2.2", "203.0.113.9, 34.1.2.3"]);
        assert_eq!(request_key(&spoofed, 2), "ip:203.0.113.9");
        // Too few entries or garbage: the TCP peer.
        assert_eq!(request_key(&request(&["34.1.2.3"]), 2), "ip:10.0.0.7");
        assert_eq!(request_key(&request(&["x, y"]), 2), "ip:10.0.0.7");
        // Not behind proxies: the header is the client's and is ignored.
        assert_eq!(request_key(&lb, 0), "ip:10.0.0.7");
    }
}
