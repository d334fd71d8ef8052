//! [`ExactTable`]: a bounded hash map from byte keys to byte values, sharded so that lookups
//! from many threads rarely meet on the same lock.
//!
//! Each key is hashed once (SipHash with a per-table random key, since keys may come from
//! packets an attacker controls); some middle bits of the hash pick one of 64 shards, each a
//! `hashbrown::HashTable` behind a `parking_lot::RwLock`, with its hit and miss counters in the
//! same cache-aligned slot. The entry count is one atomic, reserved before an insert so the
//! limit holds under concurrent puts.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hashbrown::HashTable;
use parking_lot::RwLock;

use super::spec::{Limits, TableSpec};
use super::{TableError, TableStats};

const SHARDS: usize = 64;

type Entry = (Box<[u8]>, Box<[u8]>);

/// One shard: its entries and lookup counters, on their own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    entries: RwLock<HashTable<Entry>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// An exact-match table of byte keys and values.
pub struct ExactTable {
    name: Arc<str>,
    hasher: RandomState,
    shards: Box<[Shard]>,
    len: AtomicU64,
    limits: Limits,
    insert_failures: AtomicU64,
}

impl std::fmt::Debug for ExactTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactTable")
            .field("name", &self.name)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl ExactTable {
    /// An empty table with `spec`'s limits.
    pub fn new(spec: &TableSpec) -> Self {
        Self {
            name: spec.name.as_str().into(),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            len: AtomicU64::new(0),
            limits: Limits::new(spec),
            insert_failures: AtomicU64::new(0),
        }
    }

    fn locate(&self, key: &[u8]) -> (u64, &Shard) {
        let hash = self.hasher.hash_one(key);
        // hashbrown places entries by the low bits and tags them with the top 7, so the shard
        // comes from bits in between, independent of both.
        let shard = (hash >> 32) as usize % SHARDS;
        (hash, &self.shards[shard])
    }

    /// Calls `f` with the value under `key`, if any, without copying it.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let (hash, shard) = self.locate(key);
        let entries = shard.entries.read();
        match entries.find(hash, |(k, _)| **k == *key) {
            Some((_, value)) => {
                shard.hits.fetch_add(1, Ordering::Relaxed);
                Some(f(value))
            }
            None => {
                shard.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A copy of the value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Inserts or replaces `key`. Fails, changing nothing, when the key is empty or too long,
    /// the value too long, or the table full.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let result = self.try_put(key, value);
        if result.is_err() {
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn try_put(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let table = || self.name.to_string();
        if key.is_empty() {
            return Err(TableError::EmptyKey { table: table() });
        }
        if key.len() > self.limits.max_key_len() {
            return Err(TableError::KeyTooLong {
                table: table(),
                len: key.len(),
                max: self.limits.max_key_len(),
            });
        }
        if value.len() > self.limits.max_value_len() {
            return Err(TableError::ValueTooLong {
                table: table(),
                len: value.len(),
                max: self.limits.max_value_len(),
            });
        }
        let (hash, shard) = self.locate(key);
        let mut entries = shard.entries.write();
        if let Some((_, old)) = entries.find_mut(hash, |(k, _)| **k == *key) {
            *old = value.into();
            return Ok(());
        }
        let max = self.limits.max_entries();
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| TableError::Full {
                table: table(),
                max,
            })?;
        let hasher = &self.hasher;
        entries.insert_unique(hash, (key.into(), value.into()), |(k, _)| {
            hasher.hash_one(k)
        });
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove(&self, key: &[u8]) -> bool {
        let (hash, shard) = self.locate(key);
        let mut entries = shard.entries.write();
        match entries.find_entry(hash, |(k, _)| **k == *key) {
            Ok(entry) => {
                entry.remove();
                self.len.fetch_sub(1, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut entries = shard.entries.write();
            self.len.fetch_sub(entries.len() as u64, Ordering::AcqRel);
            entries.clear();
        }
    }

    /// Calls `f` with every entry, one shard at a time (a concurrent writer may change shards
    /// not yet visited).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for shard in self.shards.iter() {
            for (key, value) in shard.entries.read().iter() {
                f(key, value);
            }
        }
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        let (hits, misses) = self.shards.iter().fold((0, 0), |(h, m), shard| {
            (
                h + shard.hits.load(Ordering::Relaxed),
                m + shard.misses.load(Ordering::Relaxed),
            )
        });
        TableStats {
            entries: self.len(),
            lookups: hits + misses,
            hits,
            misses,
            insert_failures: self.insert_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn grow(&self, spec: &TableSpec) {
        self.limits.set(spec);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableKind;

    fn table(max_entries: u64) -> ExactTable {
        ExactTable::new(&TableSpec {
            max_key_len: 8,
            max_value_len: 4,
            ..TableSpec::new("flows", TableKind::Exact, max_entries)
        })
    }

    #[test]
    fn put_get_replace_remove() {
        let t = table(10);
        t.put(b"k1", b"v1").unwrap();
        t.put(b"k1", b"v2").unwrap();
        assert_eq!(t.get(b"k1"), Some(b"v2".to_vec()));
        assert_eq!(t.len(), 1);
        assert!(t.remove(b"k1"));
        assert!(!t.remove(b"k1"));
        assert_eq!(t.get(b"k1"), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_replaces_existing_ones() {
        let t = table(2);
        t.put(b"a", b"1").unwrap();
        t.put(b"b", b"1").unwrap();
        let err = t.put(b"c", b"1").unwrap_err();
        assert_eq!(err.to_string(), "table \"flows\" is full (2 entries)");
        t.put(b"a", b"2").unwrap();
        t.remove(b"b");
        t.put(b"c", b"1").unwrap();
        assert_eq!(t.stats().insert_failures, 1);
    }

    #[test]
    fn oversize_and_empty_keys_and_values_are_refused() {
        let t = table(10);
        assert!(matches!(
            t.put(b"123456789", b""),
            Err(TableError::KeyTooLong { len: 9, max: 8, .. })
        ));
        assert!(matches!(
            t.put(b"k", b"12345"),
            Err(TableError::ValueTooLong { len: 5, max: 4, .. })
        ));
        assert!(matches!(t.put(b"", b"v"), Err(TableError::EmptyKey { .. })));
        assert!(t.is_empty());
        assert_eq!(t.stats().insert_failures, 3);
    }

    #[test]
    fn lookups_are_counted_as_hits_and_misses() {
        let t = table(10);
        t.put(b"k", b"v").unwrap();
        t.get(b"k");
        t.get(b"k");
        t.get(b"x");
        let stats = t.stats();
        assert_eq!((stats.lookups, stats.hits, stats.misses), (3, 2, 1));
    }

    #[test]
    fn concurrent_puts_never_exceed_the_limit() {
        let t = Arc::new(table(1000));
        let threads: Vec<_> = (0..8u32)
            .map(|thread| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..500u32)
                        .filter(|i| t.put(&(thread * 1000 + i).to_le_bytes(), b"v").is_ok())
                        .count()
                })
            })
            .collect();
        let inserted: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(inserted, 1000);
        assert_eq!(t.len(), 1000);
        let mut seen = 0;
        t.for_each(|_, _| seen += 1);
        assert_eq!(seen, 1000);
    }

    #[test]
    fn clear_empties_every_shard() {
        let t = table(100);
        for i in 0..50u8 {
            t.put(&[i], b"v").unwrap();
        }
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.get(&[1]), None);
    }
}
