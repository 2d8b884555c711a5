//! Who probes an account (rendezvous assignment) and what the fleet concludes from their votes.

use std::collections::{BTreeMap, BTreeSet};

use pairgate_failover::Health;

/// The replicas assigned to probe `account`: the top `k` live replicas by rendezvous hash, so
/// assignments move little when replicas come and go, and every replica computes the same set.
pub fn assigned(replicas: &BTreeSet<String>, account: &str, k: usize) -> Vec<String> {
    let mut scored: Vec<(u64, &String)> = replicas.iter().map(|r| (score(account, r), r)).collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().take(k).map(|(_, r)| r.clone()).collect()
}

/// FNV-1a of `account`, a zero byte and `replica`: stable across processes and builds
/// (std's `DefaultHasher` promises neither).
fn score(account: &str, replica: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes().chain([0]).chain(replica.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The fleet's verdict from the `assigned` replicas' `votes`: a strict majority of the
/// assigned replicas, unhealthy first. `None` (no majority either way, or nobody assigned)
/// means the previous verdict stands: a split does not flap the account.
pub fn verdict(assigned: &[String], votes: &BTreeMap<String, Health>) -> Option<Health> {
    if assigned.is_empty() {
        return None;
    }
    let count = |h: Health| {
        assigned
            .iter()
            .filter(|r| votes.get(*r) == Some(&h))
            .count()
    };
    let needed = assigned.len() / 2 + 1;
    if count(Health::Unhealthy) >= needed {
        Some(Health::Unhealthy)
    } else if count(Health::Healthy) >= needed {
        Some(Health::Healthy)
    } else {
        None
    }
}
