//! The data path: one call per batch of packets from N3 and N6.
//!
//! A batch costs a fixed number of table crossings, whatever its size: one `get-many` for
//! the TEIDs of its G-PDUs, one for the UE addresses of its downlink packets, one `get-many`
//! and one `put` per policed QER it touches, one `count` per URR direction it touches and one
//! per drop reason it saw. Everything else is computed in instance memory.
//!
//! Uplink (N3, port 0): IPv4/UDP to the N3 address, port 2152. A GTP-U Echo Request is
//! answered on N3; a G-PDU is matched on its TEID (then PDU Session Container QFI, UE address
//! and SDF filters, by precedence), its FAR, QERs and URRs applied, the outer header removed
//! and the T-PDU sent on N6. A G-PDU to an unknown TEID is answered with an Error Indication.
//!
//! Downlink (N6, port 1): an IPv4 packet is matched on its destination (the UE address), then
//! SDF filters; the FAR's outer header (GTP-U/UDP/IPv4, PDU Session Container with the QFI of
//! the QER or PDR) is added and the packet sent on N3.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr};

use outpost_gtpu::{ExtensionHeaderRepr, Message, MessageType, Repr};
use outpost_pfcp::UsageReportTrigger;

use crate::compile::{N3, N6};
use crate::config::Config;
use crate::env::{Io, Level, TableId, Tables};
use crate::n4;
use crate::packet::{self, GTPU_PORT, Ipv4Info};
use crate::records::{AddressMatch, Bucket, Filter, Outcome, Rule, RuleSet, qer_key, usage_key};

/// What happens to one packet of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Discard it.
    Drop,
    /// Send the rewritten packet out of this port.
    Forward(u16),
}

/// The answer to a batch: one verdict per packet, and the rewritten packets concatenated with
/// their lengths (0 for a dropped packet). Reuse one across batches to keep its buffers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOut {
    /// One verdict per input packet, in order.
    pub verdicts: Vec<Verdict>,
    /// Length of each output packet, in order.
    pub lengths: Vec<u32>,
    /// Output packets, concatenated.
    pub data: Vec<u8>,
}

impl BatchOut {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties it, keeping the buffers.
    pub fn clear(&mut self) {
        self.verdicts.clear();
        self.lengths.clear();
        self.data.clear();
    }

    /// The output packet `i` (empty for a dropped packet).
    pub fn packet(&self, i: usize) -> &[u8] {
        let start: usize = self.lengths[..i.min(self.lengths.len())]
            .iter()
            .map(|l| *l as usize)
            .sum();
        let len = self.lengths.get(i).map_or(0, |l| *l as usize);
        self.data.get(start..start + len).unwrap_or_default()
    }

    fn drop(&mut self) {
        self.verdicts.push(Verdict::Drop);
        self.lengths.push(0);
    }

    /// Records a forwarded packet that was appended to `data` since `start`.
    fn forward(&mut self, port: u16, start: usize) {
        self.verdicts.push(Verdict::Forward(port));
        self.lengths.push((self.data.len() - start) as u32);
    }
}

