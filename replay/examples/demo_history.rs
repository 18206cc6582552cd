//! Builds a small, checkpointed demo history in a fresh schema (kept) for
//! trying `ledger` by hand; prints the schema name and the public key path.
//!
//! `cargo run -p replay --example demo_history` then e.g.
//! `ledger --schema <schema> verify --key <key>`.

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use events::ids::{HardwareId, ProductId, TenantId, UserId};
use events::store::{connect, EventStore, MIGRATOR};
use licensed::service::{Acquisition, Actor, Licenses};
use licensed::signer::LocalPemSigner;
use std::time::Duration;

fn actor(user: &str) -> Actor {
    Actor {
        tenant: TenantId::parse("acme").unwrap(),
        user: UserId::parse(user).unwrap(),
        admin: true,
        correlation_id: None,
    }
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
    let licenses = Licenses::new(store.clone());
    let issued = licenses
        .issue(&actor("admin"), ProductId::parse("cad-pro")?, 2, 2, None)
        .await?;
    let license = issued
        .issued
        .map(|i| i.license_id)
        .ok_or_else(|| anyhow::anyhow!("not issued"))?;
    let mut held = Vec::new();
    for user in ["alice", "bob", "carol"] {
        if let Acquisition::Granted { session_id, .. } = licenses
            .acquire(
                &actor(user),
                license,
                HardwareId::parse(&format!("ws-{user}"))?,
                None,
            )
            .await?
        {
            held.push(session_id);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    licenses.heartbeat(&actor("bob"), held[1]).await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    println!(
        "overdue instant: {}",
        replay::time::fmt_time(chrono::Utc::now())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    licenses.expire(license, held[0]).await?;
    licenses.release(&actor("bob"), held[1]).await?;
    licenses
        .acquire(
            &actor("carol"),
            license,
            HardwareId::parse("ws-carol")?,
            None,
        )
        .await?;
    let signer = LocalPemSigner::from_key_pair(RsaKeyPair::generate(KeySize::Rsa2048)?)?;
    let info = licensed::workers::checkpoint::checkpoint_now(&store, &signer).await?;
    licenses
        .acquire(&actor("dave"), license, HardwareId::parse("ws-dave")?, None)
        .await?;
    let key = std::env::temp_dir().join(format!("{schema}.pub.pem"));
    std::fs::write(&key, &signer.public_key().pem)?;
    println!(
        "schema: {schema}\nlicense: {license}\nkey: {}\ncheckpoint: {info:?}",
        key.display()
    );
    Ok(())
}
