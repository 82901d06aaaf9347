//! PostgreSQL: one batch, one transaction.
//!
//! Rows are idempotent on `tracking_id`, so a replayed batch adds nothing twice. Three ways to write them,
//! each tried only when the one before cannot do the batch:
//!
//! 1. *Direct*: binary COPY straight into `messages`. The common case (no row is there yet), and the fastest:
//!    the staged path below costs about 40% more PostgreSQL time per row.
//! 2. *Staged*, when the direct COPY hits the `tracking_id` constraint (23505: a replay after a crash or a
//!    reclaim): binary COPY into a temporary staging table (created once per connection, emptied at every
//!    commit), then `INSERT … SELECT … ON CONFLICT (tracking_id) DO NOTHING`.
//! 3. *Isolating*, when PostgreSQL refuses some row (a *data* error, see [`classify_sqlstate`]): the staged
//!    insert in savepoints, halving every refused chunk until each refused row stands alone; those go to
//!    `dead_letters` with PostgreSQL's message and the good rows commit.
//!
//! Every path first locks the `channel_heads` rows of the batch's channels, in `channel_id` order, and
//! numbers the rows it inserts after them (`messages.channel_offset`: 1, 2, 3, … per channel, in commit
//! order). The direct path reserves its counts in that same statement and computes the offsets in Rust
//! ([`offsets`]); the staged and isolating paths number in SQL, only the rows they actually insert. A row
//! already there (replay, late commit of a fenced batcher) or refused never takes an offset, and a rolled
//! back try (or savepoint) rolls its heads back with it, so no offset is used twice or skipped.
//!
//! The `batches` row, the `dead_letters` rows and the shard's `shard_totals` update are in the same transaction:
//! either all of a batch is durable, or none of it. Any other error is *transient*: the caller retries the
//! whole batch on a new connection.

mod copy;
mod errors;
mod offsets;
mod sql;

use std::{collections::HashMap, time::Duration};

use pipeline::events::ChannelRange;
use tokio_postgres::{Client, GenericClient, NoTls, Statement, Transaction};

pub use self::errors::{ErrorKind, StoreError, classify_sqlstate};
use self::{
    copy::{copy_and_insert, copy_messages, isolate_rows},
    errors::{UNIQUE_VIOLATION, is_data_error},
    sql::Statements,
};
use crate::{policy::FlushReason, row::Row};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One batch to commit: decoded rows, and the elements that could not be decoded.
#[derive(Debug)]
pub struct BatchToCommit<'a> {
    pub batcher_id: &'a str,
    /// The queue shard it came from: its totals go to that shard's row of `shard_totals`.
    pub shard: i32,
    pub reason: FlushReason,
    /// Elements taken from Redis, dead letters included.
    pub size: usize,
    pub rows: &'a [Row<'a>],
    /// The raw element of each row (same index), kept for `dead_letters` if PostgreSQL refuses the row.
    pub row_raws: &'a [&'a [u8]],
    /// Elements that did not decode, with the reason.
    pub rejected: &'a [(&'a [u8], String)],
}

/// A committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub batch_id: i64,
    /// Rows this batch added (a replay adds fewer than it holds).
    pub inserted: u64,
    /// Rows PostgreSQL refused, by index into `rows`, ascending, with its message.
    pub refused: Vec<(usize, String)>,
    /// Each channel's offsets among the batch's rows in `messages` (inserted now, or found there by a replay).
    pub channels: Vec<ChannelRange>,
}

/// How the rows of a batch are written (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Path {
    #[default]
    Direct,
    Staged,
    Isolating,
}

/// What the earlier tries of one batch learned; kept by the caller across retries.
#[derive(Debug, Default)]
pub struct Attempts {
    batch_id: Option<i64>,
    /// The path to try next: a retry does not repeat a path that met a data error.
    path: Path,
    /// The refused rows of the try that sent COMMIT.
    refused: Vec<(usize, String)>,
}

