//! A map from uniformly spread keys (digests, keyed hashes) to small fixed-size values, kept at
//! its exact size however long the list that grows it.
//!
//! What a long URL list grows is two per-URL tables: the duplicate check in [`crate::select`]
//! and the reserved names in [`crate::naming`]. A hash table holds each entry with its slack
//! (after a doubling, half its buckets are empty) and, while it doubles, the old and the new
//! table at once. Here the bulk of the entries sit in one sorted array with no slack, and each
//! key's top 16 bits are not stored at all: a directory of 65 536 offsets says where the keys of
//! each top begin. New keys go to a small hash map, which is merged into the array, in place
//! and from the back, whenever it is as full as its buckets allow and at least a fixed share of
//! the array: so it never grows past that share, and each entry is moved a bounded number of
//! times over a run. The array grows by the batch alone (`reserve_exact`; a large block is grown by
//! `mremap` with glibc, not copied).

use std::collections::HashMap;

/// Tops a key can have: its first 16 bits.
const TOPS: usize = 1 << 16;

/// The smallest batch merged into the array: below it a list lives in the hash map alone.
const MIN_BATCH: usize = 8192;

/// The array grows by at least 1/`SHARE` of itself at a merge: each entry is moved at most some
/// `SHARE` times, and the hash map stays below 1/`SHARE` of the array (beyond `MIN_BATCH`).
const SHARE: usize = 128;

/// A key: its top 16 bits (implied by position once merged) and the `K` bytes that are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key<const K: usize> {
    pub(crate) top: u16,
    pub(crate) rest: [u8; K],
}

#[derive(Debug, Default)]
pub(crate) struct PackedMap<const K: usize, const V: usize> {
    /// Inserted since the last merge.
    recent: HashMap<Key<K>, [u8; V]>,
    /// `starts[t]..starts[t + 1]` are the merged keys whose top is `t`; empty before the first
    /// merge. `u32`: a merge that would take the array past `u32::MAX` entries does not happen
    /// (the hash map goes on growing instead).
    starts: Vec<u32>,
    /// The merged keys, sorted, without their tops; `values` beside them, index for index.
    rests: Vec<[u8; K]>,
    values: Vec<[u8; V]>,
}

impl<const K: usize, const V: usize> PackedMap<K, V> {
    pub(crate) fn get(&self, key: &Key<K>) -> Option<[u8; V]> {
        if let Some(value) = self.recent.get(key) {
            return Some(*value);
        }
        self.find(key).map(|i| self.values[i])
    }

    pub(crate) fn contains(&self, key: &Key<K>) -> bool {
        self.get(key).is_some()
    }

    /// Adds `key` with `value` unless it is there already: then its value, unchanged.
    pub(crate) fn insert_new(&mut self, key: Key<K>, value: [u8; V]) -> Result<(), [u8; V]> {
        if let Some(first) = self.get(&key) {
            return Err(first);
        }
        let batch = MIN_BATCH.max(self.rests.len() / SHARE);
        let fits = u32::try_from(self.rests.len() + self.recent.len()).is_ok();
        if self.recent.len() >= self.recent.capacity() && self.recent.len() >= batch && fits {
            self.merge();
        }
        self.recent.insert(key, value);
        Ok(())
    }

