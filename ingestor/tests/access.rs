//! Access control: `API_KEYS` guard the write endpoints (401), `ADMIN_API_KEY` guards `DELETE /reset` (403
//! while unset, 401 for any other key), read-only endpoints other than `GET /messages` stay open, and no key
//! reaches `--help` or the logs.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, assert_unauthorized, message, pending_len, spawn_app, with_admin_key};
use ingestor::auth::parse_api_keys;
use serde_json::Value;
use testkit::TestEnv;

const WRITE_KEYS: &str = "write-key-one,write-key-two";

/// The three write endpoints with a valid body each, and the status of success.
fn writes() -> [(&'static str, String, u16); 3] {
    [
        ("/messages", message(1, 1, "guarded"), 201),
        (
            "/messages/batch",
            format!("[{}, {}]", message(1, 1, "a"), message(2, 2, "b")),
            201,
        ),
        ("/simulate", r#"{"count": 3}"#.to_owned(), 202),
    ]
}

/// The 401 of a request without a key listed in API_KEYS, which names API_KEYS.
async fn assert_unlisted_key(response: reqwest::Response, what: &str) {
    let body = assert_unauthorized(response, what).await;
    assert!(
        body["message"].as_str().unwrap().contains("API_KEYS"),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn with_api_keys_set_writes_need_a_listed_bearer_key_and_refusals_queue_nothing() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.api_keys = parse_api_keys(WRITE_KEYS).unwrap();
    })
    .await;

    for (path, body, _) in writes() {
        let bad_credentials = [
            vec![],
            vec![("authorization", "Bearer wrong-key")],
            vec![("authorization", "Bearer write-key-on")],
            vec![("authorization", "Basic d3JpdGUta2V5LW9uZQ==")],
            vec![("authorization", "write-key-one")],
        ];
        for headers in bad_credentials {
            let response = app.post_json_with(path, body.clone(), &headers).await;
            assert_unlisted_key(response, &format!("{path} {headers:?}")).await;
        }
        // Refused before the body is looked at: no key and a bad body is still a 401, not a 415.
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "text/plain")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_unlisted_key(response, &format!("{path} with a bad body")).await;
    }
    assert_eq!(
        pending_len(&env).await,
        0,
        "no refused request queued anything"
    );

    // Either listed key works, the scheme in any case.
    let mut queued = 0;
    for (n, (path, body, status)) in writes().into_iter().enumerate() {
        let auth = if n % 2 == 0 {
            "Bearer write-key-one"
        } else {
            "bearer write-key-two"
        };
        let response = app
            .post_json_with(path, body, &[("authorization", auth)])
            .await;
        assert_eq!(response.status(), status, "{path}");
        queued += [1, 2, 3][n];
    }
    assert_eq!(pending_len(&env).await, queued);

    // Reading content needs a key too (ingestor/tests/history.rs tests it fully); the other read-only
    // endpoints stay open.
    let rows = app.get("/messages").await;
    assert_unlisted_key(rows, "GET /messages").await;
    for path in ["/queue/status", "/health", "/metrics", "/openapi.json"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_api_keys_writes_are_open() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    for (path, body, status) in writes() {
        assert_eq!(app.post_json(path, body).await.status(), status, "{path}");
    }
    assert_eq!(pending_len(&env).await, 6);
    app.stop().await;
}

#[tokio::test]
async fn reset_is_refused_with_403_while_admin_api_key_is_unset_and_deletes_nothing() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.api_keys = parse_api_keys(WRITE_KEYS).unwrap();
    })
    .await;
    let queued = app
        .post_json_with(
            "/messages",
            message(1, 1, "keep me"),
            &[("authorization", "Bearer write-key-one")],
        )
        .await;
    assert_eq!(queued.status(), 201);

    for key in [None, Some("write-key-one"), Some(ADMIN_KEY)] {
        let response = app.reset(key).await;
        assert_eq!(response.status(), 403, "{key:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
        let text = body["message"].as_str().unwrap();
        assert!(text.contains("set ADMIN_API_KEY"), "{text}");
    }
    assert_eq!(pending_len(&env).await, 1);
    app.stop().await;
}

