//! Writing rows: binary COPY, the staged insert, and isolating the rows PostgreSQL refuses.

use std::{ops::Range, pin::pin};

use tokio_postgres::{Statement, Transaction, binary_copy::BinaryCopyInWriter, types::ToSql};

use super::{
    StoreError,
    errors::{is_data_error, refusal_text},
    sql::{MESSAGES_TYPES, STAGING_TYPES, Statements},
};
use crate::row::Row;

/// Binary-COPYs rows straight into `messages`, each with its `batch_id` and channel offset; returns the rows
/// copied. `rows` may hold several batches' rows (a group commit).
pub(super) async fn copy_messages(
    tx: &Transaction<'_>,
    copy: &Statement,
    rows: &[(&Row<'_>, i64, i64)],
) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sink = tx.copy_in(copy).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, MESSAGES_TYPES));
    for (row, batch_id, offset) in rows {
        let content: &str = &row.content;
        let values: [&(dyn ToSql + Sync); 7] = [
            &row.tracking_id,
            &row.user_id,
            &row.channel_id,
            &content,
            &row.created_at,
            batch_id,
            offset,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await
}

/// Binary-COPYs `rows` into the staging table, numbering them from `first_seq` (their index in the batch).
async fn copy_staging(
    tx: &Transaction<'_>,
    copy: &Statement,
    rows: &[Row<'_>],
    first_seq: usize,
) -> Result<u64, tokio_postgres::Error> {
    let sink = tx.copy_in(copy).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, STAGING_TYPES));
    for (index, row) in rows.iter().enumerate() {
        let content: &str = &row.content;
        // A batch is far below 2^31 rows (BATCH_SIZE is bounded), so the index fits.
        let seq = (first_seq + index) as i32;
        let values: [&(dyn ToSql + Sync); 6] = [
            &row.tracking_id,
            &row.user_id,
            &row.channel_id,
            &content,
            &row.created_at,
            &seq,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await
}

/// COPYs `rows` (the batch's rows from index `first_seq` on) into the staging table and moves the ones not
/// yet there into `messages`, with their offsets; returns the rows added. The heads of their channels must
/// be locked (`LOCK_HEADS`).
pub(super) async fn copy_and_insert(
    tx: &Transaction<'_>,
    statements: &Statements,
    rows: &[Row<'_>],
    first_seq: usize,
    batch_id: i64,
) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    copy_staging(tx, &statements.copy, rows, first_seq).await?;
    let row = tx
        .query_one(&statements.insert_messages, &[&batch_id])
        .await?;
    let (inserted, contiguous): (i64, bool) = (row.get(0), row.get(1));
    if !contiguous {
        return Err(StoreError::OffsetGap);
    }
    Ok(inserted as u64)
}

/// Inserts `rows` in savepoint-guarded chunks, halving every chunk PostgreSQL refuses until the refused rows
/// stand alone. Returns the rows added and the refused rows (index, message), ascending.
///
/// Bounded: each refused chunk splits in two, so at most `2 × rows` chunks are tried.
pub(super) async fn isolate_rows(
    tx: &mut Transaction<'_>,
    statements: &Statements,
    rows: &[Row<'_>],
    batch_id: i64,
) -> Result<(u64, Vec<(usize, String)>), StoreError> {
    let mut inserted = 0;
    let mut refused = Vec::new();
    let mut chunks: Vec<Range<usize>> = Vec::with_capacity(64);
    chunks.push(0..rows.len());
    while let Some(chunk) = chunks.pop() {
        if chunk.is_empty() {
            continue;
        }
        let savepoint = tx.savepoint("chunk").await?;
        let chunk_rows = &rows[chunk.clone()];
        match copy_and_insert(&savepoint, statements, chunk_rows, chunk.start, batch_id).await {
            Ok(added) => {
                // The staging table is only emptied at COMMIT; the next chunk must not see these rows.
                savepoint.execute(&statements.clear_staging, &[]).await?;
                savepoint.commit().await?;
                inserted += added;
            }
            Err(StoreError::Postgres(error)) if is_data_error(&error) => {
                savepoint.rollback().await?;
                if chunk.len() == 1 {
                    refused.push((chunk.start, refusal_text(&error)));
                } else {
                    // Second half pushed first so the first half is tried first: rows keep their order.
                    let middle = chunk.start + chunk.len() / 2;
                    chunks.push(middle..chunk.end);
                    chunks.push(chunk.start..middle);
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok((inserted, refused))
}