impl Attempts {
    /// The attempts of a batch whose first try was part of a group commit under `batch_id` (see
    /// [`Store::commit_group`]): the next try first asks whether that commit happened.
    pub fn after_group(batch_id: i64) -> Self {
        Self {
            batch_id: Some(batch_id),
            ..Self::default()
        }
    }
}

struct Conn {
    client: Client,
    statements: Statements,
}

/// The batcher's PostgreSQL connection, made on first use and again after any failure.
pub struct Store {
    database_url: String,
    conn: Option<Conn>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field(
                "database_url",
                &pipeline::schema::redact(&self.database_url),
            )
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Store {
    /// A store for `database_url`; nothing is connected yet.
    pub fn new(database_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            conn: None,
        }
    }

    /// Drops the connection (an open transaction rolls back); the next commit connects again.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn connect(database_url: &str) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "PostgreSQL connection closed");
            }
        });
        let statements = Statements::prepare(&client).await?;
        Ok(Conn { client, statements })
    }

    /// The connection, made now if there is none.
    async fn connection(&mut self) -> Result<&mut Conn, StoreError> {
        if self.conn.is_none() {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, Self::connect(&self.database_url))
                .await
                .map_err(|_| StoreError::Timeout(CONNECT_TIMEOUT))??;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Ids for `n` batches, to commit them together with [`commit_group`](Self::commit_group).
    pub async fn next_batch_ids(&mut self, n: usize) -> Result<Vec<i64>, StoreError> {
        let Conn { client, statements } = self.connection().await?;
        let n = i32::try_from(n).expect("a group holds few batches");
        let rows = client.query(&statements.next_batch_ids, &[&n]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Commits several batches (of different shards, or one shard's batches in the order they were taken) in
    /// one transaction, under `batch_ids` (same index), each with its own `batches` row and its shard's
    /// totals: one try, on the direct path only. Their channels' heads are locked together, in `channel_id`
    /// order, and numbered in the order of `batches`. On `Err` nothing is known to be committed: the caller
    /// resets and commits each batch on its own with [`Attempts::after_group`], whose first try finds out
    /// whether this one's COMMIT went through after all.
    pub async fn commit_group(
        &mut self,
        batches: &[BatchToCommit<'_>],
        batch_ids: &[i64],
    ) -> Result<Vec<Committed>, StoreError> {
        assert_eq!(batches.len(), batch_ids.len(), "one id per batch");
        let Conn { client, statements } = self.connection().await?;
        let tx = client.transaction().await?;
        let (_, channels) = copy_direct(&tx, statements, batches, batch_ids).await?;
        let records = batches.iter().zip(batch_ids).map(|(batch, &batch_id)| {
            record(
                &tx,
                statements,
                batch,
                batch_id,
                batch.rows.len() as u64,
                &[],
            )
        });
        futures_util::future::try_join_all(records).await?;
        tx.commit().await?;
        Ok(batches
            .iter()
            .zip(batch_ids)
            .zip(channels)
            .map(|((batch, &batch_id), channels)| Committed {
                batch_id,
                inserted: batch.rows.len() as u64,
                refused: Vec::new(),
                channels,
            })
            .collect())
    }

    /// Commits `batch` (one try). On `Err` the caller resets and retries with the same `attempts`.
    pub async fn commit(
        &mut self,
        batch: &BatchToCommit<'_>,
        attempts: &mut Attempts,
    ) -> Result<Committed, StoreError> {
        let Conn { client, statements } = self.connection().await?;

        let batch_id = match attempts.batch_id {
            // A previous try may have committed and lost only the reply: its batches row says so.
            Some(batch_id) => {
                if let Some(row) = client
                    .query_opt(&statements.find_batch, &[&batch_id])
                    .await?
                {
                    let inserted: i32 = row.get(0);
                    let channels =
                        channel_ranges(client, &statements.channel_ranges, batch.rows).await?;
                    return Ok(Committed {
                        batch_id,
                        inserted: inserted as u64,
                        refused: attempts.refused.clone(),
                        channels,
                    });
                }
                batch_id
            }
            None => {
                let batch_id: i64 = client
                    .query_one(&statements.next_batch_id, &[])
                    .await?
                    .get(0);
                attempts.batch_id = Some(batch_id);
                batch_id
            }
        };

        loop {
            let path = attempts.path;
            match Self::try_commit(client, statements, batch, batch_id, path, attempts).await {
                Err(StoreError::Postgres(error))
                    if path == Path::Direct
                        && error.code().is_some_and(|c| c.code() == UNIQUE_VIOLATION) =>
                {
                    tracing::debug!(
                        batch_id,
                        "some rows are already there; inserting with ON CONFLICT"
                    );
                    attempts.path = Path::Staged;
                }
                Err(StoreError::Postgres(error))
                    if path != Path::Isolating && is_data_error(&error) =>
                {
                    tracing::warn!(%error, batch_id, "PostgreSQL refused the batch; isolating the bad rows");
                    attempts.path = Path::Isolating;
                }
                other => return other,
            }
        }
    }

    async fn try_commit(
        client: &mut Client,
        statements: &Statements,
        batch: &BatchToCommit<'_>,
        batch_id: i64,
        path: Path,
        attempts: &mut Attempts,
    ) -> Result<Committed, StoreError> {
        let mut tx = client.transaction().await?;
        if path != Path::Direct {
            // These paths number only the rows they insert, in SQL, under the heads locked here.
            let counts = offsets::channel_counts(batch.rows);
            lock_heads(&tx, statements, counts, false).await?;
        }
        let (inserted, refused, channels) = match path {
            Path::Direct => {
                let batches = std::slice::from_ref(batch);
                let (copied, mut channels) =
                    copy_direct(&tx, statements, batches, &[batch_id]).await?;
                (copied, Vec::new(), channels.remove(0))
            }
            Path::Staged => {
                let inserted = copy_and_insert(&tx, statements, batch.rows, 0, batch_id).await?;
                let channels = channel_ranges(&tx, &statements.channel_ranges, batch.rows).await?;
                (inserted, Vec::new(), channels)
            }
            Path::Isolating => {
                let (inserted, refused) =
                    isolate_rows(&mut tx, statements, batch.rows, batch_id).await?;
                let channels = channel_ranges(&tx, &statements.channel_ranges, batch.rows).await?;
                (inserted, refused, channels)
            }
        };

        record(&tx, statements, batch, batch_id, inserted, &refused).await?;
        attempts.refused.clone_from(&refused);
        tx.commit().await?;
        Ok(Committed {
            batch_id,
            inserted,
            refused,
            channels,
        })
    }
}

/// The direct path of `batches` (ids in `batch_ids`, same index) in `tx`: locks their channels' heads,
/// reserving every row (the COPY inserts all or none), numbers the rows in the order of `batches` and COPYs
/// them straight into `messages`. Returns the rows copied and each batch's channel ranges.
async fn copy_direct(
    tx: &Transaction<'_>,
    statements: &Statements,
    batches: &[BatchToCommit<'_>],
    batch_ids: &[i64],
) -> Result<(u64, Vec<Vec<ChannelRange>>), tokio_postgres::Error> {
    let all_rows = || batches.iter().flat_map(|batch| batch.rows);
    let counts = offsets::channel_counts(all_rows());
    let heads_before = lock_heads(tx, statements, counts, true).await?;
    let offsets = offsets::assign(all_rows(), &heads_before);
    let mut rows = Vec::with_capacity(offsets.len());
    let mut channels = Vec::with_capacity(batches.len());
    let mut rest = offsets.as_slice();
    for (batch, &batch_id) in batches.iter().zip(batch_ids) {
        let (mine, after) = rest.split_at(batch.rows.len());
        rest = after;
        rows.extend((batch.rows.iter().zip(mine)).map(|(row, &offset)| (row, batch_id, offset)));
        channels.push(offsets::ranges(batch.rows, mine));
    }
    let copied = copy_messages(tx, &statements.copy_messages, &rows).await?;
    Ok((copied, channels))
}

/// Records the batch in its transaction: its dead letters (the elements that did not decode, and the rows in
/// `refused`), its `batches` row and its shard's totals, sent together (tokio-postgres pipelines concurrent
/// queries on one connection).
async fn record(
    tx: &Transaction<'_>,
    statements: &Statements,
    batch: &BatchToCommit<'_>,
    batch_id: i64,
    inserted: u64,
    refused: &[(usize, String)],
) -> Result<(), StoreError> {
    let dead = batch.rejected.len() + refused.len();
    let mut raws: Vec<&[u8]> = Vec::with_capacity(dead);
    let mut errors: Vec<&str> = Vec::with_capacity(dead);
    for (raw, error) in batch.rejected {
        raws.push(raw);
        errors.push(error);
    }
    for (index, error) in refused {
        raws.push(batch.row_raws[*index]);
        errors.push(error);
    }
    let (size, inserted_i32, dead_i32) = (batch.size as i32, inserted as i32, dead as i32);
    let (inserted_i64, dead_i64) = (inserted as i64, dead as i64);
    let finish = futures_util::future::try_join3(
        async {
            if dead > 0 {
                tx.execute(
                    &statements.insert_dead_letters,
                    &[&raws, &errors, &batch.batcher_id, &batch_id],
                )
                .await?;
            }
            Ok(())
        },
        tx.execute(
            &statements.insert_batch,
            &[
                &batch_id,
                &batch.batcher_id,
                &batch.reason.as_str(),
                &size,
                &inserted_i32,
                &dead_i32,
            ],
        ),
        tx.execute(
            &statements.add_totals,
            &[&batch.shard, &inserted_i64, &dead_i64],
        ),
    )
    .await;
    match finish {
        Ok(_) => Ok(()),
        // A data error here is about no particular row; retrying is the only safe thing.
        Err(error) if is_data_error(&error) => Err(StoreError::Unattributable(error)),
        Err(error) => Err(StoreError::Postgres(error)),
    }
}

/// Each channel's offsets among the rows of `rows` that are in `messages` (see `sql::CHANNEL_RANGES`).
async fn channel_ranges(
    client: &impl GenericClient,
    statement: &Statement,
    rows: &[Row<'_>],
) -> Result<Vec<ChannelRange>, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.tracking_id).collect();
    let found = client.query(statement, &[&ids]).await?;
    Ok(found
        .iter()
        .map(|row| ChannelRange {
            channel_id: row.get(0),
            first: row.get(1),
            last: row.get(2),
        })
        .collect())
}

/// Locks the heads of the channels in `channel_counts` (ascending, with each one's row count, as
/// `offsets::channel_counts` gives them; see `sql::LOCK_HEADS`), adding each channel's row count when
/// `reserve`; returns each channel's head before these rows.
async fn lock_heads(
    tx: &Transaction<'_>,
    statements: &Statements,
    (channels, mut counts): (Vec<i64>, Vec<i64>),
    reserve: bool,
) -> Result<Vec<(i64, i64)>, tokio_postgres::Error> {
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    if !reserve {
        counts.fill(0);
    }
    let heads = tx
        .query(&statements.lock_heads, &[&channels, &counts])
        .await?;
    let added: HashMap<i64, i64> = channels.into_iter().zip(counts).collect();
    Ok(heads
        .iter()
        .map(|row| {
            let (channel_id, head): (i64, i64) = (row.get(0), row.get(1));
            let added = added.get(&channel_id).copied().unwrap_or(0);
            (channel_id, head - added)
        })
        .collect())
}
