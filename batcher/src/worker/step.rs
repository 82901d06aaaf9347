//! What a shard's worker does next, decided from what it holds and the time alone: pure, so every path is
//! unit-tested here with tokio's paused clock (as `policy` is).

use std::time::Duration;

use tokio::time::Instant;

use crate::policy::{Batch, FlushReason};

/// Longest single wait for pending elements; the loop then goes round again (and notices a dead connection).
pub const IDLE_BLOCK: Duration = Duration::from_secs(1);

/// Shortest gathering between two takes (a tenth of `BATCH_TIMEOUT` if that is shorter). Taking every few
/// elements as they trickle in costs a Redis script per handful (replicated, on a cluster), and with many
/// shards each one trickles: measured on the 3-master cluster with 6 shards, takes of ~7 elements made single
/// POSTs half as fast as on one Redis.
pub const GATHER: Duration = Duration::from_millis(5);

/// Longest gathering between two takes (half of `BATCH_TIMEOUT` if that is shorter): how late the volume
/// trigger may notice a burst that follows an idle spell, whatever `BATCH_TIMEOUT` is (30 s by default).
pub const LONGEST_GATHER: Duration = Duration::from_millis(25);

/// After a take of `took` elements at `now`, `since_previous` after the take before it, that left `room` in a
/// batch due at `deadline`: until when to let elements gather in pending before the next take, or `None` to
/// take no more without waiting first (the take found nothing, filled the batch, or was the one at the
/// deadline).
///
/// Every take is a script on the shard's Redis, so a batch should be filled in few of them: the gathering
/// lasts until, at the rate the last take saw, half the room would be filled, but at least [`GATHER`] and at
/// most [`LONGEST_GATHER`] or half of `BATCH_TIMEOUT`, whichever is shorter. With `BATCH_TIMEOUT` = 50 ms a
/// time-triggered batch is then filled in about three takes: the first element's, one mid-way and one at the
/// deadline (see [`next`]). A rate that would fill the batch sooner is taken more often, so the volume trigger
/// is late by at most a quarter of what the rest of the batch took to arrive, and after an idle spell (when
/// the rate looks tiny) by at most [`LONGEST_GATHER`].
pub fn gather_until(
    now: Instant,
    took: usize,
    since_previous: Option<Duration>,
    room: usize,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Option<Instant> {
    if took == 0 || room == 0 || deadline.is_none_or(|deadline| now >= deadline) {
        return None;
    }
    let shortest = GATHER.min(timeout / 10);
    let longest = (timeout / 2).min(LONGEST_GATHER).max(shortest);
    let half_room = since_previous.map_or(shortest, |since| {
        // room / rate / 2, with rate = took / since.
        since.mul_f64(room as f64 / (2.0 * took as f64))
    });
    Some(now + half_room.clamp(shortest, longest))
}

/// Whether the worker's view of its processing list can be trusted, and whether it may go on.
///
/// Ordered by precedence: a worker that gave up or was fenced stays so, and both end its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Course {
    /// Filling and flushing.
    Steady,
    /// Its memory may not match its processing list (a Redis call failed midway, or a clear found the list's
    /// oldest end different): it must re-read the list before anything else.
    Recovering,
    /// Shutdown's grace ran out: retries stop and the rest stays in Redis.
    GaveUp,
    /// The shard's lease is someone else's: what it holds belongs to the next holder.
    Fenced,
}

impl Course {
    /// Moves to `next` unless the current course takes precedence.
    pub fn escalate(&mut self, next: Course) {
        *self = (*self).max(next);
    }

    /// Whether the main loop goes on.
    pub fn goes_on(self) -> bool {
        self <= Course::Recovering
    }
}

/// What the worker knows when it decides.
#[derive(Debug)]
pub struct Situation<'a, T> {
    pub now: Instant,
    pub course: Course,
    pub batch: &'a Batch<T>,
    /// Reclaimed elements (taken first) not yet flushed.
    pub replaying: u64,
    /// After a take that left room in the batch, no new take before this.
    pub gather_until: Option<Instant>,
    /// Whether a wait for pending elements is outstanding.
    pub waiting: bool,
}

