//! `GET /channels/{channel_id}/messages` against real PostgreSQL: pages by offset in both directions, every
//! bad input a 422 naming its field, 503 while PostgreSQL is gone, and a key needed when API_KEYS is set (also
//! for `GET /messages`, which returns content too).

mod common;

use chrono::{DateTime, Utc};
use common::{assert_retry_later, assert_unauthorized, spawn_app};
use ingestor::auth::parse_api_keys;
use pipeline::api::ChannelMessage;
use serde_json::Value;
use testkit::TestEnv;
use uuid::Uuid;

/// Inserts `n` messages into `channel`, offsets 1..=n, as the batcher would have; returns them.
async fn insert(env: &TestEnv, channel: i64, n: i64) -> Vec<ChannelMessage> {
    let db = env.db().await;
    let created_at: DateTime<Utc> = "2024-01-02T03:04:05.123456Z".parse().unwrap();
    let mut inserted = Vec::new();
    for offset in 1..=n {
        let message_id = Uuid::now_v7();
        let content = format!("channel {channel} message {offset}");
        let inserted_at: DateTime<Utc> = db
            .query_one(
                "INSERT INTO messages (tracking_id, user_id, channel_id, content, created_at, channel_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING inserted_at",
                &[&message_id, &(offset + 1000), &channel, &content, &created_at, &offset],
            )
            .await
            .unwrap()
            .get(0);
        inserted.push(ChannelMessage {
            channel_id: channel,
            offset,
            message_id,
            user_id: offset + 1000,
            content,
            created_at,
            inserted_at,
        });
    }
    inserted
}

fn offsets(page: &[ChannelMessage]) -> Vec<i64> {
    page.iter().map(|message| message.offset).collect()
}

#[tokio::test]
async fn pages_after_and_before_an_offset_in_their_order() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let seven = insert(&env, 7, 250).await;
    let eight = insert(&env, 8, 5).await;
    let get = |path: String| {
        let (client, url) = (app.client.clone(), app.url(&path));
        async move {
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            response.json::<Vec<ChannelMessage>>().await.unwrap()
        }
    };

    // The default: from the start, 100, oldest first; every field as stored.
    assert_eq!(get("/channels/7/messages".into()).await, seven[..100]);
    assert_eq!(
        get("/channels/7/messages?after=0".into()).await,
        seven[..100]
    );
    assert_eq!(
        get("/channels/7/messages?after=100&limit=1000".into()).await,
        seven[100..]
    );
    assert_eq!(
        offsets(&get("/channels/7/messages?after=41&limit=3".into()).await),
        [42, 43, 44]
    );
    assert_eq!(get("/channels/7/messages?after=250".into()).await, []);
    assert_eq!(get("/channels/7/messages?after=999999".into()).await, []);

    // Scrolling back: newest first.
    assert_eq!(
        offsets(&get("/channels/7/messages?before=11&limit=3".into()).await),
        [10, 9, 8]
    );
    let back = get("/channels/7/messages?before=251&limit=1000".into()).await;
    let mut newest_first = seven.clone();
    newest_first.reverse();
    assert_eq!(back, newest_first);
    assert_eq!(
        offsets(&get("/channels/7/messages?before=300".into()).await),
        (151..=250).rev().collect::<Vec<_>>()
    );
    assert_eq!(get("/channels/7/messages?before=1".into()).await, []);

    // Channels do not mix; an unknown channel is an empty page.
    assert_eq!(get("/channels/8/messages?limit=1000".into()).await, eight);
    assert_eq!(get("/channels/9/messages".into()).await, []);

    // The JSON names of the message object.
    let raw: Value = app.get_json("/channels/8/messages?limit=1").await;
    let mut keys: Vec<&str> = raw[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel_id",
            "content",
            "created_at",
            "inserted_at",
            "message_id",
            "offset",
            "user_id"
        ]
    );
    assert_eq!(raw[0]["message_id"], eight[0].message_id.to_string());
    app.stop().await;
}

