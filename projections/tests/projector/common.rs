//! Test harness: an isolated world per test — a fresh Postgres schema, a
//! random Redis key prefix, a random JetStream stream name and subject
//! prefix (deleted at the end) — with the real publisher and projector.

use events::ids::{HardwareId, LicenseId, ProductId, SessionId, TenantId, UserId};
use events::license::LicenseCommand;
use events::store::{EventStore, ExpectedVersion};
use events::testing::{Ledger, TestDb};
use projections::{ProjectorStats, RedisProjection};
use publisher::PublisherConfig;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";

pub fn rand_name() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

pub async fn redis() -> redis::aio::ConnectionManager {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| REDIS_URL.to_owned());
    let client = redis::Client::open(url).expect("redis url");
    redis::aio::ConnectionManager::new(client)
        .await
        .expect("connect to Redis")
}

/// A projection under a fresh random prefix.
pub async fn projection() -> RedisProjection {
    RedisProjection::new(redis().await, format!("t{}:", rand_name()))
}

pub fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

pub fn hw(id: &str) -> HardwareId {
    HardwareId::parse(id).unwrap()
}

pub struct World {
    pub db: TestDb,
    pub store: EventStore,
    pub ledger: Ledger,
    pub projection: RedisProjection,
    pub js: async_nats::jetstream::Context,
    pub stream: String,
    pub subjects: String,
    pub stats: Arc<ProjectorStats>,
    pub shutdown: CancellationToken,
    pub tasks: Vec<JoinHandle<()>>,
}

impl World {
    pub async fn new() -> Self {
        Self::with_nats(NATS_URL).await
    }

    pub async fn with_nats(url: &str) -> Self {
        let db = TestDb::new().await;
        let store = db.store();
        let nats = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .expect("connect to NATS");
        let js = async_nats::jetstream::new(nats.clone());
        let name = rand_name();
        let world = Self {
            ledger: Ledger::new(store.clone()),
            store,
            db,
            projection: projection().await,

            js,
            stream: format!("T_{}", name.to_uppercase()),
            subjects: format!("t{name}.events"),
            stats: Arc::new(ProjectorStats::default()),
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
        };
        publisher::ensure_stream(&world.js, &world.publisher_config())
            .await
            .unwrap();
        world
    }

    pub fn publisher_config(&self) -> PublisherConfig {
        PublisherConfig {
            stream: self.stream.clone(),
            subject_prefix: self.subjects.clone(),
        }
    }

    pub fn start_publisher(&mut self) {
        let (store, js, config, stop) = (
            self.store.clone(),
            self.js.clone(),
            self.publisher_config(),
            self.shutdown.clone(),
        );
        self.tasks.push(tokio::spawn(async move {
            publisher::run(store, js, config, |_| {}, stop)
                .await
                .expect("publisher");
        }));
    }

    /// Starts `projections::run` on `projection` with its own stop token.
    pub fn start_projector(
        &self,
        projection: RedisProjection,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let (store, js, stream, subjects, stats) = (
            self.store.clone(),
            self.js.clone(),
            self.stream.clone(),
            self.subjects.clone(),
            self.stats.clone(),
        );
        tokio::spawn(async move {
            projections::run(store, js, stream, subjects, projection, stats, stop)
                .await
                .expect("projector");
        })
    }

    pub fn start_both(&mut self) {
        self.start_publisher();
        let task = self.start_projector(self.projection.clone(), self.shutdown.child_token());
        self.tasks.push(task);
    }

