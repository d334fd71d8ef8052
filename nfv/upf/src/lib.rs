//! A 5G user plane function (UPF): the PFCP N4 endpoint and the GTP-U data path between N3
//! (access, port 0) and N6 (data network, port 1), written against two small traits so that
//! the same code runs as a wasm network-function plugin and natively:
//! [`Tables`] (host-owned tables, where *all* state lives) and [`Io`] (transmit, control
//! datagrams, log, wall clock).
//!
//! A [`Upf`] value holds only its [`Config`]: any call may run on a fresh instance or on a new
//! version of the plugin, and finds associations, sessions, allocators, usage counters and
//! policing state in the tables.
//!
//! ```
//! use outpost_upf::{BatchOut, Config, MemoryIo, MemoryTables, Upf, Verdict};
//!
//! let upf = Upf::new(Config::new("192.0.2.1".parse().unwrap()));
//! let (mut tables, mut io) = (MemoryTables::new(), MemoryIo::new(1_700_000_000_000));
//! let mut out = BatchOut::new();
//! // A lone IPv4 packet on N6 for a UE no session has: dropped and counted.
//! let packet = [0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 51, 100, 1, 10, 45, 0, 2];
//! upf.process(&mut tables, &mut io, &[1], &[20], &packet, &mut out);
//! assert_eq!(out.verdicts, [Verdict::Drop]);
//! ```
//!
//! # Tables
//!
//! The manifest declares these tables (`[tables.NAME]`) and grants them all to the plugin.
//! Keys are at most 64 octets (14 except the CP F-SEID index); the value sizes are what a session with a few dozen rules
//! needs.
//!
//! | name | kind | key | value | entries |
//! |---|---|---|---|---|
//! | `upf-state` | exact | `node` (4), or `n`+SEID+FAR ID (13) | node record: ≤ 4 KiB (≈ 60 + 40 per SMF); flag: 1 | 1 + one per FAR that reported buffered data |
//! | `upf-sessions` | exact | local SEID (8, big-endian); `c`+CP SEID+CP Node ID (≤ 64) | session record, ≤ 64 KiB (≈ 100 + 60 per rule + SDF text); index: local SEID (8) | 2 per session |
//! | `upf-uplink` | exact | local TEID (4) | compiled uplink rules, ≤ 16 KiB (≈ 60 per PDR + 20 per SDF filter) | ≈ sessions (one per distinct TEID) |
//! | `upf-downlink` | exact | UE IPv4 address (4) | compiled downlink rules, ≤ 16 KiB | ≈ sessions (one per UE address) |
//! | `upf-qer` | exact | SEID + QER ID (12) | token buckets, 35 | QERs with an MBR |
//! | `upf-usage` | counters | `u`+SEID+URR ID+`u`/`d` (14); `drop/<reason>` (≤ 32) | packets, octets | 2 per URR + [`Reason::ALL`] |
//!
//! Every record starts with a version byte; this build writes version 1 and refuses versions
//! it does not know (a newer plugin must read every older version).
//!
//! # Configuration
//!
//! `n3-address` (required, IPv4), `node-id` (IPv4, default `n3-address`),
//! `heartbeat-interval-ms` (default 5000, 0 disables our Heartbeat Requests). An invalid
//! configuration is logged and every packet is dropped (counted as `drop/bad-config`); PFCP
//! datagrams are not answered.
//!
//! # Choices
//!
//! - Usage volumes count the user's IP packet (the T-PDU uplink, the N6 packet downlink), not
//!   the GTP-U/UDP/IP tunnel, and only packets that are forwarded (after gates and MBR).
//!   Reaching a volume threshold sends a Session Report Request (USAR, trigger VOLTH) and
//!   restarts the measurement; Query URR, Remove URR and Session Deletion report and restart
//!   it too. Packet counts are reported (MNOP).
//! - MBR policing: one token bucket per QER and direction, depth [`BURST_MS`] of the rate
//!   (at least [`MIN_BURST_BITS`]), refilled from the wall clock; a packet over the rate is
//!   dropped (`drop/mbr`).
//! - BUFF is not implemented as buffering: such packets are dropped (`drop/buffer`); with
//!   NOCP the first one since the FAR was created or updated sends a Downlink Data Report.
//! - PFCP requests the UPF starts (heartbeats, session reports) go to the address the
//!   association or session request came from.
//! - A Session Establishment Request with the CP F-SEID of an existing session of the same
//!   CP function is a retransmission: it is answered with that session again.
//!
//! # Limits
//!
//! IPv4 only (outer and inner; no IPv6 F-TEIDs, UE prefixes or Ethernet PDU sessions); no
//! outer fragment reassembly; no UE address allocation (UEIP), buffering, time or quota
//! triggers, Error Indication Reports (ERIR) or retransmission of the requests it starts;
//! Error Indications are not rate-limited; incoming IPv4 checksums are not verified.
#![no_std]

