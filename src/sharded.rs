//! A hash map that a long URL list can grow without a spike: split into parts by the top bits
//! of a key that is already uniformly spread (a keyed hash).
//!
//! A single `HashMap` doubles in one step and holds the old and the new table while it moves:
//! 1.5 × its size at that moment. In 64 parts each doubles on its own, so a move holds at most
//! 1/64 of the table twice. For the names that clash in [`crate::naming`], which a list may
//! grow but seldom does; the per-URL tables are [`crate::packed`] maps, smaller still.

use std::collections::HashMap;
use std::hash::Hash;

const PARTS: usize = 64;

/// A key whose top bits are as good as random: they pick the part.
pub(crate) trait Spread {
    /// A number in `0..64`.
    fn part(&self) -> usize;
}

impl Spread for u64 {
    fn part(&self) -> usize {
        (self >> 58) as usize
    }
}

#[derive(Debug)]
pub(crate) struct ShardedMap<K, V> {
    parts: Vec<HashMap<K, V>>,
}

impl<K: Spread + Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            // Empty maps allocate nothing: a short list pays for the parts it uses.
            parts: (0..PARTS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl<K: Spread + Hash + Eq, V> ShardedMap<K, V> {
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.parts[key.part()].get(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.parts[key.part()].insert(key, value)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(HashMap::len).sum()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.parts.iter().all(HashMap::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_finds_its_own_part() {
        let mut map = ShardedMap::default();
        assert!(map.is_empty());
        let keys: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for (i, &k) in keys.iter().enumerate() {
            assert_eq!(map.insert(k, i), None);
        }
        assert_eq!(map.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(map.get(k), Some(&i));
        }
        assert_eq!(map.get(&1), None);
        assert!(
            map.parts.iter().all(|p| !p.is_empty()),
            "spread over all parts"
        );
    }
}
