//! The UPF as a `network-function` plugin: the WIT exports delegate to [`outpost_upf::Upf`],
//! with [`Tables`] over the host's `tables` resources and [`Io`] over `nf-io`, `log` and the
//! wall clock.
//!
//! The instance keeps only what can be rebuilt: the parsed configuration and the opened table
//! handles. Sessions and every other piece of state are in the host tables, so any call may
//! land on a fresh instance or on a newer version of this plugin.
//!
//! `OUTPOST_UPF_BUILD_TAG` (a number, read when the plugin is compiled) marks a build: see
//! [`BUILD_TAG`]. Release builds leave it unset.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use outpost_sdk::network_function::outpost::plugin::packet_types::{BatchResult, Verdict};
use outpost_sdk::network_function::{Guest, Table, nf_io, open_table};
use outpost_sdk::{config, log};
use outpost_upf::{BatchOut, GTPU_PORT, Io, Level, N3, TableError, TableId, Tables, Upf};

/// This build's tag, from `OUTPOST_UPF_BUILD_TAG` at compile time (0 when unset). A build with a
/// tag writes it into the IPv4 Identification of the GTP-U packets it sends on N3, so a test
/// that swaps between builds sees which one forwarded each packet. The UPF sends atomic
/// datagrams (DF set, never fragmented), whose ID may be any value (RFC 6864, 4.1); with tag 0
/// the packets stay exactly as `outpost_upf` makes them.
pub const BUILD_TAG: u16 = match option_env!("OUTPOST_UPF_BUILD_TAG") {
    Some(tag) => parse_tag(tag),
    None => 0,
};

const fn parse_tag(text: &str) -> u16 {
    let digits = text.as_bytes();
    assert!(!digits.is_empty(), "OUTPOST_UPF_BUILD_TAG is empty");
    let mut value: u32 = 0;
    let mut i = 0;
    while i < digits.len() {
        assert!(
            digits[i].is_ascii_digit(),
            "OUTPOST_UPF_BUILD_TAG is not a number"
        );
        value = value * 10 + (digits[i] - b'0') as u32;
        assert!(
            value <= u16::MAX as u32,
            "OUTPOST_UPF_BUILD_TAG is over 65535"
        );
        i += 1;
    }
    value as u16
}

