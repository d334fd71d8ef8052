//! What the UPF needs from its environment: host tables ([`Tables`]) and packet/control I/O,
//! logging and clocks ([`Io`]). The wasm plugin implements both over the `tables` and `nf-io`
//! imports; a native host implements them over its own tables, so the same logic runs in both.

use alloc::string::String;
use alloc::vec::Vec;

/// The host tables the UPF keeps all its state in (see the crate docs for kinds and sizes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableId {
    /// `upf-state` (exact): node record (recovery time stamp, allocators, associations) and
    /// notification flags.
    State,
    /// `upf-sessions` (exact): local SEID → session record.
    Sessions,
    /// `upf-uplink` (exact): local TEID → compiled uplink rules.
    Uplink,
    /// `upf-downlink` (exact): UE IPv4 address → compiled downlink rules.
    Downlink,
    /// `upf-qer` (exact): SEID and QER ID → token-bucket state.
    Qer,
    /// `upf-usage` (counters): URR volume counters and drop counters.
    Usage,
}

impl TableId {
    /// Every table, in declaration order.
    pub const ALL: [TableId; 6] = [
        TableId::State,
        TableId::Sessions,
        TableId::Uplink,
        TableId::Downlink,
        TableId::Qer,
        TableId::Usage,
    ];

    /// The table's name in the manifest.
    pub const fn name(self) -> &'static str {
        match self {
            TableId::State => "upf-state",
            TableId::Sessions => "upf-sessions",
            TableId::Uplink => "upf-uplink",
            TableId::Downlink => "upf-downlink",
            TableId::Qer => "upf-qer",
            TableId::Usage => "upf-usage",
        }
    }

    /// Position in [`TableId::ALL`], for implementations that keep handles in an array.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Why a table operation failed (not granted, over capacity, host error), in the host's words.
pub type TableError = String;

/// Access to the host tables. Every method is one host crossing in the wasm build; the UPF
/// batches reads with [`Tables::get_many`].
pub trait Tables {
    /// The value under `key`.
    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError>;
    /// The values under `keys`, in order.
    fn get_many(
        &mut self,
        table: TableId,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, TableError>;
    /// Inserts or replaces `key`.
    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), TableError>;
    /// Removes `key`; whether it existed.
    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<bool, TableError>;
    /// Counter tables: adds to the counter under `key` (created at zero); the new totals
    /// (packets, bytes).
    fn count(
        &mut self,
        table: TableId,
        key: &[u8],
        packets: u64,
        bytes: u64,
    ) -> Result<(u64, u64), TableError>;
    /// Up to `max` keys in key order after `after` (exclusive).
    fn keys(
        &mut self,
        table: TableId,
        after: Option<&[u8]>,
        max: u32,
    ) -> Result<Vec<Vec<u8>>, TableError>;
    /// [`Tables::put`] for many `(key, value)` at once (one host crossing in the plugin); each
    /// entry's outcome, in order.
    fn put_many(
        &mut self,
        table: TableId,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<Result<(), TableError>> {
        entries
            .iter()
            .map(|(key, value)| self.put(table, key, value))
            .collect()
    }
    /// [`Tables::count`] for many `(key, packets, bytes)` at once (one host crossing in the
    /// plugin); each entry's totals or error, in order.
    fn count_many(
        &mut self,
        table: TableId,
        entries: &[(Vec<u8>, u64, u64)],
    ) -> Vec<Result<(u64, u64), TableError>> {
        entries
            .iter()
            .map(|(key, packets, bytes)| self.count(table, key, *packets, *bytes))
            .collect()
    }
}

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Per-packet detail.
    Trace,
    /// Diagnostics.
    Debug,
    /// Normal events (association set up, session created).
    Info,
    /// Something the operator may need to look at.
    Warn,
    /// The UPF cannot do its job (bad configuration, table failures).
    Error,
}

/// Packets and datagrams the UPF sends on its own, logging and clocks.
pub trait Io {
    /// Sends a packet out of `port` (0 = N3, 1 = N6) outside any batch (an End Marker).
    fn transmit(&mut self, port: u16, packet: &[u8]) -> Result<(), String>;
    /// Sends a PFCP datagram to `peer` ("ip:port") from the control socket.
    fn send_control(&mut self, peer: &str, datagram: &[u8]) -> Result<(), String>;
    /// Writes a log record.
    fn log(&mut self, level: Level, message: &str);
    /// Wall-clock time, milliseconds since the Unix epoch: token buckets and PFCP time stamps.
    fn unix_time_ms(&mut self) -> u64;
}
