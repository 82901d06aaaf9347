//! The real `batcher` binary, started with a `DATABASE_URL` it cannot use, names the problem on stderr and
//! exits, without printing the password in any of the forms libpq accepts.

use std::time::Duration;

use tokio::process::Command;

/// A password no other part of the output can contain by chance.
const PASSWORD: &str = "hunter2-Secret";

/// Runs the binary with `database_url` (Redis never reached: it fails before) and returns its stderr,
/// asserting that it exits with a failure within 20 s.
async fn stderr_of_batcher_with(database_url: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_batcher"))
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("BATCHER_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .expect("the batcher exits within 20 s")
        .expect("the batcher binary runs");
    assert!(!output.status.success(), "{:?}", output.status);
    let mut printed = String::from_utf8_lossy(&output.stderr).into_owned();
    printed.push_str(&String::from_utf8_lossy(&output.stdout));
    printed
}

/// A loopback port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn start_up_errors_never_print_the_database_password() {
    let port = dead_port();
    let cases = [
        // Key-value form, PostgreSQL unreachable.
        (
            format!(
                "host=127.0.0.1 port={port} user=postgres password={PASSWORD} connect_timeout=2"
            ),
            "password=***",
        ),
        // Key-value form with a quoted password, PostgreSQL unreachable.
        (
            format!("host=127.0.0.1 port={port} password='{PASSWORD} x' dbname=ingest"),
            "password=***",
        ),
        // Key-value form that does not parse.
        (
            format!("host=127.0.0.1 port=not-a-port password={PASSWORD}"),
            "password=***",
        ),
        // URL form with the password in the query.
        (
            format!("postgres://postgres@127.0.0.1:{port}/ingest?password={PASSWORD}"),
            "password=***",
        ),
        // URL form with the password in the userinfo.
        (
            format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/ingest"),
            "postgres:***@",
        ),
    ];
    for (database_url, hidden) in cases {
        let printed = stderr_of_batcher_with(&database_url).await;
        assert!(
            !printed.contains("hunter2"),
            "the password was printed for {database_url:?}:\n{printed}"
        );
        assert!(
            printed.contains(hidden),
            "the error does not show the redacted DATABASE_URL ({hidden}) for {database_url:?}:\n{printed}"
        );
    }
}