macro_rules! reasons {
    ($( $(#[$m:meta])* $name:ident = $code:literal, $text:literal; )*) => {
        /// Why a packet was dropped: the suffix of its counter key `drop/<reason>` in
        /// `upf-usage`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Reason {
            $( $(#[$m])* $name = $code, )*
        }

        impl Reason {
            /// Every reason.
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            /// The name used in the counter key.
            pub const fn as_str(self) -> &'static str {
                match self { $(Reason::$name => $text,)* }
            }

            pub(crate) fn from_code(code: u8) -> Option<Reason> {
                match code { $($code => Some(Reason::$name),)* _ => None }
            }
        }
    };
}

reasons! {
    /// The lengths of the batch do not fit its data, or a packet has no ingress port.
    MalformedBatch = 0, "malformed-batch";
    /// Arrived on a port other than N3 and N6.
    UnknownPort = 1, "unknown-port";
    /// Not a well-formed IPv4 packet.
    NotIpv4 = 2, "not-ipv4";
    /// N3 packet not addressed to the N3 address.
    WrongAddress = 3, "wrong-address";
    /// N3 packet that is not UDP to port 2152.
    NotGtpu = 4, "not-gtpu";
    /// Fragmented outer IPv4 packet on N3 (no reassembly).
    Fragment = 5, "fragment";
    /// Malformed GTP-U header.
    BadGtpu = 6, "bad-gtpu";
    /// GTP-U signalling other than Echo Request (End Marker, Error Indication, ...).
    GtpuSignalling = 7, "gtpu-signalling";
    /// G-PDU to a TEID no session has (answered with an Error Indication).
    UnknownTeid = 8, "unknown-teid";
    /// Downlink packet to an address no session has.
    UnknownUe = 9, "unknown-ue";
    /// The T-PDU of a G-PDU is not an IPv4 packet.
    BadInner = 10, "bad-inner";
    /// No PDR of the session matches the packet (QFI, UE address, SDF filters).
    NoPdr = 11, "no-pdr";
    /// The PDR has no FAR.
    NoFar = 12, "no-far";
    /// The FAR says DROP.
    FarDrop = 13, "far-drop";
    /// The FAR says BUFF: this UPF does not buffer, the packet is dropped.
    Buffer = 14, "buffer";
    /// The FAR has no DROP, FORW or BUFF flag.
    NoAction = 15, "no-action";
    /// FORW without Forwarding Parameters.
    NoForwardingParameters = 16, "no-forwarding-parameters";
    /// FORW to a destination interface without a port here (CP function, LI).
    UnsupportedDestination = 17, "unsupported-destination";
    /// Outer Header Creation other than GTP-U/UDP/IPv4.
    UnsupportedOuterHeader = 18, "unsupported-outer-header";
    /// A QER gate of the packet's direction is closed.
    GateClosed = 19, "gate-closed";
    /// Over the QER's maximum bit rate.
    Mbr = 20, "mbr";
    /// Too long to encapsulate in one IPv4 packet.
    TooBig = 21, "too-big";
    /// A table operation failed.
    TableError = 22, "table-error";
    /// A rule record could not be decoded.
    CorruptRule = 23, "corrupt-rule";
    /// The UPF's configuration is invalid: every packet is dropped.
    BadConfig = 24, "bad-config";
    /// FORW to the access side without a GTP-U outer header to create (the gNB's F-TEID is
    /// not known yet).
    MissingOuterHeader = 25, "missing-outer-header";
}

/// How long a QER's MBR bucket lets traffic burst, ms.
pub const BURST_MS: u64 = 100;
/// Smallest bucket depth, bits (two 1500-octet packets), so that low rates pass a packet.
pub const MIN_BURST_BITS: u64 = 2 * 1500 * 8;

/// Key of a drop counter in `upf-usage`.
pub fn drop_key(reason: Reason) -> Vec<u8> {
    format!("drop/{}", reason.as_str()).into_bytes()
}

/// One packet, classified before any table is read.
enum Work<'a> {
    Drop(Reason),
    Echo {
        peer: Ipv4Addr,
        peer_port: u16,
        sequence: u16,
    },
    Uplink {
        teid: u32,
        peer: Ipv4Addr,
        peer_port: u16,
        /// The whole outer packet (forwarded as is without outer header removal).
        whole: &'a [u8],
        /// The T-PDU.
        tpdu: &'a [u8],
        qfi: Option<u8>,
    },
    Downlink {
        ip: Ipv4Info,
        packet: &'a [u8],
    },
}

/// A packet whose PDR matched and whose FAR forwards it.
struct Matched<'a> {
    set: usize,
    rule: usize,
    /// What to send (before encapsulation).
    payload: &'a [u8],
    /// Octets counted by URRs and policed by QERs: the user's IP packet.
    volume: usize,
}

enum Step<'a> {
    Drop(Reason),
    Echo {
        peer: Ipv4Addr,
        peer_port: u16,
        sequence: u16,
    },
    ErrorIndication {
        peer: Ipv4Addr,
        peer_port: u16,
        teid: u32,
    },
    Forward(Matched<'a>),
}

