//! `spawn_app()`: the whole service in-process on `127.0.0.1:0`, against the
//! real local Postgres (own schema), NATS (own JetStream stream and subject
//! prefix) and Redis, with a dev token issuer serving its JWKS on its own
//! listener. Tests run in parallel without seeing each other.

use licensed::app::{App, Components};
use licensed::auth::dev_issuer::{DevIssuer, DEV_AUDIENCE, DEV_ISSUER};
use licensed::config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One RSA-4096 signing key per test process (generating one takes a while).
pub fn signing_key_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ll-e2e-{}", std::process::id()));
        let path = dir.join("signing-key.pem");
        licensed::signer::LocalPemSigner::load_or_generate(&path)
            .expect("generate the test signing key");
        path
    })
    .clone()
}

/// The dev issuer shared by the tests of this process, and its JWKS URL.
pub async fn issuer() -> (Arc<DevIssuer>, String) {
    static ISSUER: tokio::sync::OnceCell<(Arc<DevIssuer>, String)> =
        tokio::sync::OnceCell::const_new();
    ISSUER
        .get_or_init(|| async {
            let issuer = Arc::new(DevIssuer::generate().expect("dev issuer key"));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = issuer.router();
            // A dedicated thread + runtime: the issuer outlives each test's runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener.into_std().unwrap()).unwrap();
                    axum::serve(listener, router).await.unwrap();
                });
            });
            (issuer, format!("http://{addr}/.well-known/jwks.json"))
        })
        .await
        .clone()
}

/// Isolated names for one test.
#[derive(Clone)]
pub struct Names {
    pub stream: String,
    pub prefix: String,
}

impl Names {
    pub fn random() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            stream: format!("E2E_{id}"),
            prefix: format!("e2e.{id}"),
        }
    }
}

/// The configuration of one test app: the defaults, pointed at the test's
/// schema, stream, subject and key prefixes, the dev issuer and the shared
/// test signing key, listening on a free port.
pub async fn config(db: &events::testing::TestDb, names: &Names) -> Config {
    let (_, jwks_url) = issuer().await;
    Config {
        database_url: db.url.clone().into(),
        database_schema: Some(db.schema.clone()),
        nats_stream: names.stream.clone(),
        nats_subject_prefix: names.prefix.clone(),
        auth_jwks_url: jwks_url,
        auth_issuer: DEV_ISSUER.into(),
        auth_audience: DEV_AUDIENCE.into(),
        signing_key_path: signing_key_path().display().to_string(),
        token_issuer: "https://license-ledger.test".into(),
        rate_limit_per_minute: 100_000,
        reaper_interval_ms: 200,
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        redis_prefix: format!("{}:", names.prefix),
        ..Config::default()
    }
}

/// A running instance.
pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The Prometheus text served on the metrics listener.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let res = self.http.get(url).send().await.expect("request");
        res.text().await.expect("body")
    }

    /// The body of `GET path`, as text.
    pub async fn text(&self, path: &str) -> String {
        let res = self.http.get(self.url(path)).send().await.expect("request");
        res.text().await.expect("body")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Every component but the signer: acquires wait for tokens nobody mints.
pub fn no_signer() -> Components {
    Components {
        sign: false,
        project: false,
        ..Components::all()
    }
}

/// Builds and starts `components` with `config`, as `main` does.
pub async fn start(config: Config, components: Components) -> TestApp {
    let app = App::build(config, components).await.expect("build the app");
    let addr = app.local_addr().expect("bound address");
    let metrics_addr = app.metrics_addr().expect("bound metrics address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        addr,
        metrics_addr,
        http: reqwest::Client::new(),
        shutdown,
        task,
    }
}

/// A whole system for one test: schema, stream names, one app with every component.
pub struct System {
    pub db: events::testing::TestDb,
    pub names: Names,
    pub app: TestApp,
}

impl System {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the test configuration changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = events::testing::TestDb::new().await;
        let names = Names::random();
        let mut config = config(&db, &names).await;
        tweak(&mut config);
        let app = start(config, Components::all()).await;
        Self { db, names, app }
    }

    /// Stops the app and removes the JetStream stream and the schema.
    pub async fn cleanup(self) {
        self.app.stop().await;
        delete_stream(&self.names.stream).await;
        self.db.drop_schema().await;
    }
}

pub async fn jetstream() -> async_nats::jetstream::Context {
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS");
    async_nats::jetstream::new(client)
}

pub async fn delete_stream(name: &str) {
    let _ = jetstream().await.delete_stream(name).await;
}

/// A user token of the dev issuer.
pub async fn token(sub: &str, tenant: &str, admin: bool) -> String {
    let (issuer, _) = issuer().await;
    // An "admin" here is both the tenant's license admin and the vendor.
    let roles = if admin {
        vec!["license-admin".to_owned(), "license-vendor".to_owned()]
    } else {
        vec![]
    };
    issuer
        .mint(
            sub,
            tenant,
            &roles,
            Duration::from_secs(3600),
            DEV_ISSUER,
            DEV_AUDIENCE,
        )
        .unwrap()
}

/// A user token of the dev issuer naming `groups` (the `groups` claim).
pub async fn token_in_groups(sub: &str, tenant: &str, groups: &[&str]) -> String {
    token_with(sub, tenant, &[], groups).await
}

/// A token of the dev issuer with exactly these `roles` and `groups`.
pub async fn token_with(sub: &str, tenant: &str, roles: &[&str], groups: &[&str]) -> String {
    let (issuer, _) = issuer().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": sub, "tenant_id": tenant,
        "roles": roles, "groups": groups, "iat": now, "nbf": now, "exp": now + 3600,
    });
    issuer.sign(&claims).unwrap()
}

/// An HTTP answer: status, headers, JSON body (Null when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Issues a license as an admin of `tenant`; returns its id.
    pub async fn issue(&self, tenant: &str, seats: u32, ttl_secs: u32) -> String {
        let body = json!({ "product": "cad-pro", "seats": seats, "session_ttl_secs": ttl_secs });
        self.issue_with(tenant, body).await
    }

    /// Issues a license with the body `terms` as an admin of `tenant`; returns its id.
    pub async fn issue_with(&self, tenant: &str, terms: Value) -> String {
        let admin = token("admin", tenant, true).await;
        let a = self
            .call(
                reqwest::Method::POST,
                "/api/v1/admin/licenses",
                Some(&admin),
                Some(terms),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["license_id"].as_str().unwrap().to_owned()
    }

    pub async fn heartbeat(&self, token: &str, session: &str) -> Answer {
        let path = format!("/api/v1/licenses/heartbeat/{session}");
        self.call(reqwest::Method::PUT, &path, Some(token), None)
            .await
    }

    pub async fn release(&self, token: &str, session: &str) -> Answer {
        let path = format!("/api/v1/licenses/release/{session}");
        self.call(reqwest::Method::DELETE, &path, Some(token), None)
            .await
    }

    pub async fn acquire(&self, token: &str, license: &str, hardware: &str) -> Answer {
        self.call(
            reqwest::Method::POST,
            "/api/v1/licenses/acquire",
            Some(token),
            Some(json!({ "license_id": license, "hardware_id": hardware })),
        )
        .await
    }
}

/// Counts the events of the test's log, by type.
pub async fn count_events(db: &events::testing::TestDb, event_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1")
        .bind(event_type)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Events of licenses and sessions (not the checkpointer's, which signs the
/// log in the background whenever it moved).
pub async fn command_events(db: &events::testing::TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id <> 'checkpoints'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

pub async fn total_events(db: &events::testing::TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}
