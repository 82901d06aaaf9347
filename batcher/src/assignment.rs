//! Which shards a batcher should hold, given the live batchers: rendezvous (highest random weight) hashing.
//!
//! Every batcher computes the same answer from the same member list, without talking to the others: shard
//! `s` belongs to the member with the highest `weight(member, s)`. Shards spread evenly, and when a batcher
//! joins or leaves, only the shards it gains or held change hands (about S/B of them), not the others.

/// The shards of `0..shards` that `me` should hold among `members` (which includes `me`).
pub fn shards_for(me: &str, members: &[String], shards: u32) -> Vec<u32> {
    (0..shards)
        .filter(|&shard| owner(members, shard).is_some_and(|owner| owner == me))
        .collect()
}

/// The member that should hold `shard`; `None` without members.
pub fn owner(members: &[String], shard: u32) -> Option<&str> {
    members
        .iter()
        .max_by_key(|member| (weight(member, shard), member.as_str()))
        .map(String::as_str)
}

/// A stable 64-bit hash of (member, shard): FNV-1a over the bytes, finished with SplitMix64's mixer. Fixed
/// here (not `std`'s hasher, which may change between Rust releases) so batchers of different builds agree.
fn weight(member: &str, shard: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn every_shard_has_exactly_one_owner() {
        let all = members(&["a", "b", "c"]);
        let mut owned: Vec<u32> = all.iter().flat_map(|me| shards_for(me, &all, 12)).collect();
        owned.sort_unstable();
        assert_eq!(owned, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn a_lone_batcher_holds_every_shard_and_none_without_members() {
        assert_eq!(shards_for("a", &members(&["a"]), 4), [0, 1, 2, 3]);
        assert_eq!(owner(&[], 0), None);
        assert_eq!(shards_for("a", &[], 4), Vec::<u32>::new());
    }

    #[test]
    fn shards_spread_evenly_over_many_batchers() {
        let all: Vec<String> = (0..10).map(|i| format!("batcher-{i}")).collect();
        for me in &all {
            let count = shards_for(me, &all, 1000).len();
            assert!((60..=140).contains(&count), "{me}: {count} of 1000");
        }
    }

    #[test]
    fn a_joining_batcher_takes_shards_only_for_itself() {
        let before = members(&["a", "b", "c"]);
        let after = members(&["a", "b", "c", "d"]);
        for shard in 0..200 {
            let (old, new) = (
                owner(&before, shard).unwrap(),
                owner(&after, shard).unwrap(),
            );
            assert!(old == new || new == "d", "shard {shard}: {old} → {new}");
        }
        assert!(!shards_for("d", &after, 200).is_empty());
    }

    #[test]
    fn the_answer_is_fixed_across_builds() {
        // A change here changes which batcher drains which shard in a mixed-version deployment.
        assert_eq!(shards_for("a", &members(&["a", "b"]), 8), [1, 5]);
    }
}
