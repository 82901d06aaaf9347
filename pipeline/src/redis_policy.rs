//! Redis must never evict the queue: under an `allkeys-*` `maxmemory-policy`, Redis, once full, deletes any
//! key, the pending list and processing lists included, and messages that got a 201 are lost without a
//! trace. Every service reads the policy at start and refuses to start under such a policy.
//!
//! [`check_eviction_policy`] works on any connection to one node; [`check_every_master`] asks the server, or
//! every master of a Redis Cluster; [`check_at_start`] is what the services call once, where they first
//! connect.
//!
//! A Redis that is unreachable at start is not waited for: the services start without it (they reconnect by
//! themselves), so the check is skipped with a warning and happens at the next start. A Redis that refuses
//! `CONFIG GET` (some managed services rename or forbid it) is also let through with a warning: its policy is
//! the operator's to check.

use std::time::Duration;

use crate::connection::{RedisConn, RedisTarget, Timeouts};

/// The setting read.
pub const SETTING: &str = "maxmemory-policy";
/// How long the check at start may take to connect and get its answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a Redis is not fit to hold the queue, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `maxmemory-policy` is `allkeys-*`: Redis would evict queue keys when full.
    #[error(
        "Redis has maxmemory-policy {0}, which evicts any key when memory is full, queued messages \
         included; set maxmemory-policy to noeviction (or a volatile-* policy) in redis.conf or with \
         `CONFIG SET maxmemory-policy noeviction`"
    )]
    Evicts(String),
    /// Redis answered `CONFIG GET` with an error (the command is disabled or renamed).
    #[error("Redis refused CONFIG GET maxmemory-policy: {0}")]
    Unreadable(String),
    /// Redis could not be reached, or did not answer.
    #[error("Redis did not answer CONFIG GET maxmemory-policy: {0}")]
    Unreachable(String),
}

/// Whether `policy` (the value of `maxmemory-policy`) keeps queue keys: every `allkeys-*` policy evicts keys
/// without a TTL, which is what the queue's lists are; `noeviction` and `volatile-*` only evict keys with one.
pub fn judge(policy: &str) -> Result<(), PolicyError> {
    if policy.trim().to_ascii_lowercase().starts_with("allkeys-") {
        Err(PolicyError::Evicts(policy.to_owned()))
    } else {
        Ok(())
    }
}

/// Reads `maxmemory-policy` on `conn` and [`judge`]s it; returns the policy when it keeps queue keys.
pub async fn check_eviction_policy(
    conn: &mut impl redis::aio::ConnectionLike,
) -> Result<String, PolicyError> {
    // A map under RESP3, a flat [name, value] array under RESP2: both read as a map.
    let answer: redis::RedisResult<std::collections::HashMap<String, String>> =
        redis::cmd("CONFIG")
            .arg("GET")
            .arg(SETTING)
            .query_async(conn)
            .await;
    let settings = match answer {
        Ok(settings) => settings,
        Err(error)
            if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() =>
        {
            return Err(PolicyError::Unreachable(error.to_string()));
        }
        Err(error) => return Err(PolicyError::Unreadable(error.to_string())),
    };
    let policy = settings
        .get(SETTING)
        .ok_or_else(|| PolicyError::Unreadable(format!("no {SETTING} in the answer")))?;
    judge(policy)?;
    Ok(policy.clone())
}

/// Reads `maxmemory-policy` on the server, or on every master of a cluster, and [`judge`]s each.
pub async fn check_every_master(conn: &mut RedisConn) -> Result<String, PolicyError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg(SETTING);
    let answers = conn.on_every_master(cmd).await.map_err(|error| {
        if error.is_io_error() || error.is_timeout() || error.is_connection_dropped() {
            PolicyError::Unreachable(error.to_string())
        } else {
            PolicyError::Unreadable(error.to_string())
        }
    })?;
    let mut policies = Vec::with_capacity(answers.len());
    for answer in answers {
        let settings: std::collections::HashMap<String, String> =
            redis::from_redis_value(answer)
                .map_err(|error| PolicyError::Unreadable(error.to_string()))?;
        let policy = settings
            .get(SETTING)
            .ok_or_else(|| PolicyError::Unreadable(format!("no {SETTING} in the answer")))?;
        judge(policy)?;
        policies.push(policy.clone());
    }
    policies.sort();
    policies.dedup();
    Ok(policies.join(","))
}

/// The check each service runs once at start on a connection of its own to `target` (every master of a
/// cluster): an error only for a policy that evicts queue keys (the service must not start); unreachable or
/// unreadable is a warning.
pub async fn check_at_start(target: &RedisTarget) -> anyhow::Result<()> {
    let check = async {
        let timeouts = Timeouts {
            connect: CHECK_TIMEOUT,
            response: Some(CHECK_TIMEOUT),
        };
        let mut conn = target
            .connect(timeouts)
            .await
            .map_err(|error| PolicyError::Unreachable(error.to_string()))?;
        check_every_master(&mut conn).await
    };
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(PolicyError::Unreachable(format!(
                "no answer within {CHECK_TIMEOUT:?}"
            )))
        });
    match outcome {
        Ok(policy) => {
            tracing::info!(maxmemory_policy = %policy, "Redis keeps queue keys");
            Ok(())
        }
        Err(PolicyError::Evicts(policy)) => Err(anyhow::Error::new(PolicyError::Evicts(policy))
            .context("Refusing to start: Redis could evict queued messages (maxmemory-policy)")),
        Err(error) => {
            tracing::warn!(
                %error,
                "maxmemory-policy not checked: make sure it is noeviction (or volatile-*); it is checked again at the next start"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allkeys_policies_are_refused_and_the_others_kept() {
        for evicting in [
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "ALLKEYS-LRU",
        ] {
            let error = judge(evicting).unwrap_err();
            assert!(matches!(error, PolicyError::Evicts(ref p) if p == evicting));
            let message = error.to_string();
            assert!(message.contains("maxmemory-policy"), "{message}");
            assert!(message.contains(evicting), "{message}");
        }
        for keeping in [
            "noeviction",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
        ] {
            assert!(judge(keeping).is_ok(), "{keeping}");
        }
    }
}
