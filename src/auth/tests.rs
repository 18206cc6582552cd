//! Auth tests over real HTTP: a local axum JWKS server on 127.0.0.1:0 and
//! tokens signed with generated RSA keys through `jsonwebtoken`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRef;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower::ServiceExt;

use super::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
use super::*;

const ISS: &str = "https://issuer.test";
const AUD: &str = "license-ledger-test";

/// Two generated keys, shared by all tests (RSA generation is slow-ish).
fn key(n: usize) -> &'static DevIssuer {
    static KEYS: OnceLock<[DevIssuer; 2]> = OnceLock::new();
    &KEYS.get_or_init(|| {
        [
            DevIssuer::generate().unwrap(),
            DevIssuer::generate().unwrap(),
        ]
    })[n]
}

/// A JWKS endpoint whose key set can be swapped and which can be stopped.
struct JwksServer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    async fn start(jwks: Value) -> Self {
        let jwks = Arc::new(Mutex::new(jwks));
        let hits = Arc::new(AtomicUsize::new(0));
        let (state_jwks, state_hits) = (jwks.clone(), hits.clone());
        let app = Router::new().route(
            "/jwks",
            get(move || async move {
                state_hits.fetch_add(1, Ordering::SeqCst);
                let body = state_jwks.lock().unwrap().to_string();
                ([(header::CACHE_CONTROL, "public, max-age=600")], body)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            jwks,
            hits,
            stop: Some(stop),
            task,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    async fn shut_down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
    }
}

fn authenticator(url: &str, min_refresh: Duration) -> Authenticator {
    let config = AuthConfig::new(url, ISS, AUD);
    let cache = JwksCache::new(url).with_min_refresh_interval(min_refresh);
    Authenticator::with_jwks(&config, Arc::new(cache))
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "user-1", "tenant_id": "acme",
           "iat": now(), "nbf": now(), "exp": now() + 300})
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

#[tokio::test]
async fn valid_token_yields_caller_with_tenant_and_admin_flag() {
    let server = JwksServer::start(key(0).jwks()).await;
    let auth = authenticator(&server.url, Duration::from_secs(10));

    let token = key(0)
        .sign(&with(claims(), "roles", json!(["viewer", ADMIN_ROLE])))
        .unwrap();
    let caller = auth.verify(&token).await.unwrap();
    assert_eq!(
        caller,
        Caller {
            user_id: "user-1".into(),
            tenant_id: "acme".into(),
            is_admin: true,
            is_vendor: false,
            groups: Vec::new(),
        }
    );
    let plain = auth.verify(&key(0).sign(&claims()).unwrap()).await.unwrap();
    assert!(!plain.is_admin);
    // exp passed but within the 30 s leeway: still accepted.
    let skewed = key(0)
        .sign(&with(claims(), "exp", json!(now() - 10)))
        .unwrap();
    assert!(auth.verify(&skewed).await.is_ok());
    assert_eq!(server.hits(), 1, "keys are cached");
}

#[tokio::test]
async fn identity_platform_token_as_issued_is_accepted() {
    let server = JwksServer::start(key(0).jwks()).await;
    let iss = "https://securetoken.google.com/proj";
    let auth = Authenticator::new(&AuthConfig::new(&server.url, iss, "proj"));
    let token = key(0)
        .sign(&json!({
            "iss": iss, "aud": "proj", "sub": "Xq1uid", "user_id": "Xq1uid",
            "auth_time": now(), "iat": now(), "exp": now() + 3600,
            "email": "a@example.com",
            "firebase": {"tenant": "t1", "sign_in_provider": "password",
                         "identities": {"email": ["a@example.com"]}}
        }))
        .unwrap();
    let caller = auth.verify(&token).await.unwrap();
    assert_eq!(caller.tenant_id, "t1");
    assert_eq!(caller.user_id, "Xq1uid");
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    let server = JwksServer::start(key(0).jwks()).await;
    let auth = authenticator(&server.url, Duration::from_secs(10));
    let kid = key(0).kid().to_owned();

    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&claims())
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256_with_public_key = jsonwebtoken::encode(
        &hs_header,
        &claims(),
        &EncodingKey::from_secret(key(0).public_key_pem().as_bytes()),
    )
    .unwrap();
    // The kid check comes before any key lookup or signature check.
    let no_kid = {
        let good = key(0).sign(&claims()).unwrap();
        let (_, rest) = good.split_once('.').unwrap();
        format!("{}.{rest}", b64(&json!({"alg": "RS256", "typ": "JWT"})))
    };
    // Right kid, wrong key: a forged signature.
    let forged = {
        let good = key(0).sign(&claims()).unwrap();
        let other = key(1).sign(&claims()).unwrap();
        let (head, _) = good.rsplit_once('.').unwrap();
        let (_, sig) = other.rsplit_once('.').unwrap();
        format!("{head}.{sig}")
    };

