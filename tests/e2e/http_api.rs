//! The HTTP contract: auth failures, tenant and user isolation, bad input,
//! problem+json, the documents the service publishes.

use crate::harness::{command_events, count_events, issuer, token, System};
use licensed::auth::dev_issuer::{DEV_AUDIENCE, DEV_ISSUER};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_and_users_sessions_are_not_found() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 5, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = sys.app.acquire(&alice, &license, "alice-laptop").await;
    let session = a.body["session_id"].as_str().unwrap().to_owned();

    let bob = token("bob", "acme", false).await; // same tenant, other user
    let eve = token("alice", "globex", false).await; // same sub, other tenant
    for who in [&bob, &eve] {
        for (method, path) in [
            (Method::PUT, format!("/api/v1/licenses/heartbeat/{session}")),
            (
                Method::DELETE,
                format!("/api/v1/licenses/release/{session}"),
            ),
            (
                Method::GET,
                format!("/api/v1/licenses/sessions/{session}/token"),
            ),
        ] {
            let r = sys.app.call(method.clone(), &path, Some(who), None).await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{method} {path}: {}",
                r.body
            );
            assert_eq!(r.headers["content-type"], "application/problem+json");
        }
    }
    // Another tenant cannot see or use the license either.
    assert_eq!(
        sys.app
            .call(
                Method::GET,
                &format!("/api/v1/licenses/{license}"),
                Some(&eve),
                None
            )
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        sys.app.acquire(&eve, &license, "eve-pc").await.status,
        StatusCode::NOT_FOUND
    );
    // An admin of the tenant may release anyone's session of the tenant.
    let admin = token("boss", "acme", true).await;
    let r = sys.app.release(&admin, &session).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Non-admins cannot administer.
    let r = sys
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/admin/licenses/{license}/seats"),
            Some(&alice),
            Some(json!({"seats": 9})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 5, 360).await;
    let (dev, _) = issuer().await;
    let body = json!({ "license_id": license, "hardware_id": "hw" });
    let claims = |iss: &str, aud: &str, exp: u64| json!({ "sub": "alice", "tenant_id": "acme", "iss": iss, "aud": aud, "iat": now(), "nbf": now() - 5, "exp": exp });
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let none_token = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(DEV_ISSUER, DEV_AUDIENCE, now() + 600))
    );
    let hs256_with_public_key = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(dev.kid().to_owned()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims(DEV_ISSUER, DEV_AUDIENCE, now() + 600),
        &jsonwebtoken::EncodingKey::from_secret(dev.public_key_pem().as_bytes()),
    )
    .unwrap();
    let cases = [
        ("missing", None),
        ("alg none", Some(none_token)),
        (
            "HS256 keyed with the public key",
            Some(hs256_with_public_key),
        ),
        (
            "wrong issuer",
            Some(
                dev.sign(&claims("https://evil.example", DEV_AUDIENCE, now() + 600))
                    .unwrap(),
            ),
        ),
        (
            "wrong audience",
            Some(
                dev.sign(&claims(DEV_ISSUER, "other-app", now() + 600))
                    .unwrap(),
            ),
        ),
        (
            "expired",
            Some(
                dev.sign(&claims(DEV_ISSUER, DEV_AUDIENCE, now() - 3600))
                    .unwrap(),
            ),
        ),
        ("garbage", Some("not.a.jwt".to_owned())),
    ];
    let before = command_events(&sys.db).await;
    for (what, tok) in cases {
        let r = sys
            .app
            .call(
                Method::POST,
                "/api/v1/licenses/acquire",
                tok.as_deref(),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{what}"
        );
        assert!(r.headers.contains_key("www-authenticate"), "{what}");
    }
    assert_eq!(
        command_events(&sys.db).await,
        before,
        "rejected calls change nothing"
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_bodies_change_nothing() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 5, 360).await;
    let alice = token("alice", "acme", false).await;
    let before = command_events(&sys.db).await;
    let send = |body: String, content_type: &'static str| {
        let (app, alice) = (&sys.app, alice.clone());
        async move {
            let r = app
                .http
                .post(app.url("/api/v1/licenses/acquire"))
                .bearer_auth(alice)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, ct, r.text().await.unwrap())
        }
    };
    let cases = [
        (
            "{not json".to_owned(),
            "application/json",
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"hardware_id": "hw", "license_id": license, "extra": 1}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"license_id": license}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"hardware_id": "", "license_id": license}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"hardware_id": "has spaces and \u{7}", "license_id": license}).to_string(),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"hardware_id": "x".repeat(40_000), "license_id": license}).to_string(),
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            json!({"hardware_id": "hw", "license_id": license}).to_string(),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (body, ct, expected) in cases {
        let (status, content_type, text) = send(body.clone(), ct).await;
        assert_eq!(status, expected, "{}: {text}", &body[..body.len().min(80)]);
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{text}"
        );
    }
    // A license id that is not a UUID, an unknown session id.
    let r = sys
        .app
        .call(
            Method::PUT,
            "/api/v1/licenses/heartbeat/not-a-uuid",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        command_events(&sys.db).await,
        before,
        "nothing was appended"
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_id_may_be_omitted_only_with_a_single_license() {
    let sys = System::start().await;
    let first = sys.app.issue("solo", 2, 360).await;
    let alice = token("alice", "solo", false).await;
    let r = sys
        .app
        .call(
            Method::POST,
            "/api/v1/licenses/acquire",
            Some(&alice),
            Some(json!({"hardware_id": "hw-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["license_id"], first.as_str());
    let second = sys.app.issue("solo", 2, 360).await;
    let r = sys
        .app
        .call(
            Method::POST,
            "/api/v1/licenses/acquire",
            Some(&alice),
            Some(json!({"hardware_id": "hw-2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let choices: Vec<String> = serde_json::from_value(r.body["choices"].clone()).unwrap();
    assert!(
        choices.contains(&first) && choices.contains(&second),
        "{}",
        r.body
    );
    let list = sys
        .app
        .call(Method::GET, "/api/v1/licenses", Some(&alice), None)
        .await;
    assert_eq!(list.body.as_array().unwrap().len(), 2);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_change_seats_and_suspend() {
    let sys = System::start().await;
    let license = sys.app.issue("acme", 1, 360).await;
    let admin = token("boss", "acme", true).await;
    let alice = token("alice", "acme", false).await;
    let r = sys
        .app
        .call(
            Method::PUT,
            &format!("/api/v1/admin/licenses/{license}/seats"),
            Some(&admin),
            Some(json!({"seats": 0})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = sys
        .app
        .call(
            Method::POST,
            &format!("/api/v1/admin/licenses/{license}/suspend"),
            Some(&admin),
            Some(json!({"reason": "unpaid invoice"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["suspended"], true);
    let a = sys.app.acquire(&alice, &license, "hw").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["reason"], "suspended");
    sys.app
        .call(
            Method::POST,
            &format!("/api/v1/admin/licenses/{license}/reinstate"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        sys.app.acquire(&alice, &license, "hw").await.status,
        StatusCode::OK
    );
    assert_eq!(
        count_events(&sys.db, "AcquireDenied").await,
        1,
        "the turnaway is an event"
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_openapi_and_swagger() {
    let sys = System::start().await;
    assert_eq!(
        sys.app
            .call(Method::GET, "/api/v1/health", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let ready = sys.app.call(Method::GET, "/api/v1/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let doc = sys
        .app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/licenses/acquire",
        "/api/v1/licenses/heartbeat/{session_id}",
        "/api/v1/licenses/release/{session_id}",
    ] {
        assert!(doc.body["paths"].get(path).is_some(), "{path} documented");
    }
    let swagger = sys
        .app
        .http
        .get(sys.app.url("/api/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(swagger.status(), StatusCode::OK);
    let metrics = sys.app.metrics().await;
    assert!(metrics.contains("ledger_acquires_total"));
    // Only on its own listener: the API's port (what the ingress routes) has none.
    let on_api = sys.app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(on_api.status, StatusCode::NOT_FOUND);
    let unknown = sys.app.call(Method::GET, "/nope", None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers["content-type"], "application/problem+json");
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_rate_limits() {
    let sys = System::start_with(|c| {
        c.allowed_origins = vec!["https://app.example".into()];
        c.rate_limit_per_minute = 60;
    })
    .await;
    let alice = token("alice", "acme", false).await;
    let preflight = sys
        .app
        .http
        .request(Method::OPTIONS, sys.app.url("/api/v1/licenses/acquire"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let foreign = sys
        .app
        .http
        .get(sys.app.url("/api/v1/health"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // Burst of 10 (a tenth of 60/min, at least 10), then 429 with Retry-After.
    let mut limited = None;
    for i in 0..20 {
        let r = sys
            .app
            .call(Method::GET, "/api/v1/licenses", Some(&alice), None)
            .await;
        assert!(
            r.headers.contains_key("ratelimit-limit")
                && r.headers.contains_key("ratelimit-remaining"),
            "request {i}"
        );
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the burst runs out");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // Another user has their own bucket.
    let bob = token("bob", "acme", false).await;
    assert_eq!(
        sys.app
            .call(Method::GET, "/api/v1/licenses", Some(&bob), None)
            .await
            .status,
        StatusCode::OK
    );
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_ids_are_replaced_and_control_characters_refused() {
    let sys = System::start().await;
    let admin = token("admin", "acme", true).await;
    let license = sys.app.issue("acme", 1, 360).await;
    let huge = "a".repeat(10_000);
    let res = sys
        .app
        .http
        .get(sys.app.url("/api/v1/licenses"))
        .bearer_auth(&admin)
        .header("x-request-id", &huge)
        .send()
        .await
        .unwrap();
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        echoed.len() <= 128 && echoed != huge,
        "the request id was replaced"
    );
    let before = count_events(&sys.db, "LicenseSuspended").await;
    let path = format!("/api/v1/admin/licenses/{license}/suspend");
    let nul = sys
        .app
        .call(
            Method::POST,
            &path,
            Some(&admin),
            Some(json!({"reason": "a\u{0}b"})),
        )
        .await;
    assert_eq!(nul.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", nul.body);
    assert_eq!(count_events(&sys.db, "LicenseSuspended").await, before);
    sys.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_naming_a_user_cannot_drain_that_users_rate_limit() {
    let sys = System::start_with(|c| c.rate_limit_per_minute = 60).await;
    let license = sys.app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = sys.app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session = a.body["session_id"].as_str().unwrap().to_owned();
    // 300 requests with tokens naming Alice, signed by a key the service does not trust
    let forger = licensed::auth::dev_issuer::DevIssuer::generate().unwrap();
    let forged = forger
        .mint(
            "alice",
            "acme",
            &[],
            Duration::from_secs(3600),
            DEV_ISSUER,
            DEV_AUDIENCE,
        )
        .unwrap();
    let mut limited = 0;
    for _ in 0..300 {
        let r = sys.app.heartbeat(&forged, &session).await;
        assert_ne!(r.status, StatusCode::OK);
        limited += usize::from(r.status == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(
        limited > 200,
        "unauthenticated load is limited per address ({limited} of 300)"
    );
    // Alice's real heartbeats are untouched.
    for _ in 0..5 {
        assert_eq!(
            sys.app.heartbeat(&alice, &session).await.status,
            StatusCode::OK
        );
    }
    sys.cleanup().await;
}