#[tokio::test]
async fn reset_needs_exactly_the_admin_key() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |config| {
        config.api_keys = parse_api_keys(WRITE_KEYS).unwrap();
        with_admin_key(config);
    })
    .await;
    let queued = app
        .post_json_with(
            "/simulate",
            r#"{"count": 4}"#,
            &[("authorization", "Bearer write-key-two")],
        )
        .await;
    assert_eq!(queued.status(), 202);

    for key in [None, Some("write-key-one"), Some("test-admin-ke")] {
        let body = assert_unauthorized(app.reset(key).await, &format!("{key:?}")).await;
        assert!(body["message"].as_str().unwrap().contains("ADMIN_API_KEY"));
    }
    assert_eq!(pending_len(&env).await, 4, "refused resets delete nothing");

    assert_eq!(app.reset(Some(ADMIN_KEY)).await.status(), 200);
    assert_eq!(pending_len(&env).await, 0);
    // The admin key is not a write key.
    let response = app
        .post_json_with(
            "/messages",
            message(1, 1, "x"),
            &[("authorization", &format!("Bearer {ADMIN_KEY}"))],
        )
        .await;
    assert_unlisted_key(response, "admin key on a write endpoint").await;
    app.stop().await;
}

const WRITE_SECRET: &str = "w-7f3a9c1e5b";
const ADMIN_SECRET: &str = "a-2d8e6b4f0c";

/// The binary with both keys in its environment (and nothing else of ours inherited).
fn ingestor_command(env: &TestEnv) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ingestor"));
    command
        .env_clear()
        .env("API_KEYS", format!("{WRITE_SECRET},second-{WRITE_SECRET}"))
        .env("ADMIN_API_KEY", ADMIN_SECRET)
        .env("DATABASE_URL", &env.database_url)
        .env("REDIS_URL", &env.redis_url)
        .env("REDIS_KEY_PREFIX", &env.prefix)
        .env("INGESTOR_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn assert_no_secret(text: &str, what: &str) {
    for secret in [WRITE_SECRET, ADMIN_SECRET] {
        assert!(!text.contains(secret), "{what} shows a key:\n{text}");
    }
}

#[tokio::test]
async fn help_documents_the_key_variables_without_showing_their_values() {
    let env = TestEnv::new().await;
    let output = ingestor_command(&env).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for variable in ["API_KEYS", "ADMIN_API_KEY", "MAX_QUEUE_DEPTH"] {
        assert!(
            help.contains(&format!("env: {variable}")),
            "{variable}:\n{help}"
        );
    }
    assert_no_secret(&help, "--help");
}

#[tokio::test]
async fn an_unusable_key_stops_the_service_naming_its_position_not_its_value() {
    let env = TestEnv::new().await;
    let output = ingestor_command(&env)
        .env(
            "API_KEYS",
            format!("{WRITE_SECRET},{ADMIN_SECRET} with spaces"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("API_KEYS: key #2"), "{stderr}");
    assert_no_secret(&stderr, "the start-up error");
    assert_no_secret(&String::from_utf8_lossy(&output.stdout), "stdout");
}

#[tokio::test]
async fn keys_never_appear_in_the_logs_even_at_debug_level() {
    let env = TestEnv::new().await;
    let mut child = ingestor_command(&env)
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .spawn()
        .unwrap();
    // A thread reads the whole log; its lines come here, to find the listening address.
    let stdout = child.stdout.take().unwrap();
    let (lines, log_lines) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = log_lines.recv_timeout(left) else {
            panic!("no listening line within 20 s:\n{log}");
        };
        log.push_str(&line);
        log.push('\n');
        if let Ok(entry) = serde_json::from_str::<Value>(&line)
            && entry["message"] == "ingestor listening"
        {
            break entry["addr"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let attempts = [
        ("/messages", WRITE_SECRET.to_owned(), 201),
        ("/messages", format!("{WRITE_SECRET}x"), 401),
        ("/messages", ADMIN_SECRET.to_owned(), 401),
    ];
    for (path, key, status) in attempts {
        let response = client
            .post(url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(message(1, 1, "log me not"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    let reset = client
        .delete(url("/reset"))
        .bearer_auth(format!("{ADMIN_SECRET}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 401);
    let reset = client
        .delete(url("/reset"))
        .bearer_auth(ADMIN_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);

    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let status = wait_with_timeout(&mut child, Duration::from_secs(10));
    reader.join().unwrap();
    log.extend(log_lines.try_iter().map(|line| line + "\n"));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status}:\n{stderr}");
    assert!(log.contains("access control and backpressure"), "{log}");
    assert_no_secret(&log, "the log");
    assert_no_secret(&stderr, "stderr");
}

/// Waits for `child` to exit, killing it after `within`.
fn wait_with_timeout(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    panic!("the ingestor did not exit within {within:?} of SIGTERM");
}
