//! Verified tokens, keyed by the SHA-256 of the token: a repeat token costs a hash and a map
//! read instead of a signature check. Bounded; an entry is used only while its token is
//! unexpired and its issuer's key set is the generation that verified it.

use dashmap::DashMap;

use crate::jwt::Verified;

/// The cache; one per compiled [`Gate`](crate::Gate), so a reload starts it empty.
pub(crate) struct TokenCache {
    map: DashMap<[u8; 32], Verified, foldhash::fast::RandomState>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
        }
    }

    /// The SHA-256 of `token`.
    pub(crate) fn key(token: &str) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// The entry for `key` if it is still good at `now` (unix seconds) for an issuer whose
    /// key set is at `generation(issuer)`.
    pub(crate) fn get(
        &self,
        key: &[u8; 32],
        now: u64,
        generation: impl Fn(usize) -> u64,
    ) -> Option<Verified> {
        let entry = self.map.get(key)?;
        if entry.expires > now && generation(entry.issuer) == entry.generation {
            return Some(entry.clone());
        }
        drop(entry);
        self.map.remove(key);
        None
    }

    /// Remembers a verified token. When full, expired entries go first; if none have, the
    /// cache starts over (cheap, bounded, and only ever costs re-verification).
    pub(crate) fn insert(&self, key: [u8; 32], verified: Verified, now: u64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, v| v.expires > now);
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        self.map.insert(key, verified);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(expires: u64, generation: u64) -> Verified {
        Verified {
            issuer: 0,
            generation,
            expires,
            subject: None,
            tenant: Some("contoso".into()),
        }
    }

    #[test]
    fn entries_expire_with_the_token_and_the_key_set() {
        let cache = TokenCache::new(2);
        let k = TokenCache::key("a.b.c");
        cache.insert(k, verified(100, 1), 50);
        assert!(cache.get(&k, 99, |_| 1).is_some());
        assert!(cache.get(&k, 99, |_| 2).is_none(), "new key set: re-verify");
        cache.insert(k, verified(100, 1), 50);
        assert!(cache.get(&k, 100, |_| 1).is_none(), "expired");
        // Bounded: a third token when two live ones fill it starts over.
        cache.insert(TokenCache::key("1"), verified(100, 1), 50);
        cache.insert(TokenCache::key("2"), verified(100, 1), 50);
        cache.insert(TokenCache::key("3"), verified(100, 1), 50);
        assert!(cache.len() <= 2);
        assert!(cache.get(&TokenCache::key("3"), 60, |_| 1).is_some());
    }
}
