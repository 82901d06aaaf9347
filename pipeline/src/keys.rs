//! Names of every Redis key and channel the pipeline uses, and which shard a message travels through.
//!
//! The queue is split into `QUEUE_SHARDS` **shards**. Each shard has its own hash tag, so on a Redis Cluster its
//! keys share one slot (every Lua script touches one shard's keys only) and different shards spread over the
//! cluster's nodes:
//!
//! | shard | hash tag | keys |
//! |---|---|---|
//! | 0 | `{<prefix>}` | `{<prefix>}:pending`, `{<prefix>}:processing:<batcher id>`, `{<prefix>}:lease`, … |
//! | i ≥ 1 | `{<prefix>:i}` | `{<prefix>:i}:pending`, … |
//!
//! Shard 0 keeps the bare prefix as its tag: that is the single-list layout of earlier versions, so the
//! default of one shard is that layout, and upgrading strands nothing that was queued.
//!
//! A message's shard is [`shard_of`] its `channel_id`, so all of a channel's messages travel through one
//! shard, in order. Keys that are not per shard (the events channel, batcher membership, the layouts in use)
//! sit under shard 0's tag.

/// Elements per `LPUSH`/`RPUSH` inside a Lua script (every script that pushes many elements pushes them this
/// many at a time): Redis's Lua `unpack` fails past about 8000 values.
pub const LUA_CHUNK: usize = 1000;

/// Key and channel names under one `REDIS_KEY_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (already validated by [`crate::config::parse_key_part`]).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The keys of shard `index`.
    pub fn shard(&self, index: u32) -> ShardKeys {
        let tag = if index == 0 {
            format!("{{{}}}", self.prefix)
        } else {
            format!("{{{}:{index}}}", self.prefix)
        };
        ShardKeys { index, tag }
    }

    /// Shards `0..count`.
    pub fn shards(&self, count: u32) -> impl Iterator<Item = ShardKeys> + '_ {
        (0..count).map(|index| self.shard(index))
    }

    /// The pub/sub channel carrying every shard's `batch_persisted` events on one Redis: shard 0's own
    /// channel (see [`Events`]).
    pub fn events(&self) -> String {
        self.shard(0).events()
    }

    /// Sorted set of live batcher ids, scored by when their membership expires (Redis time, ms).
    pub fn members(&self) -> String {
        format!("{{{}}}:members", self.prefix)
    }

    /// Set of every `QUEUE_SHARDS` a service has run with: shards of an earlier, larger layout are drained
    /// until empty, so changing `QUEUE_SHARDS` strands nothing.
    pub fn layouts(&self) -> String {
        format!("{{{}}}:layouts", self.prefix)
    }
}

/// The keys of one shard: all under its hash tag, so in one Redis Cluster slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    index: u32,
    tag: String,
}

impl ShardKeys {
    /// The shard's number, `0..QUEUE_SHARDS`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The hash tag, `{prefix}` or `{prefix:i}`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The list the ingestor `LPUSH`es onto and the shard's batcher moves from (oldest at the right end).
    pub fn pending(&self) -> String {
        format!("{}:pending", self.tag)
    }

    /// A batcher's processing list in this shard: what it has taken and not yet committed (oldest at the
    /// right end).
    pub fn processing(&self, batcher_id: &str) -> String {
        format!("{}:processing:{batcher_id}", self.tag)
    }

    /// The last clear applied to a processing list (`lease:seq`), which makes retrying a clear harmless.
    pub fn cleared(&self, batcher_id: &str) -> String {
        format!("{}:cleared", self.processing(batcher_id))
    }

    /// The ids of the batchers that may have a processing list in this shard.
    pub fn batchers(&self) -> String {
        format!("{}:batchers", self.tag)
    }

    /// The shard's lease: while it exists, only its holder moves elements out of this shard's pending list.
    pub fn lease(&self) -> String {
        format!("{}:lease", self.tag)
    }

    /// The shard's own batch events channel, for sharded pub/sub on a Redis Cluster (see [`Events`]).
    pub fn events(&self) -> String {
        format!("{}:events", self.tag)
    }

    /// The record of an `Idempotency-Key` in this shard (the answer it got), under `…:idempotency:<key>`;
    /// the ingestor passes `batch <key>` for `POST /messages/batch`, so the two endpoints' keys never meet.
    /// A request's record lives in the shard of its first message; a batch whose messages span shards has
    /// one in every shard it pushed to, each holding the whole answer (see the ingestor's `idempotency`).
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idempotency:{key}", self.tag)
    }
}

/// Where a shard's batcher publishes its `batch_persisted` events.
///
/// On one Redis, every shard publishes with `PUBLISH` on [`Keys::events`]. On a Redis Cluster each shard
/// publishes with `SPUBLISH` on its own channel ([`ShardKeys::events`], in the shard's slot), which only the
/// shard's master (and its replicas) carries, and the notifier subscribes to every shard's channel on the
/// master that holds it. A `PUBLISH` there would cross the cluster bus to reach the notifier's node, and
/// Redis 7.0's cluster bus sends without `TCP_NODELAY`: measured on the loopback cluster, one event in ten
/// arrived 30–35 ms late (redis/redis#11869, valkey-io/valkey#1758), which was most of
/// the channel feeds' p99 on the cluster. See `docs/pubsub.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    /// `PUBLISH` or `SPUBLISH`.
    pub command: &'static str,
    pub channel: String,
}

