//! [`CounterTable`]: a fixed array of packet and byte counters (per rule, per session), updated
//! with atomic adds so many workers can count at once without a write lock.
//!
//! Byte encoding: the key is the counter's index as a 4-byte little-endian `u32`; the value is
//! 16 bytes, packets then bytes, each a little-endian `u64`. `put` sets a counter, `remove`
//! resets it, `len` counts the counters that are not zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use super::spec::TableSpec;
use super::{TableError, TableStats};

/// Size of a counter's value in the byte encoding.
pub const COUNTER_VALUE_LEN: usize = 16;

#[derive(Default)]
struct Counter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// A fixed-size array of packet and byte counters.
pub struct CounterTable {
    name: Arc<str>,
    /// The lock only guards growing the array; counting takes it shared.
    counters: RwLock<Vec<Counter>>,
    hits: AtomicU64,
    misses: AtomicU64,
    insert_failures: AtomicU64,
}

impl std::fmt::Debug for CounterTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterTable")
            .field("name", &self.name)
            .field("slots", &self.slots())
            .finish_non_exhaustive()
    }
}

impl CounterTable {
    /// A table of `spec.max_entries` zeroed counters.
    pub fn new(spec: &TableSpec) -> Self {
        let slots = usize::try_from(spec.max_entries).unwrap_or(usize::MAX);
        Self {
            name: spec.name.as_str().into(),
            counters: RwLock::new((0..slots).map(|_| Counter::default()).collect()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            insert_failures: AtomicU64::new(0),
        }
    }

    fn out_of_range(&self, index: u32) -> TableError {
        TableError::CounterOutOfRange {
            table: self.name.to_string(),
            index,
            slots: self.slots(),
        }
    }

    /// Adds `packets` and `bytes` to counter `index`.
    pub fn add(&self, index: u32, packets: u64, bytes: u64) -> Result<(), TableError> {
        let counters = self.counters.read();
        let Some(counter) = counters.get(index as usize) else {
            drop(counters);
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
            return Err(self.out_of_range(index));
        };
        counter.packets.fetch_add(packets, Ordering::Relaxed);
        counter.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Counter `index` as (packets, bytes).
    pub fn get(&self, index: u32) -> Option<(u64, u64)> {
        let counters = self.counters.read();
        let found = counters.get(index as usize).map(|c| {
            (
                c.packets.load(Ordering::Relaxed),
                c.bytes.load(Ordering::Relaxed),
            )
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Sets counter `index`.
    pub fn set(&self, index: u32, packets: u64, bytes: u64) -> Result<(), TableError> {
        let counters = self.counters.read();
        let Some(counter) = counters.get(index as usize) else {
            drop(counters);
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
            return Err(self.out_of_range(index));
        };
        counter.packets.store(packets, Ordering::Relaxed);
        counter.bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Resets counter `index` to zero; returns whether it was not zero.
    pub fn reset(&self, index: u32) -> bool {
        let counters = self.counters.read();
        counters.get(index as usize).is_some_and(|c| {
            let packets = c.packets.swap(0, Ordering::Relaxed);
            let bytes = c.bytes.swap(0, Ordering::Relaxed);
            packets != 0 || bytes != 0
        })
    }

    /// Number of counters.
    pub fn slots(&self) -> usize {
        self.counters.read().len()
    }

    /// Number of counters that are not zero.
    pub fn len(&self) -> u64 {
        let counters = self.counters.read();
        counters.iter().filter(|c| !is_zero(c)).count() as u64
    }

    /// Whether every counter is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resets every counter.
    pub fn clear(&self) {
        for counter in self.counters.read().iter() {
            counter.packets.store(0, Ordering::Relaxed);
            counter.bytes.store(0, Ordering::Relaxed);
        }
    }

    /// Calls `f` with the index and value of every counter that is not zero.
    pub fn for_each(&self, mut f: impl FnMut(u32, u64, u64)) {
        for (index, counter) in self.counters.read().iter().enumerate() {
            if !is_zero(counter) {
                f(
                    index as u32,
                    counter.packets.load(Ordering::Relaxed),
                    counter.bytes.load(Ordering::Relaxed),
                );
            }
        }
    }

    /// Byte API: the 16-byte value of the counter whose 4-byte key is `key`.
    pub fn get_bytes(&self, key: &[u8]) -> Option<[u8; COUNTER_VALUE_LEN]> {
        let index = u32::from_le_bytes(key.try_into().ok()?);
        self.get(index).map(|(p, b)| encode(p, b))
    }

    /// Byte API: sets the counter whose 4-byte key is `key` from a 16-byte value.
    pub fn put_bytes(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let index = self.parse_key(key)?;
        let value: [u8; COUNTER_VALUE_LEN] = value.try_into().map_err(|_| {
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
            TableError::BadCounterValue {
                table: self.name.to_string(),
                len: value.len(),
            }
        })?;
        let (packets, bytes) = decode(value);
        self.set(index, packets, bytes)
    }

    /// Byte API: adds to the counter whose 4-byte key is `key`.
    pub fn add_bytes(&self, key: &[u8], packets: u64, bytes: u64) -> Result<(), TableError> {
        let index = self.parse_key(key)?;
        self.add(index, packets, bytes)
    }

    /// Byte API: resets the counter whose 4-byte key is `key`.
    pub fn remove_bytes(&self, key: &[u8]) -> bool {
        key.try_into()
            .is_ok_and(|k| self.reset(u32::from_le_bytes(k)))
    }

    fn parse_key(&self, key: &[u8]) -> Result<u32, TableError> {
        key.try_into().map(u32::from_le_bytes).map_err(|_| {
            self.insert_failures.fetch_add(1, Ordering::Relaxed);
            TableError::BadCounterKey {
                table: self.name.to_string(),
                len: key.len(),
            }
        })
    }

    /// The table's counters (entries = non-zero counters).
    pub fn stats(&self) -> TableStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        TableStats {
            entries: self.len(),
            lookups: hits + misses,
            hits,
            misses,
            insert_failures: self.insert_failures.load(Ordering::Relaxed),
        }
    }

    /// Extends the array to `spec.max_entries` counters, keeping every value.
    pub(crate) fn grow(&self, spec: &TableSpec) {
        let slots = usize::try_from(spec.max_entries).unwrap_or(usize::MAX);
        let mut counters = self.counters.write();
        if slots > counters.len() {
            counters.resize_with(slots, Counter::default);
        }
    }
}

fn is_zero(counter: &Counter) -> bool {
    counter.packets.load(Ordering::Relaxed) == 0 && counter.bytes.load(Ordering::Relaxed) == 0
}

/// The byte encoding of a counter value.
pub fn encode(packets: u64, bytes: u64) -> [u8; COUNTER_VALUE_LEN] {
    let mut out = [0u8; COUNTER_VALUE_LEN];
    out[..8].copy_from_slice(&packets.to_le_bytes());
    out[8..].copy_from_slice(&bytes.to_le_bytes());
    out
}

/// The counter a byte encoding holds: (packets, bytes).
pub(crate) fn decode(value: [u8; COUNTER_VALUE_LEN]) -> (u64, u64) {
    let (packets, bytes) = value.split_at(8);
    (
        u64::from_le_bytes(packets.try_into().unwrap_or_default()),
        u64::from_le_bytes(bytes.try_into().unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableKind;

    fn table(slots: u64) -> CounterTable {
        CounterTable::new(&TableSpec::new("usage", TableKind::Counters, slots))
    }

    #[test]
    fn adds_accumulate_per_index() {
        let t = table(4);
        t.add(1, 1, 100).unwrap();
        t.add(1, 2, 50).unwrap();
        assert_eq!(t.get(1), Some((3, 150)));
        assert_eq!(t.get(0), Some((0, 0)));
        assert_eq!(t.len(), 1);
        assert!(t.reset(1));
        assert!(!t.reset(1));
        assert!(t.is_empty());
    }

    #[test]
    fn an_index_beyond_the_array_is_an_error() {
        let t = table(4);
        let err = t.add(4, 1, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "table \"usage\": counter index 4 is beyond its 4 counters"
        );
        assert_eq!(t.get(4), None);
        assert_eq!(t.stats().insert_failures, 1);
    }

    #[test]
    fn the_byte_api_uses_little_endian_index_and_value() {
        let t = table(4);
        t.put_bytes(&2u32.to_le_bytes(), &encode(7, 700)).unwrap();
        t.add_bytes(&2u32.to_le_bytes(), 1, 1).unwrap();
        assert_eq!(t.get_bytes(&2u32.to_le_bytes()), Some(encode(8, 701)));
        assert!(matches!(
            t.put_bytes(&[1, 2], &encode(0, 0)),
            Err(TableError::BadCounterKey { len: 2, .. })
        ));
        assert!(matches!(
            t.put_bytes(&1u32.to_le_bytes(), &[0; 8]),
            Err(TableError::BadCounterValue { len: 8, .. })
        ));
        assert!(t.remove_bytes(&2u32.to_le_bytes()));
    }

    #[test]
    fn concurrent_adds_are_not_lost() {
        let t = Arc::new(table(2));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        t.add(1, 1, 64).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(t.get(1), Some((80_000, 80_000 * 64)));
    }

    #[test]
    fn growing_keeps_the_counts() {
        let t = table(2);
        t.add(1, 5, 5).unwrap();
        t.grow(&TableSpec::new("usage", TableKind::Counters, 8));
        assert_eq!(t.slots(), 8);
        assert_eq!(t.get(1), Some((5, 5)));
        t.add(7, 1, 1).unwrap();
    }
}
