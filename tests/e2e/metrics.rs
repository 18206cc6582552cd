//! `/metrics` counts what happened: after N appends, publishes, acquires,
//! heartbeats, releases, denials and minted tokens, each counter has moved
//! by at least N. The recorder is process-wide and tests run in parallel,
//! so the test compares the counters before and after its own work.

use crate::harness::{jetstream, token, total_events, System, TestApp};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::time::Duration;

/// Every sample of the exposition, summed over labels, by metric name.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let text = app.metrics().await;
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series).to_owned();
        *out.entry(name).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, name: &str) -> f64 {
    let get = |m: &HashMap<String, f64>| m.get(name).copied();
    let after = get(after).unwrap_or_else(|| panic!("{name} is not exported"));
    after - get(before).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_counter_moves_when_what_it_names_happens() {
    let sys = System::start().await;
    let app = &sys.app;
    let before = scrape(app).await;
    let (acquires, heartbeats) = (3usize, 4usize);
    let license = app.issue("acme", acquires as u32, 360).await;
    let mut sessions = Vec::new();
    for i in 0..acquires {
        let user = token(&format!("user{i}"), "acme", false).await;
        let a = app.acquire(&user, &license, &format!("hw-{i}")).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body); // the token is minted
        sessions.push((user, a.body["session_id"].as_str().unwrap().to_owned()));
    }
    let late = token("late", "acme", false).await;
    let denied = app.acquire(&late, &license, "hw-late").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    for _ in 0..heartbeats {
        let (user, session) = &sessions[0];
        assert_eq!(app.heartbeat(user, session).await.status, StatusCode::OK);
    }
    let (user, session) = &sessions[1];
    assert_eq!(
        app.release(user, session).await.status,
        StatusCode::NO_CONTENT
    );

    // Wait until the publisher has put every event of this test's log on NATS.
    let appended = total_events(&sys.db).await as f64;
    let js = jetstream().await;
    let mut stream = js.get_stream(&sys.names.stream).await.unwrap();
    for _ in 0..200 {
        let on_nats = stream.info().await.unwrap().state.messages as f64;
        if on_nats >= appended {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = scrape(app).await;
    let at_least = |name: &str, n: f64| {
        let d = moved(&before, &after, name);
        assert!(d >= n, "{name} moved by {d}, expected at least {n}");
    };
    at_least("ledger_events_appended_total", appended);
    at_least("ledger_events_published_total", appended);
    at_least("ledger_acquires_total", acquires as f64);
    at_least("ledger_denials_total", 1.0);
    at_least("ledger_heartbeats_total", heartbeats as f64);
    at_least("ledger_releases_total", 1.0);
    at_least("ledger_tokens_minted_total", acquires as f64);
    at_least(
        "ledger_request_duration_seconds_count",
        (acquires + heartbeats) as f64,
    );
    sys.cleanup().await;
}
