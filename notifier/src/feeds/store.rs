//! The feeds' PostgreSQL reads: channel heads and ranges of a channel's rows, each served by an index
//! (`channel_heads`' key, `messages (channel_id, channel_offset)`), each bounded in time.

use std::time::Duration;

use pipeline::api::ChannelMessage;

use super::resume::Fetch;

/// Longest one read may take, waiting for a pooled connection included.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The resets counter and the channel's head (NULL if it has no message yet).
const HEAD: &str = "SELECT t.resets, h.head FROM pipeline_totals t \
    LEFT JOIN channel_heads h ON h.channel_id = $1";
/// The resets counter, on every row; with the heads of those channels that have one (else one row of NULLs).
const HEADS: &str = "SELECT t.resets, h.channel_id, h.head FROM pipeline_totals t \
    LEFT JOIN channel_heads h ON h.channel_id = ANY($1)";
const COLUMNS: &str =
    "channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at";
/// One channel's rows after an offset, oldest first (the same scan as the ingestor's history).
const PAGE: &str = "SELECT channel_id, channel_offset, tracking_id, user_id, content, created_at, inserted_at \
    FROM messages WHERE channel_id = $1 AND channel_offset > $2 ORDER BY channel_offset LIMIT $3";

/// A read that failed or took too long.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("no PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL took more than {} s", READ_TIMEOUT.as_secs())]
    Timeout,
}

/// Where subscribed channels stand, read in one snapshot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Heads {
    /// `pipeline_totals.resets`: how many times the data was reset (`DELETE /reset`).
    pub(crate) resets: i64,
    /// `(channel_id, head)` of the channels that have a message.
    pub(crate) heads: Vec<(i64, i64)>,
}

/// Rows the hub reads, and the resets counter of their snapshot (`None` without rows).
#[derive(Debug)]
pub(crate) struct Ranges {
    pub(crate) resets: Option<i64>,
    pub(crate) rows: Vec<ChannelMessage>,
}

/// The feeds' reads, on the notifier's pool.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: deadpool_postgres::Pool,
}

impl Store {
    pub(crate) fn new(pool: deadpool_postgres::Pool) -> Self {
        Self { pool }
    }

    async fn bounded<T>(
        &self,
        read: impl Future<Output = Result<T, ReadError>>,
    ) -> Result<T, ReadError> {
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| ReadError::Timeout)?
    }

    /// The channel's last offset (0 if it has no message yet), and the resets counter of the same snapshot:
    /// `(resets, head)`.
    pub(crate) async fn head(&self, channel_id: i64) -> Result<(i64, i64), ReadError> {
        self.bounded(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(HEAD).await?;
            let row = client.query_one(&statement, &[&channel_id]).await?;
            Ok((row.get(0), row.get::<_, Option<i64>>(1).unwrap_or(0)))
        })
        .await
    }

    /// The heads of these channels (channels without a message are left out), and the resets counter.
    pub(crate) async fn heads(&self, channels: &[i64]) -> Result<Heads, ReadError> {
        metrics::counter!("notifier_feed_queries_total", "query" => "heads").increment(1);
        self.bounded(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(HEADS).await?;
            let rows = client.query(&statement, &[&channels]).await?;
            let mut heads = Heads::default();
            for row in &rows {
                heads.resets = row.get(0);
                if let (Some(channel_id), Some(head)) = (row.get(1), row.get(2)) {
                    heads.heads.push((channel_id, head));
                }
            }
            Ok(heads)
        })
        .await
    }

    /// Up to `limit` rows of one channel after offset `after`, oldest first.
    pub(crate) async fn page(
        &self,
        channel_id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ChannelMessage>, ReadError> {
        metrics::counter!("notifier_feed_queries_total", "query" => "catch_up").increment(1);
        self.bounded(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(PAGE).await?;
            let rows = client
                .query(&statement, &[&channel_id, &after, &limit])
                .await?;
            Ok(rows.iter().map(pipeline::schema::channel_message).collect())
        })
        .await
    }

    /// The rows of every fetch, in one query: by channel, then offset; with the resets counter of the same
    /// snapshot (`None` when there is no row), so rows of a history that started after a reset are known
    /// before they are fanned out.
    pub(crate) async fn ranges(&self, fetches: &[Fetch]) -> Result<Ranges, ReadError> {
        metrics::counter!("notifier_feed_queries_total", "query" => "fan_out").increment(1);
        let channels: Vec<i64> = fetches.iter().map(|f| f.channel_id).collect();
        let afters: Vec<i64> = fetches.iter().map(|f| f.after).collect();
        let uptos: Vec<i64> = fetches.iter().map(|f| f.upto).collect();
        // LATERAL: one index range scan per channel, whatever the planner thinks of the unnest's size.
        let sql = format!(
            "SELECT m.*, (SELECT resets FROM pipeline_totals) AS resets \
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS r(channel_id, after, upto) \
             CROSS JOIN LATERAL (SELECT {COLUMNS} FROM messages \
                 WHERE channel_id = r.channel_id AND channel_offset > r.after AND channel_offset <= r.upto \
                 ORDER BY channel_offset) m \
             ORDER BY m.channel_id, m.channel_offset"
        );
        self.bounded(async {
            let client = self.pool.get().await?;
            let statement = client.prepare_cached(&sql).await?;
            let rows = client
                .query(&statement, &[&channels, &afters, &uptos])
                .await?;
            Ok(Ranges {
                resets: rows.first().map(|row| row.get("resets")),
                rows: rows.iter().map(pipeline::schema::channel_message).collect(),
            })
        })
        .await
    }
}
