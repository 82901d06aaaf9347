//! The offset migration on a real PostgreSQL: a database made by the schema from before channel offsets,
//! holding rows, gets offsets 1..n per channel in `id` order, the heads and the unique index when the
//! current schema is applied; applying it again changes nothing.

use testkit::TestEnv;

/// `init.sql` as it was before channel offsets.
const OLD_SCHEMA: &str = include_str!("fixtures/init_before_offsets.sql");

/// Fills the old schema with `rows` rows over `channels` channels (interleaved, so each chunk holds many
/// channels and a channel spans many chunks), then deletes every 10th row: ids have holes, as in a real table.
async fn old_database_with_rows(env: &TestEnv, rows: i64, channels: i64) {
    let db = env.db().await;
    db.batch_execute(OLD_SCHEMA).await.unwrap();
    db.execute(
        "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) \
         SELECT gen_random_uuid(), 1, (i * 7919) % $2 + 1, 'old ' || i, now() \
         FROM generate_series(1::bigint, $1) AS i",
        &[&rows, &channels],
    )
    .await
    .unwrap();
    db.batch_execute("DELETE FROM messages WHERE id % 10 = 0")
        .await
        .unwrap();
}

/// Rows whose offset is not their rank by `id` in their channel (NULLs included).
async fn misnumbered(env: &TestEnv) -> i64 {
    env.db()
        .await
        .query_one(
            "SELECT count(*) FROM ( \
                 SELECT channel_offset, row_number() OVER (PARTITION BY channel_id ORDER BY id) AS rank \
                 FROM messages) AS ranked \
             WHERE channel_offset IS DISTINCT FROM rank",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Channels whose head is not their row count, or rows' channels with no head.
async fn wrong_heads(env: &TestEnv) -> i64 {
    env.db()
        .await
        .query_one(
            "SELECT count(*) FROM (SELECT channel_id, count(*) AS n FROM messages GROUP BY channel_id) AS c \
             FULL JOIN channel_heads h USING (channel_id) WHERE h.head IS DISTINCT FROM c.n",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn existing_rows_get_offsets_in_id_order_per_channel() {
    let env = TestEnv::new().await;
    // 25,000 rows: three chunks, the last one partial.
    old_database_with_rows(&env, 25_000, 37).await;
    assert_eq!(env.count("messages").await, 22_500);

    env.apply_schema().await;
    assert_eq!(misnumbered(&env).await, 0);
    assert_eq!(wrong_heads(&env).await, 0);
    assert_eq!(env.count("channel_heads").await, 37);
    let db = env.db().await;
    let indexed: bool = db
        .query_one(
            "SELECT indisunique AND indisvalid FROM pg_index \
             WHERE indexrelid = 'messages_channel_offset_key'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(indexed);

    // Applying again (every start) changes nothing.
    let before: Vec<(i64, i64)> = offsets(&db).await;
    env.apply_schema().await;
    assert_eq!(offsets(&db).await, before);
    assert_eq!(wrong_heads(&env).await, 0);

    // A backfill interrupted after the rows up to id 12,345 (their offsets and the heads committed, no index
    // yet) resumes and ends exactly as an uninterrupted one.
    db.batch_execute(
        "DROP INDEX messages_channel_offset_key; \
         UPDATE channel_heads h SET head = c.n \
             FROM (SELECT channel_id, count(*) AS n FROM messages WHERE id <= 12345 GROUP BY channel_id) AS c \
             WHERE h.channel_id = c.channel_id; \
         UPDATE messages SET channel_offset = NULL WHERE id > 12345",
    )
    .await
    .unwrap();
    // Ids 12,346..=25,000 less the multiples of 10.
    assert_eq!(misnumbered(&env).await, 11_389);
    env.apply_schema().await;
    assert_eq!(offsets(&db).await, before);
    assert_eq!(wrong_heads(&env).await, 0);

    // The history query is an ordered scan of the new index that stops after `limit` rows: O(limit).
    db.batch_execute("ANALYZE messages").await.unwrap();
    // Both directions of the ingestor's history query (routes/channel_messages.rs).
    for (query, scan) in [
        (
            "channel_offset > 100 ORDER BY channel_offset",
            "Index Scan using messages_channel_offset_key",
        ),
        (
            "channel_offset < 500 ORDER BY channel_offset DESC",
            "Index Scan Backward using messages_channel_offset_key",
        ),
    ] {
        let explain =
            format!("EXPLAIN SELECT * FROM messages WHERE channel_id = 5 AND {query} LIMIT 50");
        let plan: Vec<String> = env.column(&explain).await;
        assert!(plan.iter().any(|line| line.contains(scan)), "{plan:#?}");
    }
}

#[tokio::test]
async fn an_empty_database_gets_the_index_and_no_heads() {
    let env = TestEnv::with_schema().await;
    env.apply_schema().await;
    assert_eq!(env.count("channel_heads").await, 0);
    let db = env.db().await;
    let exists: bool = db
        .query_one(
            "SELECT to_regclass('messages_channel_offset_key') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(exists);
}

async fn offsets(db: &tokio_postgres::Client) -> Vec<(i64, i64)> {
    db.query("SELECT id, channel_offset FROM messages ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// The migration's duration for 1,000,000 rows over 1,000 channels.
/// `cargo test -p pipeline --test offset_backfill -- --ignored --nocapture migration_time`
#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn migration_time() {
    let env = TestEnv::new().await;
    let db = env.db().await;
    db.batch_execute(OLD_SCHEMA).await.unwrap();
    db.batch_execute(
        "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at) \
         SELECT gen_random_uuid(), 1, (i * 7919) % 1000 + 1, 'a message of a typical length, ' || i, now() \
         FROM generate_series(1::bigint, 1000000) AS i",
    )
    .await
    .unwrap();
    db.batch_execute("VACUUM ANALYZE messages").await.unwrap();
    let started = std::time::Instant::now();
    env.apply_schema().await;
    let elapsed = started.elapsed();
    assert_eq!(misnumbered(&env).await, 0);
    println!("migration_time: 1,000,000 rows in {elapsed:?}");
}
