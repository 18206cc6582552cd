//! NATS stopped for a while: appends continue, then the publisher and the
//! projector catch up with nothing lost or doubled. Uses a private
//! nats-server (own port, own store dir), never the shared one.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateNats {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("nats-{}", rand_name()));
        let mut nats = Self {
            child: None,
            port,
            dir,
        };
        nats.spawn();
        nats
    }

    fn spawn(&mut self) {
        let child = Command::new("/usr/sbin/nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a private nats-server");
        self.child = Some(child);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "private nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_outage_loses_and_doubles_nothing() {
    let mut nats = PrivateNats::start();
    let mut world = World::with_nats(&nats.url()).await;
    world.start_both();
    let first = workload(&world.ledger).await;
    world.caught_up().await;

    // When NATS is down for a while, appends continue
    nats.stop();
    let second = workload(&world.ledger).await;
    for _ in 0..5 {
        world
            .ledger
            .heartbeat(first.licenses[1], first.live[0])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.spawn();

    // Then the publisher and the projector catch up
    world.caught_up().await;
    let stream = world.js.get_stream(&world.stream).await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert_eq!(
        info.state.messages as i64,
        world.event_count().await,
        "JetStream lost or doubled events"
    );
    let all: Vec<_> = first
        .licenses
        .iter()
        .chain(&second.licenses)
        .copied()
        .collect();
    assert_matches_fold(&world.ledger, &world.projection, &all).await;
    let live = world.projection.dump().await.unwrap();
    let rebuilt = projection().await;
    projections::rebuild(&world.store, &rebuilt).await.unwrap();
    assert_same(&live, &rebuilt.dump().await.unwrap());
    rebuilt.reset().await.unwrap();
    world.cleanup().await;
}