    let cases: Vec<(&str, String, AuthError)> = vec![
        ("alg none", alg_none, AuthError::Malformed),
        (
            "HS256 keyed with the public key",
            hs256_with_public_key,
            AuthError::Algorithm,
        ),
        ("garbage", "not.a.jwt".into(), AuthError::Malformed),
        ("no kid", no_kid, AuthError::MissingKid),
        ("forged signature", forged, AuthError::Signature),
        (
            "wrong iss",
            key(0)
                .sign(&with(claims(), "iss", json!("https://evil")))
                .unwrap(),
            AuthError::Issuer,
        ),
        (
            "no iss",
            key(0).sign(&with(claims(), "iss", Value::Null)).unwrap(),
            AuthError::Claim("iss".into()),
        ),
        (
            "wrong aud",
            key(0).sign(&with(claims(), "aud", json!("other"))).unwrap(),
            AuthError::Audience,
        ),
        (
            "expired",
            key(0)
                .sign(&with(claims(), "exp", json!(now() - 120)))
                .unwrap(),
            AuthError::Expired,
        ),
        (
            "no exp",
            key(0).sign(&with(claims(), "exp", Value::Null)).unwrap(),
            AuthError::Claim("exp".into()),
        ),
        (
            "nbf in future",
            key(0)
                .sign(&with(claims(), "nbf", json!(now() + 120)))
                .unwrap(),
            AuthError::NotYetValid,
        ),
        (
            "unknown kid",
            key(1).sign(&claims()).unwrap(),
            AuthError::UnknownKey,
        ),
        (
            "missing sub",
            key(0).sign(&with(claims(), "sub", Value::Null)).unwrap(),
            ClaimsError::MissingSubject.into(),
        ),
        (
            "missing tenant",
            key(0)
                .sign(&with(claims(), "tenant_id", Value::Null))
                .unwrap(),
            ClaimsError::MissingTenant.into(),
        ),
        (
            "bad tenant",
            key(0)
                .sign(&with(claims(), "tenant_id", json!("a/b")))
                .unwrap(),
            ClaimsError::InvalidTenant.into(),
        ),
        (
            "bad sub",
            key(0)
                .sign(&with(claims(), "sub", json!("a\u{7}b")))
                .unwrap(),
            ClaimsError::InvalidSubject.into(),
        ),
    ];
    for (name, token, expected) in cases {
        assert_eq!(auth.verify(&token).await.unwrap_err(), expected, "{name}");
    }
    assert_eq!(
        AuthError::from(ClaimsError::MissingTenant).to_string(),
        "token carries no tenant"
    );
}

#[tokio::test]
async fn unknown_kids_refresh_at_most_once_per_interval() {
    let server = JwksServer::start(key(0).jwks()).await;
    let auth = authenticator(&server.url, Duration::from_secs(10));
    assert!(auth.verify(&key(0).sign(&claims()).unwrap()).await.is_ok());
    assert_eq!(server.hits(), 1);
    for _ in 0..20 {
        let bogus = key(1).sign(&claims()).unwrap();
        assert_eq!(
            auth.verify(&bogus).await.unwrap_err(),
            AuthError::UnknownKey
        );
    }
    assert_eq!(
        server.hits(),
        1,
        "a flood of unknown kids must not hit the IdP"
    );
}

