//! `/metrics` counts accepted messages exactly (single, batch and simulated) and rejections by reason.
//!
//! A test binary of its own: the recorder is process-global, and tests in one binary run in parallel.

mod common;

use common::{message, spawn_app};
use testkit::TestEnv;

/// The value of the sample line starting with `series ` (name plus labels), 0 if absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_every_accepted_message_and_each_rejection() {
    let env = TestEnv::new().await;
    let app = spawn_app(&env, |_| {}).await;
    let scrape = || async {
        let response = app.get("/metrics").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        response.text().await.unwrap()
    };
    let before = scrape().await;

    for n in 0..3 {
        assert_eq!(
            app.post_json("/messages", message(1, 1, &format!("m{n}")))
                .await
                .status(),
            201
        );
    }
    let batch = format!("[{}]", vec![message(1, 1, "b"); 4].join(","));
    assert_eq!(app.post_json("/messages/batch", batch).await.status(), 201);
    assert_eq!(
        app.post_json("/simulate", r#"{"count": 5}"#).await.status(),
        202
    );
    assert_eq!(
        app.post_json("/messages", message(0, 1, "bad"))
            .await
            .status(),
        422
    );
    assert_eq!(app.post_json("/messages", "{").await.status(), 400);
    let unknown = app.get("/no-such-route").await;
    assert_eq!(unknown.status(), 404);
    let wrong_method = app.client.put(app.url("/messages")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);

    let after = scrape().await;
    let accepted = "ingestor_messages_accepted_total";
    assert_eq!(
        sample(&after, accepted) - sample(&before, accepted),
        12.0,
        "{after}"
    );
    let invalid = r#"ingestor_messages_rejected_total{reason="invalid_field"}"#;
    assert_eq!(sample(&after, invalid) - sample(&before, invalid), 1.0);
    let malformed = r#"ingestor_messages_rejected_total{reason="malformed_json"}"#;
    assert_eq!(sample(&after, malformed) - sample(&before, malformed), 1.0);
    // Requests by route template, or `unmatched`, and status.
    for (series, count) in [
        (r#"{method="POST",path="/messages",status="201"}"#, 3.0),
        (r#"{method="POST",path="/messages",status="422"}"#, 1.0),
        (
            r#"{method="POST",path="/messages/batch",status="201"}"#,
            1.0,
        ),
        (r#"{method="GET",path="unmatched",status="404"}"#, 1.0),
        (r#"{method="PUT",path="/messages",status="405"}"#, 1.0),
    ] {
        let series = format!("ingestor_request_duration_seconds_count{series}");
        assert_eq!(
            sample(&after, &series) - sample(&before, &series),
            count,
            "{series}\n{after}"
        );
    }
    app.stop().await;
}