impl Events {
    /// Where `shard`'s events go, on a Redis Cluster or not.
    pub fn of(keys: &Keys, shard: &ShardKeys, cluster: bool) -> Self {
        if cluster {
            Self {
                command: "SPUBLISH",
                channel: shard.events(),
            }
        } else {
            Self {
                command: "PUBLISH",
                channel: keys.events(),
            }
        }
    }

    /// The channels a subscriber follows on a Redis Cluster: every shard's, up to [`MAX_QUEUE_SHARDS`], since
    /// batchers drain the shards of an earlier `QUEUE_SHARDS` too.
    ///
    /// [`MAX_QUEUE_SHARDS`]: crate::config::MAX_QUEUE_SHARDS
    pub fn sharded_channels(keys: &Keys) -> Vec<String> {
        keys.shards(crate::config::MAX_QUEUE_SHARDS)
            .map(|shard| shard.events())
            .collect()
    }
}

/// The shard of a message of `channel_id` when the queue has `shards` shards: jump consistent hashing
/// (Lamping and Veach, 2014) of the channel id. Stable (the same channel always lands in the same shard for
/// the same count), balanced, and when the count changes from n to m > n only about 1 − n/m of the channels
/// move, which keeps most channels' order untouched across a change of `QUEUE_SHARDS`.
pub fn shard_of(channel_id: i64, shards: u32) -> u32 {
    let mut key = channel_id as u64;
    let (mut bucket, mut next) = (-1_i64, 0_i64);
    while next < i64::from(shards.max(1)) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1_u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_zero_keeps_the_single_list_layout_and_others_have_their_own_tag() {
        let keys = Keys::new("ingest");
        let zero = keys.shard(0);
        assert_eq!(zero.pending(), "{ingest}:pending");
        assert_eq!(zero.processing("b1"), "{ingest}:processing:b1");
        assert_eq!(zero.cleared("b1"), "{ingest}:processing:b1:cleared");
        assert_eq!(zero.batchers(), "{ingest}:batchers");
        assert_eq!(zero.lease(), "{ingest}:lease");
        assert_eq!(zero.idempotency("k"), "{ingest}:idempotency:k");
        let three = keys.shard(3);
        assert_eq!(three.tag(), "{ingest:3}");
        assert_eq!(three.pending(), "{ingest:3}:pending");
        assert_eq!(three.processing("b1"), "{ingest:3}:processing:b1");
        assert_eq!(keys.events(), "{ingest}:events");
        assert_eq!(three.events(), "{ingest:3}:events");
        assert_eq!(keys.members(), "{ingest}:members");
        assert_eq!(keys.layouts(), "{ingest}:layouts");
        let indexes: Vec<u32> = keys.shards(3).map(|shard| shard.index()).collect();
        assert_eq!(indexes, [0, 1, 2]);
    }

    #[test]
    fn one_redis_publishes_every_shards_events_on_one_channel_a_cluster_on_each_shards_own() {
        let keys = Keys::new("ingest");
        let three = keys.shard(3);
        let single = Events::of(&keys, &three, false);
        assert_eq!(
            (single.command, single.channel.as_str()),
            ("PUBLISH", "{ingest}:events")
        );
        let cluster = Events::of(&keys, &three, true);
        assert_eq!(
            (cluster.command, cluster.channel.as_str()),
            ("SPUBLISH", "{ingest:3}:events")
        );
        let channels = Events::sharded_channels(&keys);
        assert_eq!(channels.len(), crate::config::MAX_QUEUE_SHARDS as usize);
        assert_eq!(
            (channels[0].as_str(), channels[3].as_str()),
            ("{ingest}:events", "{ingest:3}:events")
        );
    }

    #[test]
    fn a_channel_always_lands_in_the_same_shard() {
        // Fixed values: a change here would re-route every channel of a running deployment.
        let shards: Vec<u32> = (1..=12).map(|channel| shard_of(channel, 12)).collect();
        assert_eq!(shards, [6, 6, 8, 1, 10, 9, 11, 4, 7, 7, 11, 10]);
        for channel in [1, 7, 1 << 40, i64::MAX, -5] {
            assert_eq!(shard_of(channel, 1), 0);
            assert_eq!(shard_of(channel, 0), 0, "0 shards is read as 1");
            assert!(shard_of(channel, 6) < 6);
        }
    }

    #[test]
    fn channels_spread_evenly_and_few_move_when_shards_are_added() {
        let mut counts = [0_u32; 12];
        for channel in 1..=12_000 {
            counts[shard_of(channel, 12) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        // From 6 to 12 shards, a channel either stays or moves to one of the new shards.
        let moved = (1..=12_000)
            .filter(|&channel| {
                let (before, after) = (shard_of(channel, 6), shard_of(channel, 12));
                assert!(after == before || after >= 6);
                after != before
            })
            .count();
        assert!((5_000..7_000).contains(&moved), "{moved} of 12,000 moved");
    }
}
