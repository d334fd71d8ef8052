//! Host-owned tables: named state that outlives every version of the plugin using it (the
//! model of eBPF maps). A plugin reaches them through the `tables` interface of the
//! network-function world (`open(name)`, then `get`/`put`/`remove`/`len` on byte keys and
//! values); the host creates them from the manifest through [`TableSet::reconcile`].
//!
//! Three kinds, each bounded by its [`TableSpec`], none growing without limit:
//! - [`ExactTable`]: byte keys to byte values (sessions by TEID, flows by 5-tuple);
//! - [`LpmTable`]: longest-prefix match on IPv4/IPv6 (routes, UE pools);
//! - [`CounterTable`]: per-rule packet and byte counters with atomic adds.
//!
//! A refused `put` returns a [`TableError`] whose text is what the plugin receives.
//!
//! ```
//! use outpost_dataplane::table::{TableKind, TableSet, TableSpec};
//!
//! let tables = TableSet::new();
//! tables.reconcile(&[TableSpec::new("sessions", TableKind::Exact, 1000)]).unwrap();
//! let sessions = tables.open("sessions").unwrap();
//! sessions.put(&0x1234u32.to_be_bytes(), b"session state").unwrap();
//!
//! // A new plugin version, and a manifest that gives the table more room: contents stay.
//! tables.reconcile(&[TableSpec::new("sessions", TableKind::Exact, 5000)]).unwrap();
//! let again = tables.open("sessions").unwrap();
//! assert_eq!(again.get(&0x1234u32.to_be_bytes()).unwrap(), b"session state");
//! ```

mod counters;
mod exact;
mod lpm;
mod set;
mod snapshot;
mod spec;

use std::io;
use std::path::PathBuf;

use parking_lot::Mutex;
use thiserror::Error;

pub use counters::{COUNTER_VALUE_LEN, CounterTable};
pub use exact::ExactTable;
pub use lpm::LpmTable;
pub use set::{ReconcileReport, RestoreReport, TableSet};
pub use spec::{MAX_COUNTERS, MAX_KEY_LEN, MAX_NAME_LEN, MAX_VALUE_LEN, TableKind, TableSpec};

/// Why a table operation was refused. The text is what a plugin reads from `put`'s error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// An empty key.
    #[error("table {table:?}: key is empty")]
    EmptyKey {
        /// The table.
        table: String,
    },
    /// A key longer than the table's `max-key-len`.
    #[error("table {table:?}: key of {len} bytes exceeds max-key-len {max}")]
    KeyTooLong {
        /// The table.
        table: String,
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than the table's `max-value-len`.
    #[error("table {table:?}: value of {len} bytes exceeds max-value-len {max}")]
    ValueTooLong {
        /// The table.
        table: String,
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A new key in a table holding `max-entries` entries.
    #[error("table {table:?} is full ({max} entries)")]
    Full {
        /// The table.
        table: String,
        /// The limit.
        max: u64,
    },
    /// An LPM key that is neither 5 nor 17 bytes.
    #[error(
        "table {table:?}: an LPM key is a prefix length then 4 (IPv4) or 16 (IPv6) address bytes, got {len} bytes"
    )]
    BadLpmKey {
        /// The table.
        table: String,
        /// The key's length.
        len: usize,
    },
    /// A prefix length beyond the address size.
    #[error("table {table:?}: prefix length {prefix_len} exceeds {max} for this address family")]
    BadPrefixLength {
        /// The table.
        table: String,
        /// The prefix length given.
        prefix_len: u8,
        /// The address size in bits.
        max: u8,
    },
    /// An LPM prefix with bits set beyond its length (`10.0.0.1/8`).
    #[error("table {table:?}: address has bits set beyond its /{prefix_len} prefix")]
    HostBitsSet {
        /// The table.
        table: String,
        /// The prefix length given.
        prefix_len: u8,
    },
    /// A counter key that is not 4 bytes.
    #[error("table {table:?}: a counter key is a 4-byte little-endian index, got {len} bytes")]
    BadCounterKey {
        /// The table.
        table: String,
        /// The key's length.
        len: usize,
    },
    /// A counter value that is not 16 bytes.
    #[error(
        "table {table:?}: a counter value is 16 bytes (packets then bytes, little-endian u64), got {len}"
    )]
    BadCounterValue {
        /// The table.
        table: String,
        /// The value's length.
        len: usize,
    },
    /// A counter index at or beyond the table's size.
    #[error("table {table:?}: counter index {index} is beyond its {slots} counters")]
    CounterOutOfRange {
        /// The table.
        table: String,
        /// The index given.
        index: u32,
        /// Number of counters.
        slots: usize,
    },
    /// `count` on an LPM table.
    #[error("table `{table}` is an lpm table: it cannot count")]
    CannotCount {
        /// The table.
        table: String,
    },
    /// A counter operation on a table of another kind.
    #[error("table {table:?} is an {kind} table, not a counters table")]
    NotCounters {
        /// The table.
        table: String,
        /// Its kind.
        kind: TableKind,
    },
}

