//! `ledger verify` on a clean log and after each kind of tampering.

use crate::support::{checkpointed, ledger, verify};
use sqlx::Row as _;

/// (position, stream_version) of an event picked by SQL condition.
async fn locate(pool: &sqlx::PgPool, condition: &str) -> (i64, i64, String) {
    let row = sqlx::query(&format!("SELECT position, stream_version, stream_id FROM events WHERE {condition} ORDER BY position LIMIT 1"))
        .fetch_one(pool)
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_clean_log_verifies_and_states_the_proven_position() {
    let (db, _, up_to) = checkpointed().await;
    let (code, out, err) = verify(&db);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("per-stream hash chains: intact"), "{out}");
    assert!(
        out.contains(&format!(
            "proven by a signed checkpoint up to position {up_to}"
        )),
        "{out}"
    );
    assert!(out.contains("RESULT: OK"), "{out}");
    // Without a key the signature cannot be checked: not a pass.
    let (code, out, _) = ledger(&db, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature NOT checked"), "{out}");
    // JSON output carries the same verdict.
    let key = crate::support::signer().1.to_str().unwrap().to_owned();
    let (code, out, _) = ledger(&db, &["verify", "--key", &key, "--format", "json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["proven_up_to"], up_to);
    db.drop_schema().await;
}

#[tokio::test]
async fn an_updated_event_is_found() {
    let (db, small, _) = checkpointed().await;
    let stream = small.license.stream_name();
    let (pos, ver, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND event_type = 'LicenseIssued'"),
    )
    .await;
    sqlx::query("UPDATE events SET data = jsonb_set(data, '{seats}', '50') WHERE position = $1")
        .bind(pos)
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FIRST BROKEN LINK: stream {stream} version {ver} position {pos}: content does not match its hash")), "{out}");
    // The stored hashes are untouched, so the signed running hash still matches: the chain is what catches an edit.
    assert!(out.contains("signed checkpoints: 1 (1 valid)"), "{out}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_deleted_event_is_found() {
    let (db, small, _) = checkpointed().await;
    let stream = small.license.stream_name();
    let (pos, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = 1"),
    )
    .await;
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(pos)
        .execute(&db.pool)
        .await
        .unwrap();
    let (next_pos, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = 2"),
    )
    .await;
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FIRST BROKEN LINK: stream {stream} version 2 position {next_pos}: version gap: expected version 1")), "{out}");
    assert!(
        out.contains(&format!(
            "positions missing in that range (deleted, or rolled-back appends): {pos}"
        )),
        "{out}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn a_cut_tail_is_found() {
    let (db, small, _) = checkpointed().await;
    let stream = small.license.stream_name();
    let last: i64 =
        sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
            .bind(&stream)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let (pos, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = {last}"),
    )
    .await;
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(pos)
        .execute(&db.pool)
        .await
        .unwrap();
    let (prev_pos, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = {}", last - 1),
    )
    .await;
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("stream {stream} version {last} position {prev_pos}: stream head records version {last} but the last event is version {}", last - 1)),
        "{out}"
    );
    assert!(out.contains("HEAD MISMATCH"), "{out}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_forged_event_is_found() {
    let (db, small, _) = checkpointed().await;
    let stream = small.license.stream_name();
    let store = db.store();
    let tail = store.read_stream(&stream, 0, 100).await.unwrap();
    let last = tail.last().unwrap();
    // A well-formed, correctly chained event that the log never appended.
    let mut forged = last.clone();
    forged.event_id = uuid::Uuid::new_v4();
    forged.stream_version = last.stream_version + 1;
    forged.event_type = "SeatsChanged".into();
    forged.data = serde_json::json!({"seats": 99});
    forged.prev_hash = last.hash.clone();
    let hash = forged.canonical().chain_hash(&forged.prev_hash);
    let pos: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, prev_hash, hash)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9) RETURNING position",
    )
    .bind(forged.event_id)
    .bind(&stream)
    .bind(forged.stream_version)
    .bind(&forged.event_type)
    .bind(&forged.data)
    .bind(&forged.metadata)
    .bind(forged.recorded_at)
    .bind(&forged.prev_hash)
    .bind(hash.to_vec())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "stream {stream} version {} position {pos}: stream head records version {} but the last event is version {}",
            forged.stream_version, last.stream_version, forged.stream_version
        )),
        "{out}"
    );
    db.drop_schema().await;
}

#[tokio::test]
async fn a_reorder_is_found() {
    let (db, small, _) = checkpointed().await;
    let stream = small.license.stream_name();
    let (p1, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = 1"),
    )
    .await;
    let (p2, _, _) = locate(
        &db.pool,
        &format!("stream_id = '{stream}' AND stream_version = 2"),
    )
    .await;
    // Swap the two events' positions (version 2 now comes first in the log).
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "CREATE TEMP TABLE moved ON COMMIT DROP AS SELECT * FROM events WHERE position IN ($1, $2)",
    )
    .bind(p1)
    .bind(p2)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("DELETE FROM events WHERE position IN ($1, $2)")
        .bind(p1)
        .bind(p2)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, tx_id, prev_hash, hash)
         OVERRIDING SYSTEM VALUE
         SELECT $1 + $2 - position, event_id, stream_id, stream_version, event_type, schema_version, data, metadata, recorded_at, tx_id, prev_hash, hash FROM moved",
    )
    .bind(p1)
    .bind(p2)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FIRST BROKEN LINK: stream {stream} version 2 position {p1}: position not above the previous version's (reordered)")),
        "{out}"
    );
    assert!(out.contains("HEAD MISMATCH"), "{out}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_whole_deleted_stream_is_caught_by_the_checkpoint() {
    let (db, _, up_to) = checkpointed().await;
    let (pos, _, stream) = locate(&db.pool, "event_type = 'HeartbeatRecorded'").await;
    sqlx::query("DELETE FROM events WHERE stream_id = $1")
        .bind(&stream)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM streams WHERE stream_id = $1")
        .bind(&stream)
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, out, _) = verify(&db);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("per-stream hash chains: intact"),
        "chains alone cannot see it: {out}"
    );
    assert!(
        out.contains(&format!("covers positions 1..={up_to}")),
        "{out}"
    );
    assert!(out.contains("HEAD MISMATCH"), "{out}");
    assert!(
        out.contains(&format!("the change lies in positions 1..={up_to}")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "positions missing in that range (deleted, or rolled-back appends): {pos}"
        )),
        "{out}"
    );
    assert!(out.contains("RESULT: FAILED"), "{out}");
    db.drop_schema().await;
}