/// Distinct lookup keys of a batch and the rule sets found for them.
struct Lookup {
    keys: Vec<Vec<u8>>,
    index: BTreeMap<u32, usize>,
}

impl Lookup {
    fn new() -> Self {
        Lookup {
            keys: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: u32) {
        if !self.index.contains_key(&key) {
            self.index.insert(key, self.keys.len());
            self.keys.push(key.to_be_bytes().to_vec());
        }
    }
}

/// Runs one batch (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn process<T: Tables + ?Sized, I: Io + ?Sized>(
    config: Option<&Config>,
    tables: &mut T,
    io: &mut I,
    ingress: &[u16],
    lengths: &[u32],
    data: &[u8],
    out: &mut BatchOut,
) {
    out.clear();
    let mut drops: BTreeMap<Reason, (u64, u64)> = BTreeMap::new();
    let Some(config) = config else {
        for len in lengths {
            out.drop();
            let c = drops.entry(Reason::BadConfig).or_default();
            c.0 += 1;
            c.1 += u64::from(*len);
        }
        count_drops(tables, io, &drops);
        return;
    };

    // Classify.
    let mut work = Vec::with_capacity(lengths.len());
    let mut sizes = Vec::with_capacity(lengths.len());
    let mut offset = 0usize;
    let mut uplink = Lookup::new();
    let mut downlink = Lookup::new();
    for (i, len) in lengths.iter().enumerate() {
        let len = *len as usize;
        sizes.push(len as u64);
        let bytes = offset
            .checked_add(len)
            .and_then(|end| data.get(offset..end));
        offset = offset.saturating_add(len);
        let w = match (bytes, ingress.get(i)) {
            (Some(bytes), Some(&N3)) => classify_n3(config, bytes),
            (Some(bytes), Some(&N6)) => classify_n6(bytes),
            (Some(_), Some(_)) => Work::Drop(Reason::UnknownPort),
            _ => Work::Drop(Reason::MalformedBatch),
        };
        match &w {
            Work::Uplink { teid, .. } => uplink.add(*teid),
            Work::Downlink { ip, .. } => downlink.add(u32::from(ip.dst)),
            _ => {}
        }
        work.push(w);
    }

    // One read per direction for the whole batch.
    let mut sets: Vec<Result<Option<RuleSet>, Reason>> = Vec::new();
    let up_base = sets.len();
    read_rule_sets(tables, io, TableId::Uplink, &uplink.keys, &mut sets);
    let down_base = sets.len();
    read_rule_sets(tables, io, TableId::Downlink, &downlink.keys, &mut sets);

    // Match.
    let mut notify: Vec<(u64, u32, u16)> = Vec::new();
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(work.len());
    for w in work {
        let step = match w {
            Work::Drop(r) => Step::Drop(r),
            Work::Echo {
                peer,
                peer_port,
                sequence,
            } => Step::Echo {
                peer,
                peer_port,
                sequence,
            },
            Work::Uplink {
                teid,
                peer,
                peer_port,
                whole,
                tpdu,
                qfi,
            } => {
                let set = up_base + uplink.index[&teid];
                match &sets[set] {
                    Err(r) => Step::Drop(*r),
                    Ok(None) => Step::ErrorIndication {
                        peer,
                        peer_port,
                        teid,
                    },
                    Ok(Some(rules)) => match packet::ipv4(tpdu) {
                        None => Step::Drop(Reason::BadInner),
                        Some(ip) => {
                            let inner = &tpdu[..ip.total_len];
                            match select(rules, true, inner, &ip, qfi) {
                                None => Step::Drop(Reason::NoPdr),
                                Some(r) => {
                                    let rule = &rules.rules[r];
                                    let payload = if rule.remove_gtpu { inner } else { whole };
                                    outcome(rules, r, set, payload, inner.len(), &mut notify)
                                }
                            }
                        }
                    },
                }
            }
            Work::Downlink { ip, packet } => {
                let set = down_base + downlink.index[&u32::from(ip.dst)];
                match &sets[set] {
                    Err(r) => Step::Drop(*r),
                    Ok(None) => Step::Drop(Reason::UnknownUe),
                    Ok(Some(rules)) => {
                        let inner = &packet[..ip.total_len];
                        match select(rules, false, inner, &ip, None) {
                            None => Step::Drop(Reason::NoPdr),
                            Some(r) => outcome(rules, r, set, inner, inner.len(), &mut notify),
                        }
                    }
                }
            }
        };
        steps.push(step);
    }

    // QERs: gates, then MBR buckets (one read and one write per QER touched).
    police(tables, io, &sets, &mut steps);

    // Emit, in order, and tally URR volumes.
    let mut tallies: BTreeMap<(u64, u32), Tally> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        let start = out.data.len();
        match step {
            Step::Drop(r) => {
                out.drop();
                let c = drops.entry(*r).or_default();
                c.0 += 1;
                c.1 += sizes[i];
            }
            Step::Echo {
                peer,
                peer_port,
                sequence,
            } => {
                let mut header = Repr::new(MessageType::EchoResponse, 0, 0);
                header.sequence_number = Some(*sequence);
                let message = Message::EchoResponse { recovery: 0 };
                if packet::push_gtpu_message(
                    &mut out.data,
                    config.n3_address,
                    *peer,
                    *peer_port,
                    &header,
                    &message,
                ) {
                    out.forward(N3, start);
                } else {
                    out.drop();
                }
            }
            Step::ErrorIndication {
                peer,
                peer_port,
                teid,
            } => {
                let c = drops.entry(Reason::UnknownTeid).or_default();
                c.0 += 1;
                c.1 += sizes[i];
                let mut header = Repr::new(MessageType::ErrorIndication, 0, 0);
                header.sequence_number = Some(0);
                // Cannot fail: the list is empty.
                let _ = header
                    .extension_headers
                    .push(ExtensionHeaderRepr::UdpPort(*peer_port));
                let message = Message::ErrorIndication {
                    teid_data_i: *teid,
                    peer_address: IpAddr::V4(config.n3_address),
                };
                if packet::push_gtpu_message(
                    &mut out.data,
                    config.n3_address,
                    *peer,
                    GTPU_PORT,
                    &header,
                    &message,
                ) {
                    out.forward(N3, start);
                } else {
                    out.drop();
                }
            }
            Step::Forward(m) => {
                let Ok(Some(rules)) = &sets[m.set] else {
                    out.drop();
                    continue;
                };
                let rule = &rules.rules[m.rule];
                let Outcome::Forward { port, encap } = rule.outcome else {
                    out.drop();
                    continue;
                };
                let sent = match encap {
                    Some(e) => packet::push_gpdu(
                        &mut out.data,
                        config.n3_address,
                        e.address,
                        e.tos,
                        e.teid,
                        e.qfi,
                        m.payload,
                    ),
                    None => {
                        out.data.extend_from_slice(m.payload);
                        true
                    }
                };
                if !sent {
                    out.data.truncate(start);
                    out.drop();
                    let c = drops.entry(Reason::TooBig).or_default();
                    c.0 += 1;
                    c.1 += sizes[i];
                    continue;
                }
                out.forward(port, start);
                for u in &rule.urrs {
                    let t = tallies.entry((rules.seid, u.id)).or_insert(Tally {
                        threshold: u.threshold,
                        ..Tally::default()
                    });
                    let d = &mut t.directions[usize::from(!rule.uplink)];
                    d.0 += 1;
                    d.1 += m.volume as u64;
                }
            }
        }
    }

    count_usage(config, tables, io, &tallies);
    for (seid, far, pdr) in notify {
        n4::notify_downlink_data(config, tables, io, seid, far, pdr);
    }
    count_drops(tables, io, &drops);
}

