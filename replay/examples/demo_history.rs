//! Builds a small, checkpointed demo history in a fresh schema (kept) for
//! trying `ledger` by hand; prints the schema name and the public key path.
//!
//! `cargo run -p replay --example demo_history` then e.g.
//! `ledger --schema <schema> verify --key <key>`.

use aws_lc_rs::rsa::KeySize;
use events::ids::{HardwareId, ProductId, TenantId, UserId};
use events::store::{connect, EventStore, MIGRATOR};
use events::testing::Ledger;
use keys::RsaSigner;
use std::time::Duration;

fn user(name: &str) -> anyhow::Result<UserId> {
    Ok(UserId::parse(name)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| events::testing::DEFAULT_TEST_DATABASE_URL.to_owned());
    let schema = format!("demo_{}", uuid::Uuid::new_v4().simple());
    let admin = connect(&url, None, 1).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    let pool = connect(&url, Some(&schema), 4).await?;
    MIGRATOR.run(&pool).await?;
    let store = EventStore::new(pool);
    let licenses = Ledger::new(store.clone());
    let (tenant, product) = (TenantId::parse("acme")?, ProductId::parse("cad-pro")?);
    let license = licenses.issue(&tenant, &product, 2, 2).await?;
    let mut held = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let hw = HardwareId::parse(&format!("ws-{name}"))?;
        if let Some(session_id) = licenses.acquire(license, &user(name)?, &hw).await? {
            held.push(session_id);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    licenses.heartbeat(license, held[1]).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    println!(
        "overdue instant: {}",
        replay::time::fmt_time(chrono::Utc::now())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    licenses.expire(license, held[0]).await?;
    licenses.release(license, held[1]).await?;
    let carol = HardwareId::parse("ws-carol")?;
    licenses.acquire(license, &user("carol")?, &carol).await?;
    let signer = RsaSigner::generate(KeySize::Rsa2048)?;
    let info = events::checkpoint::checkpoint_now(&store, &signer.public_key().kid, |message| {
        let signed = signer.sign_rs256(&message);
        async move { signed }
    })
    .await?;
    let dave = HardwareId::parse("ws-dave")?;
    licenses.acquire(license, &user("dave")?, &dave).await?;
    let key = std::env::temp_dir().join(format!("{schema}.pub.pem"));
    std::fs::write(&key, &signer.public_key().pem)?;
    println!(
        "schema: {schema}\nlicense: {license}\nkey: {}\ncheckpoint: {info:?}",
        key.display()
    );
    Ok(())
}