#[tokio::test]
async fn rotated_key_triggers_a_refresh_and_verifies() {
    let server = JwksServer::start(key(0).jwks()).await;
    let auth = authenticator(&server.url, Duration::ZERO);
    assert!(auth.verify(&key(0).sign(&claims()).unwrap()).await.is_ok());

    *server.jwks.lock().unwrap() = key(1).jwks();
    let caller = auth.verify(&key(1).sign(&claims()).unwrap()).await.unwrap();
    assert_eq!(caller.tenant_id, "acme");
    assert_eq!(server.hits(), 2);
    // The retired key is gone after the refresh.
    let old = key(0).sign(&claims()).unwrap();
    assert_eq!(auth.verify(&old).await.unwrap_err(), AuthError::UnknownKey);
}

#[tokio::test]
async fn stale_keys_are_served_when_the_jwks_server_is_down() {
    let mut server = JwksServer::start(key(0).jwks()).await;
    let auth = authenticator(&server.url, Duration::ZERO);
    let token = key(0).sign(&claims()).unwrap();
    assert!(auth.verify(&token).await.is_ok());

    server.shut_down().await;
    assert!(auth.jwks().refresh().await.is_err());
    assert!(
        auth.verify(&token).await.is_ok(),
        "cached key still verifies"
    );
    let unknown = key(1).sign(&claims()).unwrap();
    assert_eq!(
        auth.verify(&unknown).await.unwrap_err(),
        AuthError::UnknownKey
    );
    assert!(
        auth.verify(&token).await.is_ok(),
        "a failed refresh keeps the keys"
    );
}

#[tokio::test]
async fn never_reachable_jwks_is_a_503_not_a_401() {
    let mut server = JwksServer::start(key(0).jwks()).await;
    server.shut_down().await;
    let auth = authenticator(&server.url, Duration::ZERO);
    let err = auth
        .verify(&key(0).sign(&claims()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err, AuthError::KeysUnavailable);
    assert_eq!(Problem::from(err).status, 503);
}

#[derive(Clone)]
struct AppState {
    auth: Arc<Authenticator>,
}

impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

async fn send(
    app: &Router,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn extractors_answer_problems_through_a_router() {
    let server = JwksServer::start(key(0).jwks()).await;
    let state = AppState {
        auth: Arc::new(authenticator(&server.url, Duration::from_secs(10))),
    };
    let app = Router::new()
        .route(
            "/me",
            get(|c: Caller| async move {
                axum::Json(json!({"tenant": c.tenant_id, "user": c.user_id}))
            }),
        )
        .route(
            "/admin",
            get(|AdminCaller(c): AdminCaller| async move { c.user_id }),
        )
        .with_state(state);
    let user = key(0).sign(&claims()).unwrap();
    let admin = key(0)
        .sign(&with(claims(), "roles", json!([ADMIN_ROLE])))
        .unwrap();

    let (status, _, body) = send(&app, "/me", Some(&user)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"tenant": "acme", "user": "user-1"}))
    );

    let (status, headers, body) = send(&app, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(headers[header::CONTENT_TYPE], crate::problem::PROBLEM_JSON);
    assert_eq!(body["status"], 401);

    let expired = key(0)
        .sign(&with(claims(), "exp", json!(now() - 600)))
        .unwrap();
    let (status, headers, body) = send(&app, "/me", Some(&expired)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
    assert_eq!(body["detail"], "token has expired");
    assert!(
        !body.to_string().contains(&expired),
        "the token is never echoed"
    );

    let (status, _, body) = send(&app, "/admin", Some(&user)).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::FORBIDDEN, json!(403))
    );
    let (status, _, _) = send(&app, "/admin", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn dev_issuer_tokens_verify_through_its_served_jwks() {
    let issuer = key(0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/dev{}",
        listener.local_addr().unwrap(),
        dev_issuer::JWKS_PATH
    );
    let app = Router::new().nest("/dev", issuer.router());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let auth = Authenticator::new(&AuthConfig::new(url, DEV_ISSUER, DEV_AUDIENCE));
    let roles = vec![ADMIN_ROLE.to_owned()];
    let token = issuer
        .mint(
            "dev-user",
            "dev-tenant",
            &roles,
            Duration::from_secs(60),
            DEV_ISSUER,
            DEV_AUDIENCE,
        )
        .unwrap();
    let caller = auth.verify(&token).await.unwrap();
    assert_eq!(
        caller,
        Caller {
            user_id: "dev-user".into(),
            tenant_id: "dev-tenant".into(),
            is_admin: true,
            is_vendor: false,
            groups: Vec::new(),
        }
    );
}
