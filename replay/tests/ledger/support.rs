//! Shared fixtures: a signing key, a scripted history, running the binary.

use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::RsaKeyPair;
use events::ids::{HardwareId, ProductId, TenantId, UserId};
use events::testing::TestDb;
use licensed::service::{Acquisition, Actor, Licenses};
use licensed::signer::LocalPemSigner;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A 2048-bit test key (RSA-4096 generation is slow) and its public PEM on disk.
pub fn signer() -> &'static (LocalPemSigner, PathBuf) {
    static KEY: OnceLock<(LocalPemSigner, PathBuf)> = OnceLock::new();
    KEY.get_or_init(|| {
        let signer =
            LocalPemSigner::from_key_pair(RsaKeyPair::generate(KeySize::Rsa2048).unwrap()).unwrap();
        let path = tmp_path("checkpoint-key.pub.pem");
        std::fs::write(&path, &signer.public_key().pem).unwrap();
        (signer, path)
    })
}

/// A fresh path under the target directory's tmp folder.
pub fn tmp_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ledger-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// An admin (and user) of tenant `acme`.
pub fn actor(user: &str) -> Actor {
    Actor {
        tenant: TenantId::parse("acme").unwrap(),
        user: UserId::parse(user).unwrap(),
        admin: true,
        correlation_id: None,
    }
}

/// What [`small_history`] created.
pub struct Small {
    /// The license.
    pub license: events::ids::LicenseId,
}

/// A license with 2 seats: two acquisitions, one denial, a heartbeat, a release.
pub async fn small_history(licenses: &Licenses) -> Small {
    let admin = actor("admin");
    let state = licenses
        .issue(&admin, ProductId::parse("cad-pro").unwrap(), 2, 360, None)
        .await
        .unwrap();
    let license = state.issued.unwrap().license_id;
    let mut sessions = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let hw = HardwareId::parse(&format!("hw-{user}")).unwrap();
        if let Acquisition::Granted { session_id, .. } = licenses
            .acquire(&actor(user), license, hw, None)
            .await
            .unwrap()
        {
            sessions.push((user, session_id));
        }
    }
    assert_eq!(sessions.len(), 2);
    licenses
        .heartbeat(&actor("bob"), sessions[1].1)
        .await
        .unwrap();
    licenses
        .release(&actor("alice"), sessions[0].1)
        .await
        .unwrap();
    Small { license }
}

/// A fresh schema with [`small_history`] and a signed checkpoint over it.
pub async fn checkpointed() -> (TestDb, Small, i64) {
    let db = TestDb::new().await;
    let licenses = Licenses::new(db.store());
    let small = small_history(&licenses).await;
    let info = licensed::workers::checkpoint::checkpoint_now(&db.store(), &signer().0)
        .await
        .unwrap()
        .expect("a checkpoint");
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
