//! Shared fixtures: a signing key, a scripted history, running the binary.

use aws_lc_rs::rsa::KeySize;
use events::checkpoint::CheckpointInfo;
use events::ids::{HardwareId, LicenseId, ProductId, TenantId, UserId};
use events::store::EventStore;
use events::testing::{Ledger, TestDb};
use keys::RsaSigner;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A 2048-bit test key (RSA-4096 generation is slow) and its public PEM on disk.
pub fn signer() -> &'static (RsaSigner, PathBuf) {
    static KEY: OnceLock<(RsaSigner, PathBuf)> = OnceLock::new();
    KEY.get_or_init(|| {
        let signer = RsaSigner::generate(KeySize::Rsa2048).unwrap();
        let path = tmp_path("checkpoint-key.pub.pem");
        std::fs::write(&path, &signer.public_key().pem).unwrap();
        (signer, path)
    })
}

/// Signs a checkpoint of `store` with the test key, as the service's checkpointer would.
pub async fn checkpoint(store: &EventStore) -> Option<CheckpointInfo> {
    let key = &signer().0;
    events::checkpoint::checkpoint_now(store, &key.public_key().kid, |message| {
        let signed = key.sign_rs256(&message);
        async move { signed }
    })
    .await
    .unwrap()
}

/// A fresh path under the target directory's tmp folder.
pub fn tmp_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ledger-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A user id.
pub fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// Issues a license of tenant `acme` for `cad-pro`.
pub async fn issue(ledger: &Ledger, seats: u32, session_ttl_secs: u32) -> LicenseId {
    let (tenant, product) = (
        TenantId::parse("acme").unwrap(),
        ProductId::parse("cad-pro").unwrap(),
    );
    ledger
        .issue(&tenant, &product, seats, session_ttl_secs)
        .await
        .unwrap()
}

/// What [`small_history`] created.
pub struct Small {
    /// The license.
    pub license: LicenseId,
}

/// Puts `policy` in force on `license`.
pub async fn set_policy(ledger: &Ledger, license: LicenseId, policy: events::license::Policy) {
    let set = events::license::LicenseCommand::SetPolicy { policy };
    ledger
        .command(license, set, events::store::ExpectedVersion::Any)
        .await
        .unwrap();
}

/// A license with 2 seats: two acquisitions, one denial, a heartbeat, a release.
pub async fn small_history(ledger: &Ledger) -> Small {
    let license = issue(ledger, 2, 360).await;
    let mut sessions = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let hw = HardwareId::parse(&format!("hw-{name}")).unwrap();
        if let Some(session_id) = ledger.acquire(license, &user(name), &hw).await.unwrap() {
            sessions.push((name, session_id));
        }
    }
    assert_eq!(sessions.len(), 2);
    ledger.heartbeat(license, sessions[1].1).await.unwrap();
    ledger.release(license, sessions[0].1).await.unwrap();
    Small { license }
}

/// A fresh schema with [`small_history`] and a signed checkpoint over it.
pub async fn checkpointed() -> (TestDb, Small, i64) {
    let db = TestDb::new().await;
    let small = small_history(&Ledger::new(db.store())).await;
    let info = checkpoint(&db.store()).await.expect("a checkpoint");
    (db, small, info.up_to_position)
}

/// Runs `ledger` on the test schema: (exit code, stdout, stderr).
pub fn ledger(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["--database-url", &db.url, "--schema", &db.schema])
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ledger verify --key <test key>`.
pub fn verify(db: &TestDb) -> (i32, String, String) {
    let key = signer().1.to_str().unwrap().to_owned();
    ledger(db, &["verify", "--key", &key])
}