    /// Takes `key` out; whether it was there. Rare (a name given back), so an entry in the array
    /// costs a move of the entries after it.
    pub(crate) fn remove(&mut self, key: &Key<K>) -> bool {
        if self.recent.remove(key).is_some() {
            return true;
        }
        let Some(i) = self.find(key) else {
            return false;
        };
        self.rests.remove(i);
        self.values.remove(i);
        for start in &mut self.starts[usize::from(key.top) + 1..] {
            // Never below zero: the tops above this key's start at or past it.
            *start -= 1;
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.recent.len() + self.rests.len()
    }

    fn find(&self, key: &Key<K>) -> Option<usize> {
        let top = usize::from(key.top);
        let (from, to) = (*self.starts.get(top)?, *self.starts.get(top + 1)?);
        let (from, to) = (from as usize, to as usize);
        let at = self.rests[from..to].binary_search(&key.rest).ok()?;
        Some(from + at)
    }

    /// Moves the recent keys into the sorted array: a backward merge in place, then the
    /// directory shifted by the number of new keys below each top.
    fn merge(&mut self) {
        let mut batch: Vec<(Key<K>, [u8; V])> = self.recent.drain().collect();
        batch.sort_unstable_by_key(|entry| entry.0);
        if self.starts.is_empty() {
            self.starts = vec![0; TOPS + 1];
        }
        let old = self.rests.len();
        self.rests.reserve_exact(batch.len());
        self.values.reserve_exact(batch.len());
        self.rests.resize(old + batch.len(), [0; K]);
        self.values.resize(old + batch.len(), [0; V]);
        let (mut i, mut j) = (old, batch.len());
        // The top of the old key `i - 1`: only ever goes down as `i` does.
        let mut top = TOPS - 1;
        while j > 0 {
            let w = i + j - 1;
            let old_is_larger = i > 0 && {
                while self.starts[top] as usize > i - 1 {
                    top -= 1;
                }
                (top, &self.rests[i - 1]) > (usize::from(batch[j - 1].0.top), &batch[j - 1].0.rest)
            };
            if old_is_larger {
                i -= 1;
                self.rests[w] = self.rests[i];
                self.values[w] = self.values[i];
            } else {
                j -= 1;
                self.rests[w] = batch[j].0.rest;
                self.values[w] = batch[j].1;
            }
        }
        let mut below = 0;
        for (t, start) in self.starts.iter_mut().enumerate() {
            while below < batch.len() && usize::from(batch[below].0.top) < t {
                below += 1;
            }
            // Fits: `insert_new` merges only while the whole array fits in a `u32`.
            *start += below as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distinct keys (for `i` below 2^24): tops spread over the whole range, a third of them
    /// crowded into 256 tops, in no order.
    fn key(i: u64) -> Key<3> {
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = i.to_be_bytes();
        Key {
            top: (h >> 48) as u16 & if i % 3 == 0 { 0x00ff } else { 0xffff },
            rest: [b[5], b[6], b[7]],
        }
    }

    #[test]
    fn every_key_is_found_once_across_merges() {
        let mut map: PackedMap<3, 4> = PackedMap::default();
        let n = 60_000u64;
        for i in 0..n {
            assert_eq!(map.insert_new(key(i), (i as u32).to_be_bytes()), Ok(()));
        }
        assert!(!map.rests.is_empty(), "some merges happened");
        assert!(map.recent.len() < MIN_BATCH * 2);
        assert_eq!(map.len(), n as usize);
        for i in 0..n {
            // The first value stays: a later insert of the same key is refused with it.
            assert_eq!(map.get(&key(i)), Some((i as u32).to_be_bytes()), "{i}");
            assert_eq!(
                map.insert_new(key(i), [9; 4]),
                Err((i as u32).to_be_bytes())
            );
        }
        assert_eq!(map.len(), n as usize);
        assert!(map.rests.windows(2).enumerate().all(|(i, w)| {
            // Sorted within each top.
            let t = map.starts.partition_point(|&s| s as usize <= i) - 1;
            i + 1 >= map.starts[t + 1] as usize || w[0] < w[1]
        }));
        for i in n..n + 1000 {
            assert!(!map.contains(&key(i)), "{i}");
        }
    }

    #[test]
    fn removed_keys_are_gone_wherever_they_were() {
        let mut map: PackedMap<3, 0> = PackedMap::default();
        let n = 20_000u64;
        for i in 0..n {
            assert!(map.insert_new(key(i), []).is_ok());
        }
        let (merged, recent) = (key(5), key(n - 1));
        assert!(map.recent.contains_key(&recent) && !map.recent.contains_key(&merged));
        for k in [merged, recent] {
            assert!(map.remove(&k));
            assert!(!map.contains(&k));
            assert!(!map.remove(&k));
        }
        for i in (0..n).filter(|&i| i != 5 && i != n - 1) {
            assert!(map.contains(&key(i)), "{i}");
        }
        assert!(map.insert_new(merged, []).is_ok());
        assert!(map.contains(&merged));
    }

    #[test]
    fn a_short_list_never_merges() {
        let mut map: PackedMap<6, 0> = PackedMap::default();
        for i in 0..MIN_BATCH as u64 {
            let b = i.to_be_bytes();
            assert!(map
                .insert_new(
                    Key {
                        top: 7,
                        rest: [b[2], b[3], b[4], b[5], b[6], b[7]]
                    },
                    []
                )
                .is_ok());
        }
        assert!(map.starts.is_empty() && map.rests.is_empty());
    }
}
