//! The checkpointer keeps each checkpoint outside the database too, and
//! refuses to sign once the database holds less than that directory (its
//! checkpoint rows were deleted: signing now would vouch for a rewrite).

use licensed::signer::{backend_from_env_config, SignerBackendConfig, SignerConfig};
use licensed::workers::checkpoint::{checkpoint_now, Refused};

#[tokio::test]
async fn checkpoints_are_copied_out_and_deleted_rows_stop_the_signer() {
    let db = events::testing::TestDb::new().await;
    let store = db.store();
    let ledger = events::testing::Ledger::new(store.clone());
    let tenant = events::ids::TenantId::parse("acme").unwrap();
    let product = events::ids::ProductId::parse("cad-pro").unwrap();
    ledger.issue(&tenant, &product, 2, 60).await.unwrap();
    let backend = backend_from_env_config(&SignerConfig {
        backend: SignerBackendConfig::Local {
            path: crate::harness::signing_key_path(),
        },
    })
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("ll-anchor-{}", uuid::Uuid::new_v4().simple()));

    // A checkpoint signed while no directory was configured (or its write failed)...
    let before = checkpoint_now(&store, backend.as_ref(), None)
        .await
        .unwrap()
        .expect("a checkpoint of the new log");
    ledger.issue(&tenant, &product, 1, 60).await.unwrap();
    let info = checkpoint_now(&store, backend.as_ref(), Some(&dir))
        .await
        .unwrap()
        .expect("a checkpoint of the new events");
    // ...is copied out before the next one.
    let copies = events::anchor::read_dir(&dir).unwrap();
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].up_to_position, before.up_to_position);
    assert_eq!(copies[0].chain_head, before.chain_head);
    assert_eq!(copies[0].entries().unwrap().len(), before.segment.len());
    assert_eq!(copies[1].up_to_position, info.up_to_position);
    assert_eq!(copies[1].chain_head, info.chain_head);
    assert_eq!(copies[1].from_position, before.up_to_position);
    // A copy missing below the newest one (lost, or beyond an earlier
    // backfill's batch) is written again too.
    std::fs::remove_file(dir.join(copies[0].file_name())).unwrap();
    ledger.issue(&tenant, &product, 1, 60).await.unwrap();
    let info = checkpoint_now(&store, backend.as_ref(), Some(&dir))
        .await
        .unwrap()
        .expect("a third checkpoint");
    let copies = events::anchor::read_dir(&dir).unwrap();
    let covered: Vec<i64> = copies.iter().map(|c| c.up_to_position).collect();
    assert_eq!(covered.len(), 3, "{covered:?}");
    assert_eq!(covered[0], before.up_to_position);

    for sql in [
        "DELETE FROM events WHERE stream_id = 'checkpoints'",
        "DELETE FROM streams WHERE stream_id = 'checkpoints'",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    let refused = checkpoint_now(&store, backend.as_ref(), Some(&dir)).await;
    match refused {
        Err(Refused::RowsMissing { external, database }) => {
            assert_eq!((external, database), (info.up_to_position, 0));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let checkpoints: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = 'checkpoints'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(checkpoints, 0, "nothing signed");
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop_schema().await;
}