#[tokio::test]
async fn every_bad_input_is_a_422_naming_its_field() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let cases = [
        ("/channels/0/messages", "channel_id"),
        ("/channels/-1/messages", "channel_id"),
        ("/channels/abc/messages", "channel_id"),
        ("/channels/%2B5/messages", "channel_id"),
        ("/channels/9223372036854775808/messages", "channel_id"),
        ("/channels/1/messages?after=-1", "after"),
        ("/channels/1/messages?after=x", "after"),
        ("/channels/1/messages?after=", "after"),
        ("/channels/1/messages?after=1.5", "after"),
        ("/channels/1/messages?before=0", "before"),
        ("/channels/1/messages?before=-3", "before"),
        ("/channels/1/messages?before=z", "before"),
        ("/channels/1/messages?after=1&before=5", "before"),
        ("/channels/1/messages?limit=0", "limit"),
        ("/channels/1/messages?limit=1001", "limit"),
        ("/channels/1/messages?limit=ten", "limit"),
        ("/channels/1/messages?limit=1&limit=2", "query"),
    ];
    for (path, field) in cases {
        let response = app.get(path).await;
        assert_eq!(response.status(), 422, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_field", "{path}");
        assert_eq!(body["field"], field, "{path}: {body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{path}: {body}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn postgres_gone_gives_503() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let url = app.url("/channels/1/messages");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    env.drop_database().await;

    let response = app.client.get(&url).send().await.unwrap();
    assert_retry_later(response, 503, "database_unavailable", "after the drop").await;
}

#[tokio::test]
async fn with_api_keys_set_reading_needs_a_key_as_bearer_or_access_token() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.api_keys = parse_api_keys("read-key-one,read/key+two").unwrap();
    })
    .await;
    insert(&env, 3, 2).await;
    for (path, auth) in [
        ("/channels/3/messages", None),
        ("/channels/3/messages", Some("Bearer wrong")),
        ("/channels/3/messages?access_token=wrong", None),
        ("/channels/3/messages?access_token=", None),
        // A wrong header is not saved by a right parameter.
        (
            "/channels/3/messages?access_token=read-key-one",
            Some("Bearer wrong"),
        ),
        // Refused before the query is looked at: a bad query without a key is still a 401.
        ("/channels/0/messages?limit=0", None),
    ] {
        let response = app.get_with_auth(path, auth).await;
        assert_unauthorized(response, &format!("{path} {auth:?}")).await;
    }
    for (path, auth) in [
        ("/channels/3/messages", Some("Bearer read-key-one")),
        ("/channels/3/messages", Some("bearer read/key+two")),
        ("/channels/3/messages?access_token=read-key-one", None),
        (
            "/channels/3/messages?after=1&access_token=read%2Fkey%2Btwo",
            None,
        ),
    ] {
        let response = app.get_with_auth(path, auth).await;
        assert_eq!(response.status(), 200, "{path} {auth:?}");
        let page: Vec<ChannelMessage> = response.json().await.unwrap();
        let expected = if path.contains("after=1") {
            vec![2]
        } else {
            vec![1, 2]
        };
        assert_eq!(offsets(&page), expected, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn with_api_keys_set_listing_the_newest_messages_needs_a_key_too() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.api_keys = parse_api_keys("read-key-one,read/key+two").unwrap();
    })
    .await;
    let inserted = insert(&env, 4, 3).await;
    for (path, auth) in [
        ("/messages", None),
        ("/messages?limit=2", Some("Bearer wrong")),
        ("/messages?access_token=wrong", None),
        ("/messages?access_token=", None),
        ("/messages?access_token=read-key-one", Some("Bearer wrong")),
        // Refused before the query is looked at.
        ("/messages?limit=0", None),
    ] {
        let response = app.get_with_auth(path, auth).await;
        assert_unauthorized(response, &format!("{path} {auth:?}")).await;
    }
    for (path, auth) in [
        ("/messages?limit=2", Some("Bearer read-key-one")),
        ("/messages?limit=2", Some("bearer read/key+two")),
        ("/messages?limit=2&access_token=read-key-one", None),
        ("/messages?access_token=read%2Fkey%2Btwo&limit=2", None),
    ] {
        let response = app.get_with_auth(path, auth).await;
        assert_eq!(response.status(), 200, "{path} {auth:?}");
        let rows: Vec<Value> = response.json().await.unwrap();
        let contents: Vec<&str> = rows
            .iter()
            .map(|row| row["content"].as_str().unwrap())
            .collect();
        assert_eq!(
            contents,
            [&inserted[2].content, &inserted[1].content],
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn without_api_keys_listing_the_newest_messages_is_open() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    insert(&env, 4, 1).await;
    let response = app.get("/messages").await;
    assert_eq!(response.status(), 200);
    let rows: Vec<Value> = response.json().await.unwrap();
    assert_eq!(rows.len(), 1);
    app.stop().await;
}
