//! Every kind of bad input gets its exact status, `error` code and `field`, in the API's JSON shape, and
//! nothing reaches Redis.

mod common;

use common::{message, pending_len, spawn_app};
use serde_json::Value;
use testkit::TestEnv;

/// One bad request and what must come back.
struct Case {
    what: String,
    path: &'static str,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    error: &'static str,
    field: Option<&'static str>,
}

fn case(
    what: &'static str,
    path: &'static str,
    body: impl Into<String>,
    status: u16,
    error: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        what: what.into(),
        path,
        content_type: Some("application/json"),
        body: body.into(),
        status,
        error,
        field,
    }
}

fn cases() -> Vec<Case> {
    let m = "/messages";
    let invalid = |what, body: &str, field| case(what, m, body, 422, "invalid_field", Some(field));
    let mut cases = vec![
        // 400: not JSON at all.
        case(
            "syntax error",
            m,
            r#"{"user_id": 1,"#,
            400,
            "malformed_json",
            None,
        ),
        case("empty body", m, "", 400, "malformed_json", None),
        case(
            "trailing garbage",
            m,
            format!("{} x", message(1, 1, "a")),
            400,
            "malformed_json",
            None,
        ),
        case(
            "missing fields and garbage",
            m,
            "{} x",
            400,
            "malformed_json",
            None,
        ),
        // 422: JSON of the wrong shape, naming the field.
        invalid(
            "missing user_id",
            r#"{"channel_id": 1, "content": "a"}"#,
            "user_id",
        ),
        invalid(
            "missing content",
            r#"{"user_id": 1, "channel_id": 1}"#,
            "content",
        ),
        invalid("user_id zero", &message(0, 1, "a"), "user_id"),
        invalid("user_id negative", &message(-3, 1, "a"), "user_id"),
        invalid("channel_id zero", &message(1, 0, "a"), "channel_id"),
        invalid("content empty", &message(1, 1, ""), "content"),
        invalid("content blank", &message(1, 1, " \t\n "), "content"),
        invalid("content with NUL", &message(1, 1, "a\0b"), "content"),
        invalid(
            "content of 2001 characters",
            &message(1, 1, &"x".repeat(2001)),
            "content",
        ),
        // /simulate.
        case(
            "count zero",
            "/simulate",
            r#"{"count": 0}"#,
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "count negative",
            "/simulate",
            r#"{"count": -1}"#,
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "count over max",
            "/simulate",
            r#"{"count": 1000001}"#,
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "count string",
            "/simulate",
            r#"{"count": "5"}"#,
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "count missing",
            "/simulate",
            "{}",
            422,
            "invalid_field",
            Some("count"),
        ),
        case(
            "simulate not JSON",
            "/simulate",
            "count=5",
            400,
            "malformed_json",
            None,
        ),
        // /messages/batch.
        case(
            "empty batch",
            "/messages/batch",
            "[]",
            422,
            "invalid_field",
            None,
        ),
        case(
            "batch not an array",
            "/messages/batch",
            message(1, 1, "a"),
            422,
            "invalid_field",
            None,
        ),
        case(
            "batch broken",
            "/messages/batch",
            "[{",
            400,
            "malformed_json",
            None,
        ),
        case(
            "batch item mistyped",
            "/messages/batch",
            format!(
                "[{}, {{\"user_id\": 1, \"channel_id\": \"x\", \"content\": \"a\"}}]",
                message(1, 1, "a")
            ),
            422,
            "invalid_field",
            Some("[1].channel_id"),
        ),
        // 413: over the stated limits (64 KiB; 32 MiB for a batch).
        case(
            "body over 64 KiB",
            m,
            message(1, 1, &"x".repeat(64 * 1024)),
            413,
            "payload_too_large",
            None,
        ),
        case(
            "simulate over 64 KiB",
            "/simulate",
            format!(r#"{{"count": 1, "pad": "{}"}}"#, "x".repeat(70_000)),
            413,
            "payload_too_large",
            None,
        ),
        case(
            "batch over 32 MiB",
            "/messages/batch",
            format!(
                "[{}]",
                vec![message(1, 1, &"x".repeat(1000)); 33_000].join(",")
            ),
            413,
            "payload_too_large",
            None,
        ),
    ];
    // 422: one field of the wrong type or out of range, in an otherwise valid message.
    for (field, value) in [
        ("user_id", r#""1""#),
        ("user_id", "1.5"),
        ("user_id", "null"),
        ("user_id", "9223372036854775808"),
        ("channel_id", "true"),
        ("channel_id", "99999999999999999999999"),
        ("content", "5"),
    ] {
        // The text as written: `99999999999999999999999` must reach the API, not a float parsed from it.
        let or = |name, valid| if name == field { value } else { valid };
        let body = format!(
            r#"{{"user_id": {}, "channel_id": {}, "content": {}}}"#,
            or("user_id", "1"),
            or("channel_id", "1"),
            or("content", r#""a""#)
        );
        cases.push(Case {
            what: format!("{field} = {value}"),
            ..case("", m, body, 422, "invalid_field", Some(field))
        });
    }
    // 415: missing or wrong content type.
    for (what, content_type) in [
        ("no content type", None),
        ("text/plain", Some("text/plain")),
        ("form", Some("application/x-www-form-urlencoded")),
    ] {
        for path in [m, "/messages/batch", "/simulate"] {
            cases.push(Case {
                what: what.into(),
                path,
                content_type,
                body: message(1, 1, "a"),
                status: 415,
                error: "unsupported_media_type",
                field: None,
            });
        }
    }
    cases
}

#[tokio::test]
async fn every_bad_input_is_refused_with_its_status_code_and_field_and_queues_nothing() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let mut failures = Vec::new();
    for case in cases() {
        let mut request = app.client.post(app.url(case.path)).body(case.body.clone());
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let is_json = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let got = (status, body["error"].as_str(), body["field"].as_str());
        let want = (case.status, Some(case.error), case.field);
        if got != want || !is_json || !body["message"].is_string() {
            failures.push(format!(
                "{} {}: got {got:?} {body}, want {want:?}",
                case.path, case.what
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(pending_len(&env).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_bad_limits_answer_json_errors() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let get = |path: &str| app.client.get(app.url(path)).send();
    let checks = [
        (get("/nope").await.unwrap(), 404, "not_found", None),
        (
            get("/simulate").await.unwrap(),
            405,
            "method_not_allowed",
            None,
        ),
        (
            app.client.put(app.url("/messages")).send().await.unwrap(),
            405,
            "method_not_allowed",
            None,
        ),
        (
            get("/messages?limit=0").await.unwrap(),
            422,
            "invalid_field",
            Some("limit"),
        ),
        (
            get("/messages?limit=1001").await.unwrap(),
            422,
            "invalid_field",
            Some("limit"),
        ),
        (
            get("/messages?limit=abc").await.unwrap(),
            422,
            "invalid_field",
            Some("limit"),
        ),
    ];
    for (response, status, error, field) in checks {
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), status, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["error"].as_str(), body["field"].as_str()),
            (Some(error), field),
            "{url}"
        );
    }
    app.stop().await;
}