/// The worker's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Re-read the processing list and flush it.
    Recover,
    /// Hand the batch to the flusher.
    Flush(FlushReason),
    /// Move what arrived while gathering, at once: pending almost surely holds some, and waiting for it
    /// first (a `BLMOVE` that returns at once) would cost a round trip per take. A take that finds nothing
    /// leads back to waiting.
    Take,
    /// Start waiting for pending elements, for at most this long.
    Wait(Duration),
    /// Wait for the next event (pending elements, a flush done, stop, fencing), or until this instant.
    Idle(Option<Instant>),
}

/// Decides the next step: recovery first, then a due flush (after a last take if the batch was gathering),
/// then a replay that has all its elements, then a
/// take when a gathering has just ended, else a wait for pending elements unless one is outstanding or the
/// worker is gathering.
pub fn next<T>(situation: &Situation<'_, T>) -> Step {
    let Situation {
        now,
        course,
        batch,
        replaying,
        gather_until,
        waiting,
    } = *situation;
    if course == Course::Recovering {
        return Step::Recover;
    }
    if let Some(reason) = batch.should_flush(now) {
        // What gathered since the last take belongs in this batch: take it first (that take sets no new
        // gathering, see `gather_until`).
        if reason == FlushReason::Timeout && gather_until.is_some() {
            return Step::Take;
        }
        return Step::Flush(reason);
    }
    if replaying > 0 && batch.len() as u64 >= replaying {
        // Every reclaimed element is in hand: a replay does not wait for the time trigger.
        return Step::Flush(FlushReason::Recovery);
    }
    // While gathering, no take: the worker wakes at the end of the gathering (or the batch's deadline).
    let gathering = gather_until.filter(|until| *until > now);
    if gathering.is_none() && !waiting {
        if gather_until.is_some() {
            return Step::Take;
        }
        let block = batch.deadline().map_or(IDLE_BLOCK, |deadline| {
            deadline.saturating_duration_since(now).min(IDLE_BLOCK)
        });
        return Step::Wait(block);
    }
    Step::Idle(match (batch.deadline(), gathering) {
        (Some(deadline), Some(until)) => Some(deadline.min(until)),
        (deadline, until) => deadline.or(until),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::FlushPolicy;

    const POLICY: FlushPolicy = FlushPolicy {
        threshold: 3,
        timeout: Duration::from_millis(100),
    };

    fn situation(batch: &Batch<u8>) -> Situation<'_, u8> {
        Situation {
            now: Instant::now(),
            course: Course::Steady,
            batch,
            replaying: 0,
            gather_until: None,
            waiting: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_worker_waits_a_whole_idle_block_then_idles_without_deadline() {
        let batch = Batch::new(POLICY);
        assert_eq!(next(&situation(&batch)), Step::Wait(IDLE_BLOCK));
        let waiting = Situation {
            waiting: true,
            ..situation(&batch)
        };
        assert_eq!(next(&waiting), Step::Idle(None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_batch_waits_no_longer_than_its_deadline() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1], Instant::now());
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(
            next(&situation(&batch)),
            Step::Wait(Duration::from_millis(70))
        );
        let deadline = batch.deadline();
        let waiting = Situation {
            waiting: true,
            ..situation(&batch)
        };
        assert_eq!(next(&waiting), Step::Idle(deadline));
        tokio::time::advance(Duration::from_millis(70)).await;
        let waiting = Situation {
            waiting: true,
            ..situation(&batch)
        };
        assert_eq!(
            next(&waiting),
            Step::Flush(FlushReason::Timeout),
            "the time trigger fires even while a wait is outstanding"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_flushes_for_size_whatever_else_holds() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1, 2, 3], Instant::now());
        let busy = Situation {
            waiting: true,
            replaying: 2,
            gather_until: Some(Instant::now() + Duration::from_millis(5)),
            ..situation(&batch)
        };
        assert_eq!(next(&busy), Step::Flush(FlushReason::Size));
    }

    #[tokio::test(start_paused = true)]
    async fn recovery_comes_before_everything() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1, 2, 3], Instant::now());
        let recovering = Situation {
            course: Course::Recovering,
            ..situation(&batch)
        };
        assert_eq!(next(&recovering), Step::Recover);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replay_flushes_as_soon_as_every_reclaimed_element_is_in_hand() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1], Instant::now());
        let replay = |replaying| Situation {
            replaying,
            waiting: true,
            ..situation(&batch)
        };
        assert_eq!(next(&replay(2)), Step::Idle(batch.deadline()));
        batch.extend([2], Instant::now());
        let replay = Situation {
            replaying: 2,
            waiting: true,
            ..situation(&batch)
        };
        assert_eq!(next(&replay), Step::Flush(FlushReason::Recovery));
    }

    #[tokio::test(start_paused = true)]
    async fn gathering_holds_back_the_next_take_until_it_ends_or_the_deadline_comes() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1], Instant::now());
        let until = Instant::now() + Duration::from_millis(5);
        let gathering = Situation {
            gather_until: Some(until),
            ..situation(&batch)
        };
        assert_eq!(next(&gathering), Step::Idle(Some(until)));
        tokio::time::advance(Duration::from_millis(5)).await;
        let gathered = Situation {
            gather_until: Some(until),
            ..situation(&batch)
        };
        assert_eq!(next(&gathered), Step::Take);
        let taken = Situation {
            gather_until: None,
            ..situation(&batch)
        };
        assert_eq!(next(&taken), Step::Wait(Duration::from_millis(95)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_triggered_flush_first_takes_what_gathered() {
        let mut batch = Batch::new(POLICY);
        batch.extend([1], Instant::now());
        tokio::time::advance(POLICY.timeout).await;
        let gathering = Situation {
            gather_until: Some(Instant::now() + Duration::from_millis(20)),
            ..situation(&batch)
        };
        assert_eq!(next(&gathering), Step::Take);
        assert_eq!(next(&situation(&batch)), Step::Flush(FlushReason::Timeout));
        batch.extend([2, 3], Instant::now());
        let full = Situation {
            gather_until: Some(Instant::now() + Duration::from_millis(20)),
            ..situation(&batch)
        };
        assert_eq!(next(&full), Step::Flush(FlushReason::Size));
    }

    #[tokio::test(start_paused = true)]
    async fn the_gathering_lasts_until_half_the_room_would_fill_within_bounds() {
        let now = Instant::now();
        let deadline = Some(now + Duration::from_millis(80));
        let ms = Duration::from_millis;
        let until = |took, since: Option<u64>, room| {
            gather_until(now, took, since.map(ms), room, deadline, POLICY.timeout)
                .map(|until| until - now)
        };
        // 100 elements in 10 ms: 400 more would take 40 ms, half of it 20 ms.
        assert_eq!(until(100, Some(10), 400), Some(ms(20)));
        // Never shorter than GATHER (a tenth of BATCH_TIMEOUT when that is shorter) ...
        assert_eq!(until(1000, Some(1), 10), Some(GATHER));
        assert_eq!(until(1, None, 400), Some(GATHER));
        // ... and never longer than LONGEST_GATHER or half of BATCH_TIMEOUT (after an idle spell the rate looks
        // tiny), whatever BATCH_TIMEOUT is.
        assert_eq!(until(1, Some(60_000), 400), Some(LONGEST_GATHER));
        let long = Duration::from_secs(30);
        assert_eq!(
            gather_until(now, 1, Some(ms(60_000)), 49, deadline, long).map(|until| until - now),
            Some(LONGEST_GATHER)
        );
        assert_eq!(
            gather_until(now, 1, Some(ms(60_000)), 400, deadline, ms(40)).map(|until| until - now),
            Some(ms(20))
        );
        let short = Duration::from_millis(20);
        assert_eq!(
            gather_until(now, 1, None, 400, deadline, short).map(|until| until - now),
            Some(ms(2))
        );
        // No gathering after a take that found nothing, filled the batch, or came at the deadline.
        assert_eq!(until(0, Some(10), 400), None);
        assert_eq!(until(100, Some(10), 0), None);
        assert_eq!(
            gather_until(now, 5, Some(ms(10)), 400, Some(now), POLICY.timeout),
            None
        );
        assert_eq!(
            gather_until(now, 5, Some(ms(10)), 400, None, POLICY.timeout),
            None
        );
    }

    #[test]
    fn giving_up_and_fencing_are_final_and_end_the_loop() {
        let mut course = Course::Recovering;
        course.escalate(Course::Fenced);
        course.escalate(Course::Recovering);
        assert_eq!(course, Course::Fenced);
        assert!(!course.goes_on());
        let mut course = Course::Steady;
        course.escalate(Course::GaveUp);
        course.escalate(Course::Recovering);
        assert_eq!(course, Course::GaveUp);
        assert!(!course.goes_on());
        assert!(Course::Recovering.goes_on() && Course::Steady.goes_on());
    }
}
