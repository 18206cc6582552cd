//! `ledger export` and the offline check of an export.

use crate::support::{checkpointed, ledger, signer, tmp_path};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use replay::keys;
use replay::offline::verify_file;

#[tokio::test]
async fn an_export_verifies_offline_and_any_byte_change_fails() {
    let (db, _, up_to) = checkpointed().await;
    let path = tmp_path("export.jsonl");
    let out = path.to_str().unwrap().to_owned();
    let (code, _, err) = ledger(&db, &["export", "--out", &out]);
    assert_eq!(code, 0, "{err}");
    db.drop_schema().await; // offline from here on

    let key = signer().1.to_str().unwrap().to_owned();
    let run = |file: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["verify", "--file", file, "--key", &key])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = run(&out);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "proven by a signed checkpoint up to position {up_to}"
        )),
        "{text}"
    );

    // One changed byte in a data value: the binary says no.
    let original = std::fs::read(&path).unwrap();
    let mut edited = original.clone();
    let at = find(&original, b"\"seats\":2").unwrap() + 8;
    edited[at] = b'3';
    let bad = tmp_path("edited.jsonl");
    std::fs::write(&bad, &edited).unwrap();
    let (code, text) = run(bad.to_str().unwrap());
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("content does not match its hash"), "{text}");

    // Any single-byte change anywhere is detected.
    let keys = keys::from_file(&signer().1, false).unwrap();
    let scratch = tmp_path("mutant.jsonl");
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    runner
        .run(&(0..original.len(), 1u8..=255), |(index, delta)| {
            let mut mutant = original.clone();
            mutant[index] = mutant[index].wrapping_add(delta);
            std::fs::write(&scratch, &mutant).unwrap();
            let report = verify_file(&scratch, &keys).unwrap();
            prop_assert!(
                !report.is_ok(),
                "byte {index} changed by {delta} went unnoticed"
            );
            Ok(())
        })
        .unwrap();
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
