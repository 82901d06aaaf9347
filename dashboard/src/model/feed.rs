//! The live feed: one card per message the user sent or burst, newest first, each **queued** until its
//! `batch_persisted` event (or a reconciliation after a reconnect) flips it to **persisted**.
//!
//! A batch may commit before the HTTP answer that names its ids reaches the page (a burst of 120 with a
//! batch size of 50 commits twice while the answer is still on its way). So while a request is in flight,
//! the ids of every batch are remembered (boundedly), and cards added later start out persisted.

use std::collections::{HashMap, HashSet, VecDeque};

use uuid::Uuid;

use super::latency::uuid_v7_millis;

/// Where a message is in the pipeline, as far as the page knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Queued,
    Persisted,
}

impl Status {
    /// The `data-status` attribute and CSS class of a card.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Persisted => "persisted",
        }
    }
}

/// Where a persisted message was committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Commit {
    /// `batches.id`, unknown when learnt from a reconciliation.
    pub batch_id: Option<i64>,
    /// Milliseconds since the epoch.
    pub committed_ms: i64,
}

/// One message card.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub id: Uuid,
    /// What the message says (`None` for simulated ones: the ingestor made them up).
    pub text: Option<String>,
    /// `user 7 · channel 3`, or `simulated`.
    pub origin: String,
    pub status: Status,
    pub commit: Option<Commit>,
}

impl Card {
    /// Creation to commit in milliseconds, once persisted (the creation time is inside the UUID v7).
    pub fn latency_ms(&self) -> Option<f64> {
        let created = uuid_v7_millis(&self.id)?;
        Some((self.commit?.committed_ms - created).max(0) as f64)
    }
}

/// The cards, newest first, plus what is needed to flip them.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    cards: VecDeque<Card>,
    capacity: usize,
    /// Requests whose answer (with ids) has not been added yet.
    in_flight: u32,
    /// Ids committed while a request was in flight, with their commit, oldest first for eviction.
    early: HashMap<Uuid, Commit>,
    early_order: VecDeque<Uuid>,
}

impl Default for Feed {
    fn default() -> Self {
        Self::new(Self::CAPACITY)
    }
}

impl Feed {
    /// Cards shown: a burst of a few hundred is visible in full; older cards fall off the end.
    pub const CAPACITY: usize = 300;
    /// Early commits remembered at most.
    pub const EARLY_CAPACITY: usize = 16_384;

    pub fn new(capacity: usize) -> Self {
        Self {
            cards: VecDeque::with_capacity(capacity),
            capacity,
            in_flight: 0,
            early: HashMap::new(),
            early_order: VecDeque::new(),
        }
    }

    /// Cards, newest first.
    pub fn cards(&self) -> impl Iterator<Item = &Card> {
        self.cards.iter()
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// Counts of queued and persisted cards.
    pub fn counts(&self) -> (usize, usize) {
        let queued = self
            .cards
            .iter()
            .filter(|card| card.status == Status::Queued)
            .count();
        (queued, self.cards.len() - queued)
    }

    /// A request that will add cards has been sent: remember commits until [`Feed::end_request`].
    pub fn begin_request(&mut self) {
        self.in_flight += 1;
    }

    /// Its answer arrived (and its cards, if any, were added).
    pub fn end_request(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.early.clear();
            self.early_order.clear();
        }
    }

    /// Adds cards in the order given (the last becomes the newest); an id already committed starts out
    /// persisted, an id already shown is not added twice.
    pub fn add(&mut self, cards: impl IntoIterator<Item = (Uuid, Option<String>, String)>) {
        let shown: HashSet<Uuid> = self.cards.iter().map(|card| card.id).collect();
        for (id, text, origin) in cards {
            if shown.contains(&id) {
                continue;
            }
            let commit = self.early.get(&id).copied();
            let status = if commit.is_some() {
                Status::Persisted
            } else {
                Status::Queued
            };
            self.cards.push_front(Card {
                id,
                text,
                origin,
                status,
                commit,
            });
        }
        self.cards.truncate(self.capacity);
    }

    /// A batch committed these ids: flips their cards; returns how many flipped.
    pub fn persist(&mut self, ids: &[Uuid], commit: Commit) -> usize {
        if self.in_flight > 0 {
            for id in ids {
                if self.early.insert(*id, commit).is_none() {
                    self.early_order.push_back(*id);
                }
            }
            while self.early_order.len() > Self::EARLY_CAPACITY {
                if let Some(old) = self.early_order.pop_front() {
                    self.early.remove(&old);
                }
            }
        }
        if !self.cards.iter().any(|card| card.status == Status::Queued) {
            return 0;
        }
        let ids: HashSet<&Uuid> = ids.iter().collect();
        self.flip(|id| ids.contains(id).then_some(commit))
    }

