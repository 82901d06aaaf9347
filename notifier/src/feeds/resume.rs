//! The pure decisions of the feeds: what a subscriber does with a live message, what the hub reads next,
//! and where an SSE client resumes.
//!
//! Events are hints and PostgreSQL is the truth: a subscriber delivers only offset `last + 1`, drops what it
//! has already delivered, and reads any gap from PostgreSQL. So a lost or reordered event can only delay a
//! message, never skip or repeat it.

/// What a subscriber that has delivered up to `last` does with a live message at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// `offset == last + 1`: deliver it.
    Deliver,
    /// Already delivered (the replay from PostgreSQL got there first): drop it.
    Duplicate,
    /// Offsets `last + 1 .. offset` are missing: read them (and this one) from PostgreSQL.
    Gap,
}

pub(crate) fn accept(last: i64, offset: i64) -> Accept {
    match offset.cmp(&(last + 1)) {
        std::cmp::Ordering::Equal => Accept::Deliver,
        std::cmp::Ordering::Less => Accept::Duplicate,
        std::cmp::Ordering::Greater => Accept::Gap,
    }
}

/// Whether a channel whose feed has fanned out up to `delivered` (`None`: not yet known) starts over from
/// offset 1, given its `head` just read (`None`: not read this time): when the data was reset
/// (`everything_reset`: the resets counter changed), or when its head is below what was fanned out (its rows
/// were deleted by other means).
pub(crate) fn restarted(delivered: Option<i64>, head: Option<i64>, everything_reset: bool) -> bool {
    everything_reset
        || matches!((delivered, head), (Some(delivered), Some(head)) if head < delivered)
}

/// How many of `offsets` (ascending) continue `delivered` without a hole: the hub fans out only those.
pub(crate) fn contiguous(delivered: i64, offsets: impl IntoIterator<Item = i64>) -> usize {
    offsets
        .into_iter()
        .zip(delivered + 1..)
        .take_while(|(offset, expected)| offset == expected)
        .count()
}

/// One channel's rows for the hub to read: offsets `after + 1 ..= upto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fetch {
    pub(crate) channel_id: i64,
    pub(crate) after: i64,
    pub(crate) upto: i64,
}

/// What the hub reads next, given each subscribed channel's `(channel_id, delivered, target)` (`delivered`
/// is `None` while the channel's starting point is being read): the channels behind their target, at most
/// `cap` rows each, so one query stays bounded however far behind a channel is.
pub(crate) fn plan(
    feeds: impl IntoIterator<Item = (i64, Option<i64>, i64)>,
    cap: i64,
) -> Vec<Fetch> {
    let mut fetches: Vec<Fetch> = feeds
        .into_iter()
        .filter_map(|(channel_id, delivered, target)| {
            let after = delivered?;
            (target > after).then(|| Fetch {
                channel_id,
                after,
                upto: target.min(after.saturating_add(cap)),
            })
        })
        .collect();
    fetches.sort_unstable_by_key(|fetch| fetch.channel_id);
    fetches
}

/// Where an SSE client resumes: after the `Last-Event-ID` header if it sent one (EventSource sends the last
/// id it saw when it reconnects, while its URL keeps the first `last_event_id`), else after the
/// `last_event_id` query parameter; `None` if neither: live from the channel's head.
pub(crate) fn sse_resume_point(
    header: Option<&str>,
    query: Option<&str>,
) -> Result<Option<i64>, &'static str> {
    let (value, name) = match (header, query) {
        (Some(header), _) => (header, "Last-Event-ID"),
        (None, Some(query)) => (query, "last_event_id"),
        (None, None) => return Ok(None),
    };
    let value = value.trim();
    let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match valid.then(|| value.parse::<i64>().ok()).flatten() {
        Some(offset) => Ok(Some(offset)),
        None if name == "Last-Event-ID" => {
            Err("Last-Event-ID must be an offset: an integer from 0 up")
        }
        None => Err("last_event_id must be an offset: an integer from 0 up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_next_offset_is_delivered() {
        assert_eq!(accept(41, 42), Accept::Deliver);
        assert_eq!(accept(0, 1), Accept::Deliver);
        assert_eq!(accept(41, 41), Accept::Duplicate);
        assert_eq!(accept(41, 3), Accept::Duplicate);
        assert_eq!(accept(41, 43), Accept::Gap);
    }

    #[test]
    fn a_channel_starts_over_after_a_reset_or_when_its_head_went_down() {
        // The resets counter changed: every channel, even one already past its old position again.
        assert!(restarted(Some(40), Some(55), true));
        assert!(restarted(None, Some(3), true));
        assert!(restarted(Some(40), None, true));
        // Rows deleted without the counter: the head is below what was fanned out.
        assert!(restarted(Some(40), Some(2), false));
        assert!(!restarted(Some(40), Some(40), false));
        assert!(!restarted(Some(40), Some(41), false));
        assert!(!restarted(None, Some(0), false));
        // A channel subscribed while the heads were being read has no head in that read: not a reset.
        assert!(!restarted(Some(40), None, false));
    }

    #[test]
    fn the_hub_fans_out_up_to_the_first_hole() {
        assert_eq!(contiguous(10, [11, 12, 13]), 3);
        assert_eq!(contiguous(10, [11, 13, 14]), 1);
        assert_eq!(contiguous(10, [12, 13]), 0);
        assert_eq!(contiguous(10, []), 0);
    }

    #[test]
    fn the_hub_reads_only_channels_behind_and_at_most_cap_rows_each() {
        let feeds = [
            (9, Some(5), 5),
            (3, Some(0), 2_500),
            (7, None, 10),
            (1, Some(40), 44),
        ];
        assert_eq!(
            plan(feeds, 1_000),
            [
                Fetch {
                    channel_id: 1,
                    after: 40,
                    upto: 44
                },
                Fetch {
                    channel_id: 3,
                    after: 0,
                    upto: 1_000
                },
            ]
        );
    }

    #[test]
    fn sse_resumes_after_the_header_else_the_query_parameter() {
        assert_eq!(sse_resume_point(None, None), Ok(None));
        assert_eq!(sse_resume_point(Some("17"), Some("3")), Ok(Some(17)));
        assert_eq!(sse_resume_point(None, Some("3")), Ok(Some(3)));
        assert_eq!(sse_resume_point(Some(" 0 "), None), Ok(Some(0)));
        for bad in ["", "-1", "+3", "x", "1.5", "99999999999999999999"] {
            assert_eq!(
                sse_resume_point(Some(bad), None),
                Err("Last-Event-ID must be an offset: an integer from 0 up")
            );
            assert_eq!(
                sse_resume_point(None, Some(bad)),
                Err("last_event_id must be an offset: an integer from 0 up")
            );
        }
    }
}
