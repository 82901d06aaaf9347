//! The `stats_update` numbers: one task reads them every 500 ms for every client and publishes them on a
//! watch channel, so the cost does not grow with the number of clients.

use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use pipeline::{
    events::{ServerEvent, Stats},
    keys::Keys,
    shutdown::Ticks,
    streak::FailureStreak,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::rate::RateWindow;

/// How often stats are computed and sent (the seed's 500 ms).
const INTERVAL: Duration = Duration::from_millis(500);
/// `messages_per_second` is measured over this much recent history.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Longest wait for one read; a hung Redis or PostgreSQL must not stall the updates.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// The running totals of `pipeline_totals`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) messages: u64,
    pub(crate) batches: u64,
    pub(crate) dead_letters: u64,
}

/// The stats derived from the raw numbers (pure): averages, and how full the next batch is, rounded as the
/// original rounds them (its dashboard prints them as they come: an unrounded rate reads "90.93943255314231/s").
pub(crate) fn derive(
    totals: Totals,
    queue_depth: u64,
    flush_threshold: u64,
    messages_per_second: f64,
) -> Stats {
    let progress = pipeline::events::BatchProgress::of(queue_depth, flush_threshold);
    Stats {
        total_messages: totals.messages,
        queue_depth,
        messages_per_second: whole(messages_per_second),
        total_batches: totals.batches,
        avg_batch_size: if totals.batches == 0 {
            0.0
        } else {
            one_decimal(totals.messages as f64 / totals.batches as f64)
        },
        batch_threshold: progress.threshold,
        batch_progress: progress.progress,
        batch_progress_percent: one_decimal(progress.percent()),
        batches_ready: progress.ready,
        dead_letters: totals.dead_letters,
    }
}

/// A rate as a whole number: rounded to the nearest, never negative (the original truncates; rounding is
/// closer to the measured rate, and either is a whole number to its clients).
pub(crate) fn whole(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    }
}

/// Rounded to 1 decimal, as Python's `round(x, 1)` shows it (`49.36` → `49.4`, `74.0` → `74.0`).
pub(crate) fn one_decimal(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// A `stats_update`, with its JSON rendered once for all clients.
#[derive(Debug, Clone)]
pub(crate) struct StatsFrame {
    pub(crate) json: Utf8Bytes,
}

impl StatsFrame {
    pub(crate) fn new(stats: Stats) -> Self {
        let json = serde_json::to_string(&ServerEvent::StatsUpdate(stats))
            .expect("stats are plain numbers and serialize");
        Self { json: json.into() }
    }
}

/// Where the raw numbers come from.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) redis: pipeline::connection::RedisConn,
    pub(crate) postgres: deadpool_postgres::Pool,
    pub(crate) keys: Keys,
    /// `QUEUE_SHARDS`.
    pub(crate) queue_shards: u32,
    /// `BATCH_SIZE`, the flush threshold.
    pub(crate) flush_threshold: u64,
}

/// Why one read failed (logged, counted, and the last good value kept).
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("no connection: {0}")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("timed out after {READ_TIMEOUT:?}")]
    Timeout,
}

impl Source {
    async fn queue_depth(&self) -> Result<u64, ReadError> {
        let read = async {
            let mut conn = self.redis.clone();
            Ok(pipeline::depth::queue_depth(&mut conn, &self.keys, self.queue_shards).await?)
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| ReadError::Timeout)?
    }

    async fn totals(&self) -> Result<Totals, ReadError> {
        let read = async {
            let client = self.postgres.get().await?;
            let row = client.query_opt(pipeline::schema::TOTALS, &[]).await?;
            let count = |i: usize| {
                row.as_ref()
                    .map_or(0, |row| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0))
            };
            Ok(Totals {
                messages: count(0),
                batches: count(1),
                dead_letters: count(2),
            })
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| ReadError::Timeout)?
    }
}

/// Whether a source is failing: log and count the first failure of a streak and the recovery, not every tick.
#[derive(Debug)]
struct Streak {
    source: &'static str,
    streak: FailureStreak,
}

impl Streak {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            streak: FailureStreak::default(),
        }
    }

    fn observe<T>(&mut self, result: Result<T, ReadError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.streak.succeeded() {
                    tracing::info!(source = self.source, "stats source recovered");
                }
                Some(value)
            }
            Err(error) => {
                if self.streak.failed() {
                    tracing::warn!(source = self.source, %error, "cannot read stats; keeping the last values");
                    metrics::counter!("notifier_stats_read_failures_total", "source" => self.source).increment(1);
                }
                None
            }
        }
    }
}