/// Volumes of one URR in a batch: [uplink, downlink] (packets, octets).
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    directions: [(u64, u64); 2],
    threshold: [Option<u64>; 3],
}

fn classify_n3<'a>(config: &Config, bytes: &'a [u8]) -> Work<'a> {
    let Some(ip) = packet::ipv4(bytes) else {
        return Work::Drop(Reason::NotIpv4);
    };
    if ip.dst != config.n3_address {
        return Work::Drop(Reason::WrongAddress);
    }
    if ip.fragment {
        return Work::Drop(Reason::Fragment);
    }
    let Some((peer_port, GTPU_PORT, payload)) = packet::udp(bytes, &ip) else {
        return Work::Drop(Reason::NotGtpu);
    };
    let Ok(gtp) = outpost_gtpu::Packet::new_checked(payload) else {
        return Work::Drop(Reason::BadGtpu);
    };
    if gtp.version() != 1 || !gtp.protocol_type() {
        return Work::Drop(Reason::BadGtpu);
    }
    match gtp.message_type() {
        MessageType::EchoRequest => Work::Echo {
            peer: ip.src,
            peer_port,
            sequence: gtp.sequence_number().unwrap_or(0),
        },
        MessageType::GPdu => {
            let qfi = match gtp.pdu_session_info() {
                None => None,
                Some(Ok(info)) => Some(info.qfi()),
                Some(Err(_)) => return Work::Drop(Reason::BadGtpu),
            };
            // `gtp.payload()` borrows the view; slice the batch's buffer instead.
            let end = gtp.total_len().min(payload.len());
            let tpdu = payload
                .get(gtp.header_len().min(end)..end)
                .unwrap_or_default();
            Work::Uplink {
                teid: gtp.teid(),
                peer: ip.src,
                peer_port,
                whole: &bytes[..ip.total_len],
                tpdu,
                qfi,
            }
        }
        _ => Work::Drop(Reason::GtpuSignalling),
    }
}