    /// Waits until the projector has handled the log's head.
    pub async fn caught_up(&self) {
        let head = self.store.head_position().await.unwrap();
        let started = Instant::now();
        while self.stats.last_position.load(Ordering::Relaxed) < head {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "projector stuck below position {head}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until JetStream holds `count` messages.
    pub async fn published(&self, count: u64) {
        let stream = self.js.get_stream(&self.stream).await.unwrap();
        let started = Instant::now();
        while stream.get_info().await.unwrap().state.messages < count {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "publisher stuck"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Number of events in the log.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    pub async fn cleanup(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let _ = self.js.delete_stream(&self.stream).await;
        let _ = self.projection.reset().await;
        self.db.drop_schema().await;
    }
}

/// What the scripted workload created.
pub struct Workload {
    pub licenses: Vec<LicenseId>,
    pub live: Vec<SessionId>,
}

fn granted(a: Option<SessionId>) -> SessionId {
    a.expect("acquire denied")
}

fn denied(a: Option<SessionId>) {
    assert!(a.is_none(), "expected a denial, got {a:?}");
}

/// Issues three licenses in two tenants; acquires, denials, heartbeats,
/// releases, a seat change, a suspension, and expiries of a 1 s TTL license.
pub async fn workload(l: &Ledger) -> Workload {
    let (acme, globex) = (
        TenantId::parse("acme").unwrap(),
        TenantId::parse("globex").unwrap(),
    );
    let product = ProductId::parse("cad.pro").unwrap();
    let short = l.issue(&acme, &product, 2, 1).await.unwrap();
    let long = l.issue(&acme, &product, 3, 360).await.unwrap();
    let other = l.issue(&globex, &product, 1, 360).await.unwrap();
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let (dave, eve) = (user("dave"), user("eve"));
    // Short-TTL license: two seats taken, a third turned away; both expire.
    let s1 = granted(l.acquire(short, &alice, &hw("h-a1")).await.unwrap());
    let s2 = granted(l.acquire(short, &bob, &hw("h-b1")).await.unwrap());
    denied(l.acquire(short, &carol, &hw("h-c1")).await.unwrap());
    // Long license: heartbeats, a release, seats changed.
    let s3 = granted(l.acquire(long, &alice, &hw("h-a2")).await.unwrap());
    let s4 = granted(l.acquire(long, &bob, &hw("h-b2")).await.unwrap());
    let s5 = granted(l.acquire(long, &carol, &hw("h-c2")).await.unwrap());
    for _ in 0..3 {
        l.heartbeat(long, s3).await.unwrap();
        l.heartbeat(long, s4).await.unwrap();
    }
    l.release(long, s4).await.unwrap();
    let any = ExpectedVersion::Any;
    l.command(
        long,
        LicenseCommand::ChangeSeats {
            seats: 2,
            now: events::envelope::now(),
        },
        any,
    )
    .await
    .unwrap();
    denied(l.acquire(long, &bob, &hw("h-b3")).await.unwrap());
    // Other tenant: one seat, a denial, a suspension (which revokes the
    // session) and reinstatement.
    granted(l.acquire(other, &dave, &hw("h-d1")).await.unwrap());
    denied(l.acquire(other, &eve, &hw("h-e1")).await.unwrap());
    let suspend = LicenseCommand::Suspend {
        reason: "audit".into(),
        now: events::envelope::now(),
    };
    l.command(other, suspend, any).await.unwrap();
    l.command(other, LicenseCommand::Reinstate, any)
        .await
        .unwrap();
    // Past the 1 s TTL: the reaper's call ends both short sessions.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(l.expire(short, s1).await.unwrap());
    assert!(l.expire(short, s2).await.unwrap());
    l.heartbeat(long, s3).await.unwrap();
    Workload {
        licenses: vec![short, long, other],
        live: vec![s3, s5],
    }
}

/// Asserts Redis's counts match the pure fold of each license stream.
pub async fn assert_matches_fold(l: &Ledger, projection: &RedisProjection, licenses: &[LicenseId]) {
    for id in licenses {
        let state = l.license(*id).await.unwrap();
        let usage = projection
            .usage(id.as_uuid())
            .await
            .unwrap()
            .expect("license projected");
        assert_eq!(usage.seats, state.seats(), "seats of {id}");
        assert_eq!(
            usage.in_use as usize,
            state.sessions.len(),
            "in_use of {id}"
        );
        assert_eq!(usage.suspended, state.suspended, "suspended of {id}");
        assert_eq!(usage.version, state.version, "version of {id}");
        let live: Vec<_> = usage.sessions.iter().map(|s| s.session_id).collect();
        let want: Vec<_> = state.sessions.keys().map(|s| s.as_uuid()).collect();
        assert_eq!(live.len(), want.len());
        for s in want {
            assert!(live.contains(&s), "session {s} of {id} missing from Redis");
        }
    }
}

/// Compares two dumps key by key with a readable diff.
pub fn assert_same(live: &BTreeMap<String, String>, rebuilt: &BTreeMap<String, String>) {
    for (key, value) in live {
        assert_eq!(
            Some(value),
            rebuilt.get(key),
            "key {key} differs (live vs rebuilt)"
        );
    }
    for key in rebuilt.keys() {
        assert!(
            live.contains_key(key),
            "key {key} only in the rebuilt projection"
        );
    }
}
