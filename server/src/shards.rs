//! A hash map kept in shards, so that no single insert stops the server.
//!
//! A `std` hash map grows by moving every entry into a table twice the size,
//! inside the insert that crosses the limit. Under the server's lock that
//! insert stalls every client: at 917,504 string keys (the growth to 2^21
//! buckets) one insert took 0.4 to 1.6 s here, and a session setting a
//! million watches crossed it in two tables at once. [`ShardedMap`] spreads
//! the entries over [`SHARDS`] maps chosen by a hash of the key, so each
//! growth moves a sixty-fourth of them. A small map stays one plain map
//! until it holds [`SPLIT_AT`] entries (splitting it then moves only those).
//!
//! Shards are picked with the map's own random hash keys, as `std`'s maps
//! are: clients choose paths, so a fixed hash would let one client pile
//! every key into one shard.
//!
//! The server's maps hash with [`foldhash`]'s fast variant, randomly seeded
//! per map: SipHash, `std`'s default, was 14% of the server's CPU under a
//! create/delete load (each request hashes its path several times).

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// The hasher of the server's maps keyed by what clients send (paths,
/// child names): fast, and seeded at random per map.
pub(crate) type Seeded = foldhash::fast::RandomState;
/// A hash map with the server's hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, Seeded>;
/// A hash set with the server's hasher.
pub(crate) type FastSet<K> = HashSet<K, Seeded>;

/// Shards of a map that has been split (a power of two).
pub(crate) const SHARDS: usize = 64;
/// Entries at which a one-shard map is split into [`SHARDS`].
pub(crate) const SPLIT_AT: usize = 8192;

/// A hash map whose growth happens a shard at a time (module docs).
#[derive(Debug, Clone)]
pub(crate) struct ShardedMap<K, V> {
    picker: Seeded,
    /// One map, or [`SHARDS`] of them.
    shards: Vec<FastMap<K, V>>,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            picker: Seeded::default(),
            shards: vec![FastMap::default()],
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// An empty map.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn index<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        if self.shards.len() == 1 {
            0
        } else {
            // The top bits: the shard's own map uses other hash keys.
            (self.picker.hash_one(key) >> (64 - SHARDS.trailing_zeros())) as usize
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &FastMap<K, V> {
        &self.shards[self.index(key)]
    }

    fn shard_mut<Q: Hash + ?Sized>(&mut self, key: &Q) -> &mut FastMap<K, V> {
        let i = self.index(key);
        &mut self.shards[i]
    }

    /// Splits a one-shard map that has reached [`SPLIT_AT`] entries.
    fn split_if_full(&mut self) {
        if self.shards.len() == 1 && self.shards[0].len() >= SPLIT_AT {
            let one = std::mem::take(&mut self.shards[0]);
            self.shards = (0..SHARDS).map(|_| FastMap::default()).collect();
            for (k, v) in one {
                let i = self.index(&k);
                self.shards[i].insert(k, v);
            }
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// How many maps the entries are spread over (1 or [`SHARDS`]).
    #[cfg(test)]
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Whether the map is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.shards.iter().all(HashMap::is_empty)
    }

    /// The value of `key`.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).get(key)
    }

    /// The value of `key`, mutably.
    pub(crate) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard_mut(key).get_mut(key)
    }

    /// Whether `key` is present.
    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).contains_key(key)
    }

    /// Inserts, returning the value `key` had.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.split_if_full();
        self.shard_mut(&key).insert(key, value)
    }

    /// The entry of `key` (std's entry API, in its shard).
    pub(crate) fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        self.split_if_full();
        self.shard_mut(&key).entry(key)
    }

    /// Removes `key`, returning its value.
    pub(crate) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard_mut(key).remove(key)
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(HashMap::iter)
    }

    /// Every key, in no particular order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.shards.iter().flat_map(HashMap::keys)
    }

    /// Removes and returns at most `max` entries (any), leaving the rest.
    /// Emptied shards cost one check each on later calls, not a rescan.
    pub(crate) fn take(&mut self, max: usize) -> Vec<(K, V)> {
        let mut out = Vec::new();
        for shard in self.shards.iter_mut().rev() {
            if out.len() >= max {
                break;
            }
            if !shard.is_empty() {
                out.extend(shard.extract_if(|_, _| true).take(max - out.len()));
            }
        }
        out
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for ShardedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Self::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<K, V, Q> std::ops::Index<&Q> for ShardedMap<K, V>
where
    K: Hash + Eq + Borrow<Q>,
    Q: Hash + Eq + ?Sized,
{
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key in the map")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_across_the_split() {
        let mut m: ShardedMap<String, usize> = ShardedMap::new();
        let mut reference: HashMap<String, usize> = HashMap::new();
        for i in 0..3 * SPLIT_AT {
            let k = format!("/k{}", i % (2 * SPLIT_AT));
            assert_eq!(m.insert(k.clone(), i), reference.insert(k, i));
            if i % 7 == 0 {
                let gone = format!("/k{}", i / 2);
                assert_eq!(m.remove(gone.as_str()), reference.remove(&gone));
            }
            if i % 5 == 0 {
                *m.entry(format!("/e{i}")).or_default() += 1;
                *reference.entry(format!("/e{i}")).or_default() += 1;
            }
        }
        assert_eq!(m.shards.len(), SHARDS, "split");
        assert!(m.shards.iter().all(|s| !s.is_empty()), "spread");
        assert_eq!(m.len(), reference.len());
        for (k, v) in &reference {
            assert_eq!(m.get(k.as_str()), Some(v));
            assert!(m.contains_key(k.as_str()));
            assert_eq!(m[k.as_str()], *v);
        }
        let mut all: Vec<(String, usize)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut want: Vec<(String, usize)> = reference.into_iter().collect();
        all.sort();
        want.sort();
        assert_eq!(all, want);
        assert_eq!(m.keys().count(), want.len());
        *m.get_mut(want[0].0.as_str()).unwrap() = usize::MAX;
        assert_eq!(m.get(want[0].0.as_str()), Some(&usize::MAX));
    }

    #[test]
    fn take_empties_the_map_in_slices() {
        let mut m: ShardedMap<u64, u64> = (0..20_000u64).map(|i| (i, i * 2)).collect();
        let mut seen = Vec::new();
        loop {
            let slice = m.take(1000);
            assert!(slice.len() <= 1000);
            if slice.is_empty() {
                break;
            }
            seen.extend(slice);
            assert_eq!(m.len() + seen.len(), 20_000);
        }
        assert!(m.is_empty());
        seen.sort();
        assert_eq!(seen, (0..20_000u64).map(|i| (i, i * 2)).collect::<Vec<_>>());
        // Still usable after being emptied.
        m.insert(5, 5);
        assert_eq!(m.get(&5), Some(&5));
        // Taking part leaves the rest findable.
        let mut m: ShardedMap<u64, u64> = (0..20_000u64).map(|i| (i, i)).collect();
        let gone: std::collections::HashSet<u64> =
            m.take(15_000).into_iter().map(|(k, _)| k).collect();
        assert_eq!(gone.len(), 15_000);
        for k in 0..20_000u64 {
            assert_eq!(m.contains_key(&k), !gone.contains(&k), "key {k}");
        }
    }
}
