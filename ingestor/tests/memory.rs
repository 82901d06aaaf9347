//! Memory bounded whatever the input: the real ingestor binary's peak resident memory (`VmHWM`, which only
//! grows) stays under the README's bounds through the worst bodies and the largest `/simulate`. Memory bounds,
//! not timings: each holds whatever the machine's speed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::TestEnv;

const MIB: u64 = 1024 * 1024;

/// The ingestor binary, killed when dropped.
struct Ingestor {
    child: Child,
    base: String,
}

impl Ingestor {
    fn start(env: &TestEnv, extra: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ingestor"))
            .env_clear()
            .env("DATABASE_URL", &env.database_url)
            .env("REDIS_URL", &env.redis_url)
            .env("REDIS_KEY_PREFIX", &env.prefix)
            .env("INGESTOR_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (found, addr) = std::sync::mpsc::channel::<String>();
        // Reads the log to its end, so the ingestor never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(entry) = serde_json::from_str::<Value>(&line)
                    && entry["message"] == "ingestor listening"
                {
                    let _ = found.send(entry["addr"].as_str().unwrap().to_owned());
                }
            }
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(30))
            .expect("the ingestor logs its address within 30 s");
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// The peak resident memory so far, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .unwrap();
        let kib: u64 = line
            .trim_start_matches("VmHWM:")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }
}

impl Drop for Ingestor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn eight_batch_bodies_of_32_mib_of_zeros_at_once_get_422_and_peak_under_256_mib() {
    let env = TestEnv::new().await;
    let ingestor = Ingestor::start(&env, &[]);
    // `[0,0,…,0]` as long as the limit allows: 16,777,215 items.
    let limit = 32 * MIB as usize;
    let items = (limit - 1) / 2;
    let mut body = Vec::with_capacity(limit);
    body.push(b'[');
    for index in 0..items {
        if index > 0 {
            body.push(b',');
        }
        body.push(b'0');
    }
    // Whitespace after the array is still JSON: the body is exactly the limit.
    body.extend_from_slice(b"] ");
    assert_eq!(body.len(), limit);
    let body = bytes::Bytes::from(body);

    let client = reqwest::Client::new();
    let requests = (0..8).map(|_| {
        client
            .post(format!("{}/messages/batch", ingestor.base))
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(120))
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let peak = ingestor.peak_rss();
    eprintln!("peak RSS after 8 bodies: {} MiB", peak / MIB);
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 422);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            answer["message"],
            "a batch holds 1 to 10000 messages, this one has more"
        );
    }
    assert!(peak < 256 * MIB, "peak RSS {} MiB", peak / MIB);
}

#[tokio::test]
async fn a_simulate_of_a_million_messages_peaks_under_128_mib() {
    let env = TestEnv::new().await;
    let ingestor = Ingestor::start(&env, &[("MAX_QUEUE_DEPTH", "2000000")]);
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{}/simulate", ingestor.base))
        .header("content-type", "application/json")
        .body(r#"{"count": 1000000}"#)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let length = response.content_length().unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as u64, length);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["messages_count"], 1_000_000);
    assert_eq!(answer["tracking_ids"].as_array().unwrap().len(), 1_000_000);
    let peak = ingestor.peak_rss();
    eprintln!("peak RSS after /simulate: {} MiB", peak / MIB);
    assert!(
        peak < 128 * MIB,
        "peak RSS {} MiB (the simulation took {:?})",
        peak / MIB,
        started.elapsed()
    );
}
