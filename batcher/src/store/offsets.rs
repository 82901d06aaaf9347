//! Channel offsets of the direct path, computed in Rust: pure, so it is unit-tested here.
//!
//! Each channel's rows get `head + 1, head + 2, …` in batch order, where `head` is the channel's last offset
//! before this batch (read from `channel_heads`, whose rows the batch's transaction holds locked). The direct
//! COPY inserts every row or fails as a whole, so numbering every row is exact; the staged and isolating paths
//! number in SQL, counting only the rows actually inserted (see `sql::INSERT_MESSAGES`).

use std::collections::BTreeMap;

use pipeline::events::ChannelRange;

use crate::row::Row;

/// The batch's channels, ascending (the order their heads are locked in, so two transactions never wait on
/// each other's heads in opposite orders), and each channel's row count.
pub(super) fn channel_counts<'r, 'a: 'r>(
    rows: impl IntoIterator<Item = &'r Row<'a>>,
) -> (Vec<i64>, Vec<i64>) {
    let mut counts: BTreeMap<i64, i64> = BTreeMap::new();
    for row in rows {
        *counts.entry(row.channel_id).or_default() += 1;
    }
    counts.into_iter().unzip()
}

/// The offset of each row (same index), given each channel's head before the batch. A channel missing from
/// `heads_before` counts as head 0 (a caller bug; the unique index would refuse the duplicate offsets).
pub(super) fn assign<'r, 'a: 'r>(
    rows: impl IntoIterator<Item = &'r Row<'a>>,
    heads_before: &[(i64, i64)],
) -> Vec<i64> {
    let mut next: BTreeMap<i64, i64> = heads_before.iter().copied().collect();
    rows.into_iter()
        .map(|row| {
            let head = next.entry(row.channel_id).or_default();
            *head += 1;
            *head
        })
        .collect()
}

/// Each channel's offsets among `offsets` (of `rows`, same index), ascending by channel: the `channels` of
/// the batch's event.
pub(super) fn ranges(rows: &[Row<'_>], offsets: &[i64]) -> Vec<ChannelRange> {
    let mut ranges: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (row, &offset) in rows.iter().zip(offsets) {
        let range = ranges.entry(row.channel_id).or_insert((offset, offset));
        range.0 = range.0.min(offset);
        range.1 = range.1.max(offset);
    }
    ranges
        .into_iter()
        .map(|(channel_id, (first, last))| ChannelRange {
            channel_id,
            first,
            last,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn row(channel_id: i64) -> Row<'static> {
        Row {
            tracking_id: Uuid::now_v7(),
            user_id: 1,
            channel_id,
            content: Cow::Borrowed("x"),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn channels_are_sorted_with_their_counts() {
        let rows: Vec<_> = [9, 3, 9, 5, 3, 9].into_iter().map(row).collect();
        assert_eq!(channel_counts(&rows), (vec![3, 5, 9], vec![2, 1, 3]));
        assert_eq!(channel_counts(&[]), (vec![], vec![]));
        // Several batches' rows, one after another.
        let more: Vec<_> = [5, 1].into_iter().map(row).collect();
        assert_eq!(
            channel_counts(rows.iter().chain(&more)),
            (vec![1, 3, 5, 9], vec![1, 2, 2, 3])
        );
    }

    #[test]
    fn offsets_continue_each_channels_head_in_batch_order() {
        let rows: Vec<_> = [9, 3, 9, 5, 3, 9].into_iter().map(row).collect();
        let offsets = assign(&rows, &[(3, 0), (5, 41), (9, 7)]);
        assert_eq!(offsets, [8, 1, 9, 42, 2, 10]);
        let range = |channel_id, first, last| ChannelRange {
            channel_id,
            first,
            last,
        };
        assert_eq!(
            ranges(&rows, &offsets),
            [range(3, 1, 2), range(5, 42, 42), range(9, 8, 10)]
        );
    }

    #[test]
    fn a_group_of_batches_is_numbered_as_one_batch_in_their_order() {
        let first: Vec<_> = [9, 3].into_iter().map(row).collect();
        let second: Vec<_> = [3, 9, 5].into_iter().map(row).collect();
        let offsets = assign(first.iter().chain(&second), &[(3, 0), (5, 41), (9, 7)]);
        assert_eq!(offsets, [8, 1, 2, 9, 42]);
    }
}
