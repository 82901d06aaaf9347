//! Writing rows: binary COPY, the staged insert, and isolating the rows PostgreSQL refuses.

use std::{ops::Range, pin::pin};

use tokio_postgres::{
    Statement, Transaction,
    binary_copy::BinaryCopyInWriter,
    types::{ToSql, Type},
};

use super::{
    StoreError,
    errors::{is_data_error, refusal_text},
    sql::{STAGING_TYPES, Statements},
};
use crate::row::Row;

/// Binary-COPYs `rows` with `copy` (the message columns, then `batch_id` if given); returns the rows copied.
pub(super) async fn copy_rows(
    tx: &Transaction<'_>,
    copy: &Statement,
    types: &[Type],
    rows: &[Row<'_>],
    batch_id: Option<i64>,
) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sink = tx.copy_in(copy).await?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        let content: &str = &row.content;
        let values: [&(dyn ToSql + Sync); 6] = [
            &row.tracking_id,
            &row.user_id,
            &row.channel_id,
            &content,
            &row.created_at,
            &batch_id,
        ];
        writer.as_mut().write(&values[..types.len()]).await?;
    }
    writer.finish().await
}

/// COPYs `rows` into the staging table and moves them into `messages`; returns the rows added.
pub(super) async fn copy_and_insert(
    tx: &Transaction<'_>,
    statements: &Statements,
    rows: &[Row<'_>],
    batch_id: i64,
) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    copy_rows(tx, &statements.copy, STAGING_TYPES, rows, None).await?;
    tx.execute(&statements.insert_messages, &[&batch_id]).await
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
        match copy_and_insert(&savepoint, statements, &rows[chunk.clone()], batch_id).await {
            Ok(added) => {
                // The staging table is only emptied at COMMIT; the next chunk must not see these rows.
                savepoint.execute(&statements.clear_staging, &[]).await?;
                savepoint.commit().await?;
                inserted += added;
            }
            Err(error) if is_data_error(&error) => {
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
            Err(error) => return Err(error.into()),
        }
    }
    Ok((inserted, refused))
}