fn classify_n6(bytes: &[u8]) -> Work<'_> {
    match packet::ipv4(bytes) {
        Some(ip) => Work::Downlink { ip, packet: bytes },
        None => Work::Drop(Reason::NotIpv4),
    }
}

fn read_rule_sets<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    table: TableId,
    keys: &[Vec<u8>],
    sets: &mut Vec<Result<Option<RuleSet>, Reason>>,
) {
    if keys.is_empty() {
        return;
    }
    match tables.get_many(table, keys) {
        Ok(values) => {
            for (i, key) in keys.iter().enumerate() {
                sets.push(match values.get(i) {
                    Some(Some(v)) => match RuleSet::decode(v) {
                        Ok(set) => Ok(Some(set)),
                        Err(_) => {
                            io.log(
                                Level::Error,
                                &format!("{}: corrupt record under {:02x?}", table.name(), key),
                            );
                            Err(Reason::CorruptRule)
                        }
                    },
                    _ => Ok(None),
                });
            }
        }
        Err(e) => {
            io.log(
                Level::Error,
                &format!("{}: get-many failed: {e}", table.name()),
            );
            sets.extend(keys.iter().map(|_| Err(Reason::TableError)));
        }
    }
}

/// The first rule, in precedence order, that matches the packet.
fn select(
    set: &RuleSet,
    uplink: bool,
    inner: &[u8],
    ip: &Ipv4Info,
    qfi: Option<u8>,
) -> Option<usize> {
    let ue = if uplink { ip.src } else { ip.dst };
    let ports = packet::ports(inner, ip);
    set.rules.iter().position(|rule| {
        (!uplink || rule.qfis.is_empty() || qfi.is_some_and(|q| rule.qfis.contains(&q)))
            && rule.ue_ip.is_none_or(|a| a == ue)
            && (rule.filters.is_empty()
                || rule
                    .filters
                    .iter()
                    .any(|f| filter_matches(f, ip, ports, rule.ue_ip.unwrap_or(ue))))
    })
}