extern crate alloc;

mod codec;
mod compile;
mod config;
mod datapath;
mod env;
mod memory;
mod n4;
mod packet;
mod records;

use alloc::string::String;
use alloc::vec::Vec;

pub use compile::{N3, N6};
pub use config::{Config, DEFAULT_HEARTBEAT_INTERVAL_MS, HEARTBEAT_MISSES_WARN};
pub use datapath::{BURST_MS, BatchOut, MIN_BURST_BITS, Reason, Verdict, drop_key};
pub use env::{Io, Level, TableError, TableId, Tables};
pub use memory::{MemoryIo, MemoryTables};
pub use n4::UP_FUNCTION_FEATURES;
pub use packet::GTPU_PORT;

/// The user plane function: configuration only; all state is in the [`Tables`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upf {
    config: Result<Config, String>,
}

impl Upf {
    /// A UPF with a valid configuration.
    pub fn new(config: Config) -> Self {
        Upf { config: Ok(config) }
    }

    /// A UPF configured through `get` (see [`Config::from_lookup`]); an invalid configuration
    /// is kept as an error: packets are then dropped and PFCP is not answered.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Upf {
            config: Config::from_lookup(get),
        }
    }

    /// The configuration, if valid.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref().ok()
    }

    /// Why the configuration is invalid, if it is.
    pub fn config_error(&self) -> Option<&str> {
        self.config.as_ref().err().map(String::as_str)
    }

    /// Processes one batch: `lengths[i]` octets of `data` arrived on port `ingress[i]`. `out`
    /// receives one verdict per packet and the rewritten packets.
    pub fn process<T: Tables + ?Sized, I: Io + ?Sized>(
        &self,
        tables: &mut T,
        io: &mut I,
        ingress: &[u16],
        lengths: &[u32],
        data: &[u8],
        out: &mut BatchOut,
    ) {
        datapath::process(self.config(), tables, io, ingress, lengths, data, out);
    }

    /// Handles a PFCP datagram from `peer` ("ip:port"); returns the datagrams to send back,
    /// each with its peer.
    pub fn control<T: Tables + ?Sized, I: Io + ?Sized>(
        &self,
        tables: &mut T,
        io: &mut I,
        peer: &str,
        datagram: &[u8],
    ) -> Vec<(String, Vec<u8>)> {
        match &self.config {
            Ok(config) => n4::control(config, tables, io, peer, datagram),
            Err(e) => {
                io.log(
                    Level::Error,
                    &alloc::format!("PFCP from {peer} ignored: {e}"),
                );
                Vec::new()
            }
        }
    }

    /// Periodic work (Heartbeat Requests), with the host's monotonic time in ms.
    pub fn tick<T: Tables + ?Sized, I: Io + ?Sized>(
        &self,
        tables: &mut T,
        io: &mut I,
        now_ms: u64,
    ) {
        if let Ok(config) = &self.config {
            n4::tick(config, tables, io, now_ms);
        }
    }
}

/// One PFCP association as an operator view shows it (read from the `upf-state` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationView {
    /// Where the CP function's messages come from (`ip:port`).
    pub peer: String,
    /// Its Node ID, as the IE value's octets.
    pub node_id: Vec<u8>,
    /// Consecutive unanswered Heartbeat Requests.
    pub heartbeat_misses: u32,
}

/// The key of the node record in the `upf-state` table.
pub const NODE_RECORD_KEY: &[u8] = records::NODE_KEY;

/// The associations in a node record (the value under [`NODE_RECORD_KEY`] in `upf-state`);
/// `None` when the record does not decode.
pub fn associations(node_record: &[u8]) -> Option<Vec<AssociationView>> {
    let node = records::NodeState::decode(node_record).ok()?;
    Some(
        node.associations
            .into_iter()
            .map(|a| AssociationView {
                peer: a.peer,
                node_id: a.node_id,
                heartbeat_misses: a.misses,
            })
            .collect(),
    )
}