/// Why a set of tables could not be reconciled, snapshotted or restored.
#[derive(Debug, Error)]
pub enum TableSetError {
    /// A spec with impossible limits.
    #[error("table {table:?}: {reason}")]
    InvalidSpec {
        /// The table.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// Two specs with the same name.
    #[error("table {0:?} is declared twice")]
    DuplicateTable(String),
    /// The snapshot file could not be read or written.
    #[error("table snapshot {path}: {source}")]
    SnapshotIo {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The snapshot file is not a valid snapshot.
    #[error("table snapshot {path} is corrupt: {reason}")]
    CorruptSnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
    },
}

/// A table's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// Entries held (non-zero counters for a counters table).
    pub entries: u64,
    /// Lookups (`get`).
    pub lookups: u64,
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Refused `put`s (and counter adds out of range).
    pub insert_failures: u64,
}

/// One host-owned table of any kind, with the byte API the `tables` interface exposes.
#[derive(Debug)]
pub struct Table {
    name: String,
    spec: Mutex<TableSpec>,
    store: Store,
}

#[derive(Debug)]
enum Store {
    Exact(ExactTable),
    Lpm(LpmTable),
    Counters(CounterTable),
}

impl Table {
    /// An empty table for `spec` (checked with [`TableSpec::validate`] first).
    pub fn new(spec: &TableSpec) -> Result<Self, TableSetError> {
        spec.validate()?;
        let store = match spec.kind {
            TableKind::Exact => Store::Exact(ExactTable::new(spec)),
            TableKind::Lpm => Store::Lpm(LpmTable::new(spec)),
            TableKind::Counters => Store::Counters(CounterTable::new(spec)),
        };
        Ok(Self {
            name: spec.name.clone(),
            spec: Mutex::new(spec.clone()),
            store,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's kind.
    pub fn kind(&self) -> TableKind {
        match self.store {
            Store::Exact(_) => TableKind::Exact,
            Store::Lpm(_) => TableKind::Lpm,
            Store::Counters(_) => TableKind::Counters,
        }
    }

    /// The spec the table currently enforces.
    pub fn spec(&self) -> TableSpec {
        self.spec.lock().clone()
    }

    /// Calls `f` with the value under `key` without copying it: an exact match, a longest-prefix
    /// match for a plain address in an LPM table, or a counter's 16-byte value.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match &self.store {
            Store::Exact(t) => t.get_with(key, f),
            Store::Lpm(t) => t.get_with(key, f),
            Store::Counters(t) => t.get_bytes(key).map(|v| f(&v)),
        }
    }

    /// A copy of the value under `key` (see [`Table::get_with`]).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Inserts or replaces `key` (sets a counter in a counters table).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        match &self.store {
            Store::Exact(t) => t.put(key, value),
            Store::Lpm(t) => t.put(key, value),
            Store::Counters(t) => t.put_bytes(key, value),
        }
    }

    /// Removes `key` (resets a counter); returns whether it was there (non-zero).
    pub fn remove(&self, key: &[u8]) -> bool {
        match &self.store {
            Store::Exact(t) => t.remove(key),
            Store::Lpm(t) => t.remove(key),
            Store::Counters(t) => t.remove_bytes(key),
        }
    }

    /// Adds to the counter under `key` (4-byte little-endian index); only for counters tables.
    pub fn add(&self, key: &[u8], packets: u64, bytes: u64) -> Result<(), TableError> {
        match &self.store {
            Store::Counters(t) => t.add_bytes(key, packets, bytes),
            Store::Exact(_) | Store::Lpm(_) => Err(TableError::NotCounters {
                table: self.name.clone(),
                kind: self.kind(),
            }),
        }
    }

    /// Adds `packets` and `bytes` to the counter under `key` and returns its new totals. A
    /// counters table counts atomically under a 4-byte index key; an exact table keeps the
    /// counter as a 16-byte value (packets, bytes, little endian) under any key, read, added to
    /// and written back. LPM tables do not count.
    pub fn count(&self, key: &[u8], packets: u64, bytes: u64) -> Result<(u64, u64), TableError> {
        let totals = |v: Option<Vec<u8>>| {
            v.and_then(|v| <[u8; COUNTER_VALUE_LEN]>::try_from(v.as_slice()).ok())
                .map_or((0, 0), counters::decode)
        };
        match &self.store {
            Store::Counters(t) => {
                t.add_bytes(key, packets, bytes)?;
                Ok(totals(self.get(key)))
            }
            Store::Exact(t) => {
                let (p, b) = totals(t.get(key));
                let total = (p.saturating_add(packets), b.saturating_add(bytes));
                t.put(key, &counters::encode(total.0, total.1))?;
                Ok(total)
            }
            Store::Lpm(_) => Err(TableError::CannotCount {
                table: self.name.clone(),
            }),
        }
    }

    /// Up to `max` keys, in key order, after `after` (exclusive): pages through the table.
    pub fn keys(&self, after: Option<&[u8]>, max: usize) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        self.for_each(|k, _| {
            if after.is_none_or(|a| k > a) {
                keys.push(k.to_vec());
            }
        });
        keys.sort_unstable();
        keys.truncate(max);
        keys
    }

    /// Number of entries (non-zero counters for a counters table).
    pub fn len(&self) -> u64 {
        match &self.store {
            Store::Exact(t) => t.len(),
            Store::Lpm(t) => t.len(),
            Store::Counters(t) => t.len(),
        }
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every entry (zeroes every counter).
    pub fn clear(&self) {
        match &self.store {
            Store::Exact(t) => t.clear(),
            Store::Lpm(t) => t.clear(),
            Store::Counters(t) => t.clear(),
        }
    }

    /// Calls `f` with every entry in the byte encoding `put` accepts.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        match &self.store {
            Store::Exact(t) => t.for_each(f),
            Store::Lpm(t) => t.for_each(f),
            Store::Counters(t) => t.for_each(|index, packets, bytes| {
                f(&index.to_le_bytes(), &counters::encode(packets, bytes));
            }),
        }
    }

    /// The table's counters.
    pub fn stats(&self) -> TableStats {
        match &self.store {
            Store::Exact(t) => t.stats(),
            Store::Lpm(t) => t.stats(),
            Store::Counters(t) => t.stats(),
        }
    }

    /// The exact table inside, if it is one.
    pub fn as_exact(&self) -> Option<&ExactTable> {
        match &self.store {
            Store::Exact(t) => Some(t),
            _ => None,
        }
    }

    /// The LPM table inside, if it is one.
    pub fn as_lpm(&self) -> Option<&LpmTable> {
        match &self.store {
            Store::Lpm(t) => Some(t),
            _ => None,
        }
    }

    /// The counters table inside, if it is one.
    pub fn as_counters(&self) -> Option<&CounterTable> {
        match &self.store {
            Store::Counters(t) => Some(t),
            _ => None,
        }
    }

    /// Raises the limits to `spec`'s (which covers the current one), keeping the contents.
    pub(crate) fn grow(&self, spec: &TableSpec) {
        let mut current = self.spec.lock();
        match &self.store {
            Store::Exact(t) => t.grow(spec),
            Store::Lpm(t) => t.grow(spec),
            Store::Counters(t) => t.grow(spec),
        }
        *current = spec.clone();
    }
}
