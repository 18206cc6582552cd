//! The signer backed by Cloud KMS, against the local KMS REST stand-in
//! (`licensed::signer::kms_standin`, which speaks the KMS REST protocol).

use crate::harness::{self, token, Names};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use licensed::app::Components;
use licensed::config::{Config, SignerBackendKind};
use licensed::signer::kms_standin::{KmsStandin, StandinVersion, STANDIN_KEY_NAME};
use reqwest::{Method, StatusCode};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_standin_signer_mints_tokens_that_verify_with_the_standin_key() {
    let key = Arc::new(KeyPair::generate(KeySize::Rsa4096).unwrap());
    let standin = KmsStandin::start(STANDIN_KEY_NAME, vec![StandinVersion::new(key, true)])
        .await
        .unwrap();
    let db = events::testing::TestDb::new().await;
    let names = Names::random();
    let version = standin.version_name(0);
    let config = Config {
        signer_backend: SignerBackendKind::Kms,
        kms_key_version: Some(version.clone()),
        kms_key_name: Some(standin.key_name().to_owned()),
        kms_endpoint: Some(standin.endpoint().to_owned()),
        ..harness::config(&db, &names).await
    };
    let app = harness::start(config, Components::all()).await;
    let license = app.issue("acme", 2, 360).await;
    let alice = token("alice", "acme", false).await;
    let a = app.acquire(&alice, &license, "alice-laptop").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let jwt = a.body["license_token"].as_str().unwrap();
    let standin_pem = standin.public_key_pem(0).unwrap();
    assert_eq!(
        a.body["public_key_pem"].as_str().unwrap().trim(),
        standin_pem.trim()
    );
    let claims = keys::verify_license_token(jwt, &standin_pem, "https://license-ledger.test")
        .expect("verifies with the stand-in's key");
    assert_eq!(claims.sub, "alice");
    assert_eq!(
        jsonwebtoken::decode_header(jwt).unwrap().kid.as_deref(),
        Some(version.as_str())
    );
    assert!(standin.sign_calls() >= 1, "the KMS stand-in signed it");
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    assert_eq!(jwks.body["keys"][0]["kid"], version.as_str());
    app.stop().await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}

/// The key ids of the served JWKS.
async fn kids(app: &harness::TestApp) -> Vec<String> {
    let jwks: serde_json::Value =
        serde_json::from_str(&app.text("/.well-known/jwks.json").await).unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// Polls the JWKS until it lists exactly `want` (or gives up after 15 s).
async fn jwks_becomes(app: &harness::TestApp, want: &[String]) -> Vec<String> {
    let mut seen = kids(app).await;
    for _ in 0..150 {
        if seen == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = kids(app).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_follows_kms_key_versions_added_and_disabled() {
    let key = || Arc::new(KeyPair::generate(KeySize::Rsa2048).unwrap());
    let standin = KmsStandin::start(STANDIN_KEY_NAME, vec![StandinVersion::new(key(), true)])
        .await
        .unwrap();
    let db = events::testing::TestDb::new().await;
    let names = Names::random();
    let config = Config {
        signer_backend: SignerBackendKind::Kms,
        kms_key_version: Some(standin.version_name(0)),
        kms_key_name: Some(standin.key_name().to_owned()),
        kms_endpoint: Some(standin.endpoint().to_owned()),
        keyset_refresh_secs: 1,
        ..harness::config(&db, &names).await
    };
    let serve = Components {
        serve: true,
        ..Components::default()
    };
    let app = harness::start(config, serve).await;
    let (v1, v2) = (standin.version_name(0), standin.version_name(1));
    assert_eq!(kids(&app).await, vec![v1.clone()]);
    // A new version appears in the JWKS within the refresh period ...
    standin.add_version(key()).unwrap();
    assert_eq!(
        jwks_becomes(&app, &[v1.clone(), v2.clone()]).await,
        vec![v1.clone(), v2.clone()]
    );
    // ... and a disabled one leaves it.
    standin.set_enabled(0, false);
    assert_eq!(
        jwks_becomes(&app, std::slice::from_ref(&v2)).await,
        vec![v2]
    );
    app.stop().await;
    harness::delete_stream(&names.stream).await;
    db.drop_schema().await;
}
