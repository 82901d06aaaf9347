//! Names of every Redis key and channel the pipeline uses.
//!
//! All of them start with the same hash tag, `{<REDIS_KEY_PREFIX>}`, so they live in one Redis Cluster slot and
//! the Lua scripts that touch several of them keep to one slot. (The services' Redis client is not
//! cluster-aware: on a cluster, point `REDIS_URL` at the node owning the prefix's slot.)

/// Key and channel names under one `REDIS_KEY_PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    tag: String,
}

impl Keys {
    /// Keys under `prefix` (already validated by [`crate::config::parse_key_part`]).
    pub fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    /// The list the ingestor `LPUSH`es onto and batchers move from (oldest at the right end).
    pub fn pending(&self) -> String {
        format!("{}:pending", self.tag)
    }

    /// A batcher's processing list: what it has taken and not yet committed (oldest at the right end).
    pub fn processing(&self, batcher_id: &str) -> String {
        format!("{}:processing:{batcher_id}", self.tag)
    }

    /// A batcher's heartbeat; while it exists, nobody else touches that batcher's processing list.
    pub fn heartbeat(&self, batcher_id: &str) -> String {
        format!("{}:heartbeat:{batcher_id}", self.tag)
    }

    /// The set of batcher ids that may own a processing list.
    pub fn batchers(&self) -> String {
        format!("{}:batchers", self.tag)
    }

    /// The pub/sub channel carrying `batch_persisted` events.
    pub fn events(&self) -> String {
        format!("{}:events", self.tag)
    }

    /// The message id remembered for an `Idempotency-Key`.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{}:idempotency:{key}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_one_hash_tag() {
        let keys = Keys::new("ingest");
        assert_eq!(keys.pending(), "{ingest}:pending");
        assert_eq!(keys.processing("b1"), "{ingest}:processing:b1");
        assert_eq!(keys.heartbeat("b1"), "{ingest}:heartbeat:b1");
        assert_eq!(keys.batchers(), "{ingest}:batchers");
        assert_eq!(keys.events(), "{ingest}:events");
        assert_eq!(keys.idempotency("k"), "{ingest}:idempotency:k");
    }
}
