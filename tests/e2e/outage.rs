//! Failing well: with the database unreachable, requests answer 503
//! problem+json quickly instead of hanging on the connection pool.

use crate::harness::{self, token};
use licensed::app::Components;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP forwarder to the local Postgres that the test can cut.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut links = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, task }
    }

    /// Closes the listener and every forwarded connection.
    fn cut(self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_answers_503_quickly() {
    let db = events::testing::TestDb::new().await;
    let names = harness::Names::random();
    let proxy = Proxy::start().await;
    let mut config = harness::config(&db, &names).await;
    config.database_url = format!("postgres://postgres@127.0.0.1:{}/test", proxy.port).into();
    let serve = Components {
        serve: true,
        publish: true,
        sign: true,
        ..Components::default()
    };
    let app = harness::start(config, serve).await;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let session = a.body["session_id"].as_str().unwrap().to_owned();

    proxy.cut();
    // A client that gives up after 10 s would see a hang as a timeout error.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let res = http
        .put(app.url(&format!("/api/v1/licenses/heartbeat/{session}")))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(res.headers().contains_key("retry-after"));
    let ready = http
        .get(app.url("/api/v1/ready"))
        .send()
        .await
        .expect("ready answers");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.stop().await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}