/// Writes [`BUILD_TAG`] into a GTP-U packet the UPF made (IPv4 without options, ID 0, UDP from
/// port 2152) and refreshes its header checksum; any other packet is left alone.
fn stamp_build_tag(packet: &mut [u8]) {
    let ours = BUILD_TAG != 0
        && packet.len() >= 28
        && packet[0] == 0x45
        && packet[4..6] == [0, 0]
        && packet[9] == 17
        && packet[20..22] == GTPU_PORT.to_be_bytes();
    if !ours {
        return;
    }
    packet[4..6].copy_from_slice(&BUILD_TAG.to_be_bytes());
    packet[10..12].copy_from_slice(&[0, 0]);
    let sum: u32 = packet[..20]
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    packet[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
}

/// Table handles, opened on first use (a table that is not granted fails only when used).
struct GuestTables {
    handles: [Option<Table>; 6],
}

impl GuestTables {
    fn table(&mut self, id: TableId) -> Result<&Table, TableError> {
        let slot = &mut self.handles[id.index()];
        if slot.is_none() {
            *slot = Some(open_table(id.name()).map_err(|e| format!("{}: {e}", id.name()))?);
        }
        slot.as_ref()
            .ok_or_else(|| format!("{}: not open", id.name()))
    }
}

impl Tables for GuestTables {
    fn get(&mut self, table: TableId, key: &[u8]) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self.table(table)?.get(key))
    }

    fn get_many(
        &mut self,
        table: TableId,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, TableError> {
        let found = self.table(table)?.get_many(keys);
        let mut at = 0usize;
        let mut values = Vec::with_capacity(found.lengths.len());
        for len in found.lengths {
            values.push(len.and_then(|len| {
                let end = at.checked_add(len as usize)?;
                let value = found.data.get(at..end)?.to_vec();
                at = end;
                Some(value)
            }));
        }
        Ok(values)
    }

    fn put(&mut self, table: TableId, key: &[u8], value: &[u8]) -> Result<(), TableError> {
        self.table(table)?.put(key, value)
    }

    fn remove(&mut self, table: TableId, key: &[u8]) -> Result<bool, TableError> {
        Ok(self.table(table)?.remove(key))
    }

    fn count(
        &mut self,
        table: TableId,
        key: &[u8],
        packets: u64,
        bytes: u64,
    ) -> Result<(u64, u64), TableError> {
        self.table(table)?.count(key, packets, bytes)
    }

    fn put_many(
        &mut self,
        table: TableId,
        entries: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<Result<(), TableError>> {
        match self.table(table) {
            Ok(t) => t.put_many(entries),
            Err(e) => entries.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    fn count_many(
        &mut self,
        table: TableId,
        entries: &[(Vec<u8>, u64, u64)],
    ) -> Vec<Result<(u64, u64), TableError>> {
        match self.table(table) {
            Ok(t) => t.count_many(entries),
            Err(e) => entries.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    fn keys(
        &mut self,
        table: TableId,
        after: Option<&[u8]>,
        max: u32,
    ) -> Result<Vec<Vec<u8>>, TableError> {
        Ok(self.table(table)?.keys(after, max))
    }
}

/// `nf-io`, `log` and the wall clock.
struct GuestIo;

impl Io for GuestIo {
    fn transmit(&mut self, port: u16, packet: &[u8]) -> Result<(), String> {
        nf_io::transmit(port, packet)
    }

    fn send_control(&mut self, peer: &str, datagram: &[u8]) -> Result<(), String> {
        nf_io::send_control(peer, datagram)
    }

    fn log(&mut self, level: Level, message: &str) {
        match level {
            Level::Trace => log::trace(message),
            Level::Debug => log::debug(message),
            Level::Info => log::info(message),
            Level::Warn => log::warn(message),
            Level::Error => log::error(message),
        }
    }

    fn unix_time_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// What one instance caches: all of it can be rebuilt.
struct Instance {
    upf: Upf,
    tables: GuestTables,
    out: BatchOut,
}

impl Instance {
    fn new() -> Self {
        let upf = Upf::from_lookup(config::get);
        if let Some(e) = upf.config_error() {
            log::error(&format!("UPF disabled, every packet is dropped: {e}"));
        }
        Instance {
            upf,
            tables: GuestTables {
                handles: Default::default(),
            },
            out: BatchOut::new(),
        }
    }
}

thread_local! {
    static INSTANCE: RefCell<Option<Instance>> = const { RefCell::new(None) };
}

fn with_instance<R>(f: impl FnOnce(&mut Instance) -> R) -> R {
    INSTANCE.with(|cell| {
        let mut slot = cell.borrow_mut();
        f(slot.get_or_insert_with(Instance::new))
    })
}

struct UpfPlugin;

impl Guest for UpfPlugin {
    fn process(ingress: Vec<u16>, lengths: Vec<u32>, data: Vec<u8>) -> BatchResult {
        with_instance(|i| {
            let Instance { upf, tables, out } = i;
            upf.process(tables, &mut GuestIo, &ingress, &lengths, &data, out);
            if BUILD_TAG != 0 {
                let mut at = 0usize;
                for (verdict, len) in out.verdicts.iter().zip(&out.lengths) {
                    let end = at + *len as usize;
                    if *verdict == outpost_upf::Verdict::Forward(N3) {
                        stamp_build_tag(&mut out.data[at..end]);
                    }
                    at = end;
                }
            }
            BatchResult {
                verdicts: out
                    .verdicts
                    .iter()
                    .map(|v| match v {
                        outpost_upf::Verdict::Drop => Verdict::Drop,
                        outpost_upf::Verdict::Forward(port) => Verdict::Forward(*port),
                    })
                    .collect(),
                lengths: std::mem::take(&mut out.lengths),
                data: std::mem::take(&mut out.data),
            }
        })
    }

    fn control(peer: String, datagram: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        with_instance(|i| i.upf.control(&mut i.tables, &mut GuestIo, &peer, &datagram))
    }

    fn tick(now_ms: u64) {
        with_instance(|i| i.upf.tick(&mut i.tables, &mut GuestIo, now_ms));
    }
}

outpost_sdk::export_network_function!(UpfPlugin);