fn filter_matches(f: &Filter, ip: &Ipv4Info, ports: Option<(u16, u16)>, ue: Ipv4Addr) -> bool {
    let address = |m: AddressMatch, a: Ipv4Addr| match m {
        AddressMatch::Any => true,
        AddressMatch::Ue => a == ue,
        AddressMatch::Prefix(p, len) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == p & mask
        }
        AddressMatch::Never => false,
    };
    let port = |ranges: &[(u16, u16)], p: Option<u16>| {
        ranges.is_empty()
            || p.is_some_and(|p| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&p)))
    };
    f.protocol.is_none_or(|p| p == ip.protocol)
        && f.tos.is_none_or(|(v, m)| ip.tos & m == v & m)
        && address(f.source.address, ip.src)
        && address(f.destination.address, ip.dst)
        && port(&f.source.ports, ports.map(|p| p.0))
        && port(&f.destination.ports, ports.map(|p| p.1))
}

fn outcome<'a>(
    set: &RuleSet,
    rule: usize,
    set_index: usize,
    payload: &'a [u8],
    volume: usize,
    notify: &mut Vec<(u64, u32, u16)>,
) -> Step<'a> {
    let r: &Rule = &set.rules[rule];
    match r.outcome {
        Outcome::Drop(reason) => Step::Drop(reason),
        Outcome::Buffer { notify: n } => {
            let key = (set.seid, r.far_id, r.pdr_id);
            if n && !notify.iter().any(|k| k.0 == key.0 && k.1 == key.1) {
                notify.push(key);
            }
            Step::Drop(Reason::Buffer)
        }
        Outcome::Forward { .. } => Step::Forward(Matched {
            set: set_index,
            rule,
            payload,
            volume,
        }),
    }
}

/// Applies QER gates and MBRs to the forwarded packets, in order.
fn police<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    sets: &[Result<Option<RuleSet>, Reason>],
    steps: &mut [Step<'_>],
) {
    let rule_of = |m: &Matched<'_>| match &sets[m.set] {
        Ok(Some(s)) => Some((s.seid, &s.rules[m.rule])),
        _ => None,
    };
    // Gates first; collect the buckets the rest need.
    let mut index: BTreeMap<(u64, u32), usize> = BTreeMap::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for step in steps.iter_mut() {
        let Step::Forward(m) = step else { continue };
        let Some((seid, rule)) = rule_of(m) else {
            continue;
        };
        if rule.qers.iter().any(|q| !q.open) {
            *step = Step::Drop(Reason::GateClosed);
            continue;
        }
        for q in rule.qers.iter().filter(|q| q.mbr_kbps > 0) {
            index.entry((seid, q.id)).or_insert_with(|| {
                keys.push(qer_key(seid, q.id));
                keys.len() - 1
            });
        }
    }
    if keys.is_empty() {
        return;
    }
    let mut buckets: Vec<Bucket> = match tables.get_many(TableId::Qer, &keys) {
        Ok(values) => (0..keys.len())
            .map(|i| {
                values
                    .get(i)
                    .and_then(|v| v.as_deref())
                    .and_then(|v| Bucket::decode(v).ok())
                    .unwrap_or_default()
            })
            .collect(),
        Err(e) => {
            // Without the buckets, let traffic through unpoliced rather than drop it all.
            io.log(Level::Error, &format!("upf-qer: get-many failed: {e}"));
            return;
        }
    };
    let now = io.unix_time_ms();
    let mut refilled = alloc::vec![[false; 2]; keys.len()];
    for step in steps.iter_mut() {
        let Step::Forward(m) = step else { continue };
        let Some((seid, rule)) = rule_of(m) else {
            continue;
        };
        let dir = usize::from(!rule.uplink);
        let bits = (m.volume as u64).saturating_mul(8);
        let mut allowed = true;
        for q in rule.qers.iter().filter(|q| q.mbr_kbps > 0) {
            let b = index[&(seid, q.id)];
            if !refilled[b][dir] {
                refilled[b][dir] = true;
                buckets[b].directions[dir] =
                    Some(refill(buckets[b].directions[dir], q.mbr_kbps, now));
            }
            let tokens = buckets[b].directions[dir].map_or(0, |d| d.0);
            allowed &= tokens >= bits;
        }
        if !allowed {
            *step = Step::Drop(Reason::Mbr);
            continue;
        }
        for q in rule.qers.iter().filter(|q| q.mbr_kbps > 0) {
            let b = index[&(seid, q.id)];
            if let Some(d) = &mut buckets[b].directions[dir] {
                d.0 -= bits;
            }
        }
    }
    // One crossing for every bucket the batch touched.
    let entries: Vec<(Vec<u8>, Vec<u8>)> = keys
        .into_iter()
        .zip(&buckets)
        .map(|(key, bucket)| (key, bucket.encode().to_vec()))
        .collect();
    for result in tables.put_many(TableId::Qer, &entries) {
        if let Err(e) = result {
            io.log(Level::Warn, &format!("upf-qer: put failed: {e}"));
        }
    }
}