    /// After a reconnect: ids found persisted (with their commit time) by asking the API directly.
    pub fn reconcile(&mut self, persisted: &HashMap<Uuid, i64>) -> usize {
        self.flip(|id| {
            persisted.get(id).map(|&committed_ms| Commit {
                batch_id: None,
                committed_ms,
            })
        })
    }

    fn flip(&mut self, commit_of: impl Fn(&Uuid) -> Option<Commit>) -> usize {
        let mut flipped = 0;
        for card in self
            .cards
            .iter_mut()
            .filter(|card| card.status == Status::Queued)
        {
            if let Some(commit) = commit_of(&card.id) {
                card.status = Status::Persisted;
                card.commit = Some(commit);
                flipped += 1;
            }
        }
        flipped
    }

    /// The creation time (ms) of the oldest queued card, if any.
    pub fn oldest_queued_ms(&self) -> Option<i64> {
        self.cards
            .iter()
            .filter(|card| card.status == Status::Queued)
            .filter_map(|card| uuid_v7_millis(&card.id))
            .min()
    }

    /// Forgets every card (after a reset).
    pub fn clear(&mut self) {
        self.cards.clear();
        self.early.clear();
        self.early_order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> Uuid {
        let mut bytes = [0_u8; 16];
        bytes[..6].copy_from_slice(&1_000_i64.to_be_bytes()[2..]);
        bytes[6] = 0x70;
        bytes[8] = 0x80;
        bytes[14..].copy_from_slice(&n.to_be_bytes());
        Uuid::from_bytes(bytes)
    }

    fn simulated(ids: impl IntoIterator<Item = u16>) -> Vec<(Uuid, Option<String>, String)> {
        ids.into_iter()
            .map(|n| (id(n), None, "simulated".to_owned()))
            .collect()
    }

    const COMMIT: Commit = Commit {
        batch_id: Some(1),
        committed_ms: 1_250,
    };

    #[test]
    fn cards_are_newest_first_and_bounded() {
        let mut feed = Feed::new(3);
        feed.add(simulated(1..=5));
        let order: Vec<Uuid> = feed.cards().map(|card| card.id).collect();
        assert_eq!(order, [id(5), id(4), id(3)]);
        assert_eq!(feed.counts(), (3, 0));
    }

    #[test]
    fn a_batch_flips_exactly_its_own_cards() {
        let mut feed = Feed::default();
        feed.add(simulated(1..=4));
        assert_eq!(feed.persist(&[id(2), id(3), id(99)], COMMIT), 2);
        let statuses: Vec<Status> = feed.cards().map(|card| card.status).collect();
        use Status::*;
        assert_eq!(statuses, [Queued, Persisted, Persisted, Queued]);
        let flipped = feed.cards().nth(1).unwrap();
        assert_eq!(flipped.commit, Some(COMMIT));
        assert_eq!(flipped.latency_ms(), Some(250.0));
        // The same event again changes nothing.
        assert_eq!(feed.persist(&[id(2)], COMMIT), 0);
    }

    #[test]
    fn a_commit_that_beats_the_http_answer_still_flips_the_card() {
        let mut feed = Feed::default();
        feed.begin_request();
        feed.persist(&[id(1), id(2)], COMMIT);
        feed.add(simulated(1..=3));
        feed.end_request();
        assert_eq!(feed.counts(), (1, 2));
        assert_eq!(feed.oldest_queued_ms(), Some(1_000));
    }

    #[test]
    fn commits_are_not_remembered_when_nothing_is_in_flight() {
        let mut feed = Feed::default();
        feed.persist(&[id(1)], COMMIT);
        feed.add(simulated([1]));
        assert_eq!(feed.counts(), (1, 0));
    }

    #[test]
    fn reconciliation_flips_cards_whose_events_were_missed() {
        let mut feed = Feed::default();
        feed.add(simulated(1..=3));
        let found = HashMap::from([(id(1), 2_000), (id(3), 2_100)]);
        assert_eq!(feed.reconcile(&found), 2);
        assert_eq!(feed.counts(), (1, 2));
        let card = feed.cards().next().unwrap();
        assert_eq!(card.commit.unwrap().batch_id, None);
        assert_eq!(card.latency_ms(), Some(1_100.0));
    }

    #[test]
    fn an_id_is_shown_once() {
        let mut feed = Feed::default();
        feed.add(simulated([1, 2]));
        feed.add(simulated([2, 3]));
        assert_eq!(feed.len(), 3);
        feed.clear();
        assert!(feed.is_empty());
        assert_eq!(feed.oldest_queued_ms(), None);
    }
}
