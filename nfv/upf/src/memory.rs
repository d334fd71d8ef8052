//! In-memory [`Tables`] and [`Io`]: for tests, examples and benchmarks without a host.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::env::{Io, Level, TableError, TableId, Tables};

/// One table: exact entries, or counters for [`TableId::Usage`].
#[derive(Debug, Default, Clone)]
struct Table {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    counters: BTreeMap<Vec<u8>, (u64, u64)>,
    max_entries: Option<usize>,
}

impl Table {
    fn len(&self) -> usize {
        self.entries.len() + self.counters.len()
    }
}

/// Host tables kept in `BTreeMap`s, with an optional entry limit per table and a count of the
/// calls made (one call is one host crossing in the wasm build).
#[derive(Debug, Default, Clone)]
pub struct MemoryTables {
    tables: [Table; 6],
    calls: [u64; 6],
}

impl MemoryTables {
    /// Empty tables without limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits `table` to `max` entries: a put of a new key beyond it fails, as on the host.
    pub fn set_max_entries(&mut self, table: TableId, max: usize) {
        self.tables[table.index()].max_entries = Some(max);
    }

    /// Number of entries in `table`.
    pub fn len(&self, table: TableId) -> usize {
        self.tables[table.index()].len()
    }

    /// Whether every table is empty.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.len() == 0)
    }

    /// The keys of `table`, in order (exact and counter entries).
    pub fn all_keys(&self, table: TableId) -> Vec<Vec<u8>> {
        let t = &self.tables[table.index()];
        let mut keys: Vec<Vec<u8>> = t.entries.keys().chain(t.counters.keys()).cloned().collect();
        keys.sort();
        keys
    }

    /// The counter under `key` in `table` (packets, bytes), without counting a call.
    pub fn counter(&self, table: TableId, key: &[u8]) -> Option<(u64, u64)> {
        self.tables[table.index()].counters.get(key).copied()
    }

    /// Calls made on `table` since creation or [`MemoryTables::reset_calls`].
    pub fn calls(&self, table: TableId) -> u64 {
        self.calls[table.index()]
    }

    /// Sets every call count to zero.
    pub fn reset_calls(&mut self) {
        self.calls = [0; 6];
    }

    fn table(&mut self, table: TableId) -> &mut Table {
        self.calls[table.index()] += 1;
        &mut self.tables[table.index()]
    }
}

impl Tables for MemoryTables {
    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        let t = self.table(table);
        Ok(t.entries.get(key).cloned().or_else(|| {
            t.counters.get(key).map(|(p, b)| {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&p.to_be_bytes());
                v.extend_from_slice(&b.to_be_bytes());
                v
            })
        }))
    }

    fn get_many(
        &mut self,
        table: TableId,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, TableError> {
        let t = self.table(table);
        Ok(keys.iter().map(|k| t.entries.get(k).cloned()).collect())
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        let t = self.table(table);
        if let Some(max) = t.max_entries
            && !t.entries.contains_key(key)
            && t.len() >= max
        {
            return Err(format!("{} is full ({max} entries)", table.name()));
        }
        t.entries.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<bool, TableError> {
        let t = self.table(table);
        Ok(t.entries.remove(key).is_some() | t.counters.remove(key).is_some())
    }

    fn count(
        &mut self,
        table: TableId,
        key: &[u8],
        packets: u64,
        bytes: u64,
    ) -> Result<(u64, u64), TableError> {
        let t = self.table(table);
        if let Some(max) = t.max_entries
            && !t.counters.contains_key(key)
            && t.len() >= max
        {
            return Err(format!("{} is full ({max} entries)", table.name()));
        }
        let c = t.counters.entry(key.to_vec()).or_insert((0, 0));
        c.0 = c.0.wrapping_add(packets);
        c.1 = c.1.wrapping_add(bytes);
        Ok(*c)
    }

    fn keys(
        &mut self,
        table: TableId,
        after: Option<&[u8]>,
        max: u32,
    ) -> Result<Vec<Vec<u8>>, TableError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        self.calls[table.index()] += 1;
        let keys = self.all_keys(table);
        Ok(keys
            .into_iter()
            .filter(|k| after.is_none_or(|a| k.as_slice() > a))
            .take(max)
            .collect())
    }
}

/// An [`Io`] that records what the UPF sends and logs, with a settable clock.
#[derive(Debug, Default, Clone)]
pub struct MemoryIo {
    /// Packets sent with `transmit`: (port, packet).
    pub transmitted: Vec<(u16, Vec<u8>)>,
    /// Datagrams sent with `send_control`: (peer, datagram).
    pub control: Vec<(String, Vec<u8>)>,
    /// Log records.
    pub logs: Vec<(Level, String)>,
    /// What `unix_time_ms` returns.
    pub now_ms: u64,
}

impl MemoryIo {
    /// An empty recorder whose clock reads `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        MemoryIo {
            now_ms,
            ..Default::default()
        }
    }
}

impl Io for MemoryIo {
    fn transmit(&mut self, port: u16, packet: &[u8]) -> Result<(), String> {
        self.transmitted.push((port, packet.to_vec()));
        Ok(())
    }

    fn send_control(&mut self, peer: &str, datagram: &[u8]) -> Result<(), String> {
        self.control.push((String::from(peer), datagram.to_vec()));
        Ok(())
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, String::from(message)));
    }

    fn unix_time_ms(&mut self) -> u64 {
        self.now_ms
    }
}