/// A direction's bucket after refilling it at `kbps` (kbit/s = bit/ms) up to its depth.
fn refill(state: Option<(u64, u64)>, kbps: u64, now: u64) -> (u64, u64) {
    let depth = kbps.saturating_mul(BURST_MS).max(MIN_BURST_BITS);
    match state {
        None => (depth, now),
        Some((tokens, last)) if now > last => (
            tokens
                .saturating_add(kbps.saturating_mul(now - last))
                .min(depth),
            now,
        ),
        // The clock went back (or did not move): no refill, restart from now.
        Some((tokens, _)) => (tokens.min(depth), now),
    }
}

/// Adds the batch's volumes to the URR counters and reports the URRs whose volume threshold
/// was reached.
fn count_usage<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    tallies: &BTreeMap<(u64, u32), Tally>,
) {
    // One crossing for every counter the batch touched.
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    for (ti, (&(seid, urr), t)) in tallies.iter().enumerate() {
        for (dir, (packets, bytes)) in t.directions.iter().enumerate() {
            if *packets > 0 {
                entries.push((usage_key(seid, urr, dir == 0).to_vec(), *packets, *bytes));
                slots.push((ti, dir));
            }
        }
    }
    let mut counted = alloc::vec![[None; 2]; tallies.len()];
    for ((ti, dir), result) in slots
        .into_iter()
        .zip(tables.count_many(TableId::Usage, &entries))
    {
        match result {
            Ok(v) => counted[ti][dir] = Some(v.1),
            Err(e) => io.log(Level::Warn, &format!("upf-usage: count failed: {e}")),
        }
    }
    let mut reports: Vec<(u64, u32)> = Vec::new();
    for (ti, (&(seid, urr), t)) in tallies.iter().enumerate() {
        let totals = counted[ti];
        let [total, ul, dl] = t.threshold;
        let mut crossed = ul.is_some_and(|th| totals[0].is_some_and(|v| v >= th))
            || dl.is_some_and(|th| totals[1].is_some_and(|v| v >= th));
        if let Some(th) = total
            && !crossed
            && totals.iter().any(Option::is_some)
        {
            let mut sum = 0u64;
            for (dir, v) in totals.iter().enumerate() {
                sum = sum.saturating_add(match v {
                    Some(v) => *v,
                    None => tables
                        .count(TableId::Usage, &usage_key(seid, urr, dir == 0), 0, 0)
                        .map_or(0, |c| c.1),
                });
            }
            crossed = sum >= th;
        }
        if crossed {
            reports.push((seid, urr));
        }
    }
    let mut i = 0;
    while i < reports.len() {
        let seid = reports[i].0;
        let urrs: Vec<u32> = reports[i..]
            .iter()
            .take_while(|r| r.0 == seid)
            .map(|r| r.1)
            .collect();
        i += urrs.len();
        n4::report_usage(config, tables, io, seid, &urrs, UsageReportTrigger::VOLTH);
    }
}

fn count_drops<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    drops: &BTreeMap<Reason, (u64, u64)>,
) {
    for (reason, (packets, bytes)) in drops {
        if let Err(e) = tables.count(TableId::Usage, &drop_key(*reason), *packets, *bytes) {
            io.log(Level::Warn, &format!("upf-usage: count failed: {e}"));
        }
    }
}