/// Signs a checkpoint and keeps its external copy in `dir`, as the signer does.
async fn checkpoint_with_copy(store: &events::store::EventStore, dir: &std::path::Path) -> i64 {
    let info = crate::support::checkpoint(store)
        .await
        .expect("a checkpoint");
    events::anchor::write(dir, &events::anchor::ExternalCheckpoint::from_info(&info)).unwrap();
    info.up_to_position
}

/// A fresh schema, its store, a checkpoint directory and a ledger driver.
async fn anchored() -> (
    events::testing::TestDb,
    events::store::EventStore,
    std::path::PathBuf,
    events::testing::Ledger,
) {
    let db = events::testing::TestDb::new().await;
    let store = db.store();
    let ledger = events::testing::Ledger::new(store.clone());
    (db, store, crate::support::tmp_path("checkpoints"), ledger)
}

#[tokio::test]
async fn a_consistent_rewrite_with_deleted_checkpoints_is_named_by_the_external_copy() {
    use crate::support::small_history;
    let (db, store, dir, ledger_driver) = anchored().await;
    let small = small_history(&ledger_driver).await;
    checkpoint_with_copy(&store, &dir).await;
    small_history(&ledger_driver).await;
    checkpoint_with_copy(&store, &dir).await;

    // A database writer gives the first license 50 seats and re-chains its
    // stream so that every per-stream check passes...
    let stream = small.license.stream_name();
    let events = store.read_stream(&stream, 0, 1000).await.unwrap();
    let mut prev = events[0].prev_hash.clone();
    for (i, event) in events.iter().enumerate() {
        let mut changed = event.clone();
        if i == 0 {
            changed.data["seats"] = serde_json::json!(50);
        }
        changed.prev_hash = prev.clone();
        let hash = changed.canonical().chain_hash(&changed.prev_hash).to_vec();
        sqlx::query("UPDATE events SET data = $1, prev_hash = $2, hash = $3 WHERE position = $4")
            .bind(&changed.data)
            .bind(&changed.prev_hash)
            .bind(&hash)
            .bind(event.position)
            .execute(&db.pool)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE streams SET last_hash = $1 WHERE stream_id = $2")
        .bind(&prev)
        .bind(&stream)
        .execute(&db.pool)
        .await
        .unwrap();
    // ...and deletes the signed checkpoints that would give it away.
    for sql in [
        "DELETE FROM events WHERE stream_id = 'checkpoints'",
        "DELETE FROM streams WHERE stream_id = 'checkpoints'",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }

    let key = crate::support::signer().1.to_str().unwrap().to_owned();
    let (code, out, _) = ledger(&db, &["verify", "--key", &key]);
    assert_eq!(code, 1, "no checkpoint left is a failure: {out}");
    assert!(out.contains("per-stream hash chains: intact"), "{out}");
    assert!(out.contains("CHECKPOINTS MISSING"), "{out}");

    let dir_arg = dir.to_str().unwrap();
    let (code, out, _) = ledger(&db, &["verify", "--key", &key, "--checkpoint-dir", dir_arg]);
    assert_eq!(code, 1, "{out}");
    let first = events[0].position;
    assert!(
        out.contains(&format!(
            "FIRST DIVERGENT POSITION: {first} (now stream {stream} version 0): the event there is not the one signed"
        )),
        "{out}"
    );
    assert!(
        out.contains("external checkpoints: 2 (0 valid and present in the log)"),
        "{out}"
    );
    assert!(out.contains("MISSING FROM THE LOG"), "{out}");
    assert!(out.contains("HEAD MISMATCH"), "{out}");
    db.drop_schema().await;
}

#[tokio::test]
async fn a_stale_checkpoint_fails_and_an_external_copy_of_a_clean_log_passes() {
    use crate::support::small_history;
    let (db, store, dir, ledger_driver) = anchored().await;
    small_history(&ledger_driver).await;
    let up_to = checkpoint_with_copy(&store, &dir).await;
    let key = crate::support::signer().1.to_str().unwrap().to_owned();
    let dir_arg = dir.to_str().unwrap();
    let (code, out, _) = ledger(&db, &["verify", "--key", &key, "--checkpoint-dir", dir_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("external checkpoints: 1 (1 valid and present in the log)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "proven by a signed checkpoint up to position {up_to}"
        )),
        "{out}"
    );

    // Events keep coming, no checkpoint covers them: past the bound, a failure.
    small_history(&ledger_driver).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (code, out, _) = ledger(&db, &["verify", "--key", &key, "--max-checkpoint-lag", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CHECKPOINTS STALE"), "{out}");
    let (code, out, _) = ledger(&db, &["verify", "--key", &key]);
    assert_eq!(code, 0, "within the default bound: {out}");
    db.drop_schema().await;
}