/// Computes and publishes the stats every [`INTERVAL`] until `shutdown` is cancelled. Never fails: when a source
/// is down the last values it gave are kept.
pub(crate) async fn run(
    source: Source,
    stats: watch::Sender<StatsFrame>,
    shutdown: CancellationToken,
) {
    let mut ticks = Ticks::every(INTERVAL);
    let mut rate = RateWindow::new(RATE_WINDOW);
    let (mut totals, mut queue_depth, mut messages_per_second) = (Totals::default(), 0, 0.0);
    let (mut redis_streak, mut postgres_streak) = (Streak::new("redis"), Streak::new("postgres"));
    while ticks.next(&shutdown).await {
        let (depth, read_totals) = tokio::join!(source.queue_depth(), source.totals());
        if let Some(depth) = redis_streak.observe(depth) {
            queue_depth = depth;
            metrics::gauge!(pipeline::telemetry::QUEUE_DEPTH.name()).set(depth as f64);
        }
        if let Some(read) = postgres_streak.observe(read_totals) {
            totals = read;
            messages_per_second = rate.record(Instant::now(), totals.messages);
        }
        // Sent every tick even when nothing changed: clients expect a stats_update every 500 ms.
        stats.send_replace(StatsFrame::new(derive(
            totals,
            queue_depth,
            source.flush_threshold,
            messages_per_second,
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_whole_numbers_and_averages_have_one_decimal() {
        assert_eq!(whole(90.939_432_553_142_31), 91);
        assert_eq!(whole(90.4), 90);
        assert_eq!(whole(0.0), 0);
        assert_eq!(whole(-3.0), 0);
        assert_eq!(whole(f64::NAN), 0);
        assert_eq!(one_decimal(49.36), 49.4);
        assert_eq!(one_decimal(33.333_333), 33.3);
        assert_eq!(one_decimal(74.0), 74.0);
    }

    #[test]
    fn stats_are_sent_rounded_as_the_original_sends_them() {
        let totals = Totals {
            messages: 1234,
            batches: 25,
            dead_letters: 0,
        };
        // 1234 / 25 = 49.36; 7 of 30 is 23.333…%.
        let stats = derive(totals, 37, 30, 90.939_432_553_142_31);
        let json: serde_json::Value =
            serde_json::from_str(StatsFrame::new(stats).json.as_str()).unwrap();
        assert_eq!(json["messages_per_second"].to_string(), "91");
        assert_eq!(json["avg_batch_size"].to_string(), "49.4");
        assert_eq!(json["batch_progress_percent"].to_string(), "23.3");
        assert_eq!(json["batch_progress"], 7);
        assert_eq!(json["batches_ready"], 1);
    }

    #[test]
    fn batch_progress_and_ready_batches_come_from_the_queue_depth() {
        let totals = Totals {
            messages: 120,
            batches: 3,
            dead_letters: 1,
        };
        let stats = derive(totals, 5, 2, 12.5);
        assert_eq!(stats.total_messages, 120);
        assert_eq!(stats.total_batches, 3);
        assert_eq!(stats.avg_batch_size, 40.0);
        assert_eq!(stats.queue_depth, 5);
        assert_eq!(stats.batch_threshold, 2);
        assert_eq!(stats.batch_progress, 1);
        assert_eq!(stats.batch_progress_percent, 50.0);
        assert_eq!(stats.batches_ready, 2);
        assert_eq!(stats.messages_per_second, 13);
        assert_eq!(stats.dead_letters, 1);
    }

    #[test]
    fn no_batches_means_an_average_of_zero() {
        let stats = derive(Totals::default(), 0, 50, 0.0);
        assert_eq!(stats.avg_batch_size, 0.0);
        assert_eq!(stats.batch_progress, 0);
        assert_eq!(stats.batch_progress_percent, 0.0);
        assert_eq!(stats.batches_ready, 0);
        assert_eq!(stats.batch_threshold, 50);
    }

    #[test]
    fn a_partly_filled_batch_shows_its_percentage() {
        let stats = derive(Totals::default(), 137, 50, 0.0);
        assert_eq!((stats.batches_ready, stats.batch_progress), (2, 37));
        assert_eq!(stats.batch_progress_percent, 74.0);
    }

    #[test]
    fn the_frame_is_a_seed_compatible_stats_update() {
        let frame = StatsFrame::new(derive(Totals::default(), 3, 50, 0.0));
        let value: serde_json::Value = serde_json::from_str(frame.json.as_str()).unwrap();
        testkit::seed::assert_stats_update(&value);
    }
}
