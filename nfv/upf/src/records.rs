//! The records the UPF keeps in host tables and their versioned encodings.
//!
//! Every record starts with a version byte. A newer plugin must keep decoding every version
//! an older one wrote (so that a hot swap finds its sessions); a record of a version this
//! build does not know is treated as corrupt.

use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use crate::codec::{Corrupt, Dec, DecResult, Enc};
use crate::datapath::Reason;

/// Key of the node record in `upf-state`.
pub(crate) const NODE_KEY: &[u8] = b"node";

/// Highest record version this build writes and reads.
const VERSION: u8 = 1;

/// The UPF node: recovery time stamp, allocators, PFCP associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeState {
    /// Recovery Time Stamp (NTP seconds) set when the tables were first initialised.
    pub recovery: u32,
    /// Next local SEID to hand out.
    pub next_seid: u64,
    /// Next TEID to try when the SMF asks CHOOSE.
    pub next_teid: u32,
    /// Next sequence number of the requests we send (24 bits).
    pub next_seq: u32,
    /// Established associations.
    pub associations: Vec<Association>,
}

/// A PFCP association with a CP function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Association {
    /// The CP function's Node ID, as the IE value's octets.
    pub node_id: Vec<u8>,
    /// Where its messages come from ("ip:port"); our requests go there.
    pub peer: String,
    /// Its Recovery Time Stamp.
    pub recovery: u32,
    /// When we last sent it a Heartbeat Request (tick clock, ms).
    pub hb_last_ms: u64,
    /// Sequence number of the Heartbeat Request still unanswered.
    pub hb_outstanding: Option<u32>,
    /// Consecutive unanswered Heartbeat Requests.
    pub misses: u32,
}

impl NodeState {
    /// A node that started at `recovery`.
    pub fn fresh(recovery: u32) -> Self {
        NodeState {
            recovery,
            next_seid: 1,
            next_teid: 1,
            next_seq: 1,
            associations: Vec::new(),
        }
    }

    /// Takes the next request sequence number.
    pub fn take_sequence(&mut self) -> u32 {
        let seq = self.next_seq & 0x00ff_ffff;
        self.next_seq = (seq + 1) & 0x00ff_ffff;
        seq
    }

    /// The association with the CP function `node_id`.
    pub fn association(&self, node_id: &[u8]) -> Option<&Association> {
        self.associations.iter().find(|a| a.node_id == node_id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(VERSION);
        e.u32(self.recovery);
        e.u64(self.next_seid);
        e.u32(self.next_teid);
        e.u32(self.next_seq);
        e.len(self.associations.len());
        for a in &self.associations {
            e.bytes(&a.node_id);
            e.str(&a.peer);
            e.u32(a.recovery);
            e.u64(a.hb_last_ms);
            e.opt_u32(a.hb_outstanding);
            e.u32(a.misses);
        }
        e.finish()
    }

    pub fn decode(data: &[u8]) -> DecResult<Self> {
        let (mut d, _) = Dec::new(data, VERSION)?;
        Ok(NodeState {
            recovery: d.u32()?,
            next_seid: d.u64()?,
            next_teid: d.u32()?,
            next_seq: d.u32()?,
            associations: d.list(|d| {
                Ok(Association {
                    node_id: d.bytes()?.to_vec(),
                    peer: d.string()?,
                    recovery: d.u32()?,
                    hb_last_ms: d.u64()?,
                    hb_outstanding: d.opt_u32()?,
                    misses: d.u32()?,
                })
            })?,
        })
    }
}

/// A PFCP session as the SMF defined it (the source of truth; the data path reads the
/// [`RuleSet`]s compiled from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// Our SEID.
    pub seid: u64,
    /// The SMF's SEID (header of what we send).
    pub cp_seid: u64,
    /// Where the SMF's requests come from; Session Report Requests go there.
    pub peer: String,
    /// The SMF's Node ID octets.
    pub node_id: Vec<u8>,
    /// Packet detection rules.
    pub pdrs: Vec<PdrDef>,
    /// Forwarding action rules.
    pub fars: Vec<FarDef>,
    /// QoS enforcement rules.
    pub qers: Vec<QerDef>,
    /// Usage reporting rules.
    pub urrs: Vec<UrrDef>,
}

/// A PDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PdrDef {
    pub id: u16,
    pub precedence: u32,
    pub source_interface: u8,
    /// Local TEID (given by the SMF or chosen by us).
    pub teid: Option<u32>,
    /// The Choose ID the TEID was chosen for.
    pub choose_id: Option<u8>,
    /// Whether we chose the TEID (reported in Created PDR).
    pub chosen: bool,
    pub ue_ip: Option<Ipv4Addr>,
    pub sdf: Vec<SdfDef>,
    pub qfis: Vec<u8>,
    /// Outer Header Removal description.
    pub ohr: Option<u8>,
    pub far_id: Option<u32>,
    pub qer_ids: Vec<u32>,
    pub urr_ids: Vec<u32>,
}

/// An SDF filter as received (the flow description is parsed again when compiling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SdfDef {
    pub flow_description: Option<Vec<u8>>,
    /// ToS/traffic class (high octet) and mask (low octet).
    pub tos: Option<u16>,
}

/// A FAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FarDef {
    pub id: u32,
    /// Apply Action flags.
    pub action: u16,
    pub destination: Option<u8>,
    pub ohc: Option<OhcDef>,
    /// Transport Level Marking (ToS high octet, mask low octet).
    pub tlm: Option<u16>,
}

/// Outer Header Creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OhcDef {
    pub description: u16,
    pub teid: u32,
    pub ipv4: Option<Ipv4Addr>,
}

/// A QER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QerDef {
    pub id: u32,
    pub gate_ul: u8,
    pub gate_dl: u8,
    /// MBR (uplink, downlink) in kbps.
    pub mbr: Option<(u64, u64)>,
    pub qfi: Option<u8>,
}

/// A URR and its reporting state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrrDef {
    pub id: u32,
    pub method: u8,
    pub triggers: u32,
    /// Volume threshold: total, uplink, downlink (octets).
    pub threshold: [Option<u64>; 3],
    /// UR-SEQN of the next report.
    pub seqn: u32,
    /// NTP time of the last report (or of the URR's creation): the next report's start.
    pub last_report: u32,
}

impl Session {
    pub fn far(&self, id: u32) -> Option<&FarDef> {
        self.fars.iter().find(|f| f.id == id)
    }

    pub fn qer(&self, id: u32) -> Option<&QerDef> {
        self.qers.iter().find(|q| q.id == id)
    }

    pub fn urr(&self, id: u32) -> Option<&UrrDef> {
        self.urrs.iter().find(|u| u.id == id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(VERSION);
        e.u64(self.seid);
        e.u64(self.cp_seid);
        e.str(&self.peer);
        e.bytes(&self.node_id);
        e.len(self.pdrs.len());
        for p in &self.pdrs {
            e.u16(p.id);
            e.u32(p.precedence);
            e.u8(p.source_interface);
            e.opt_u32(p.teid);
            e.opt_u8(p.choose_id);
            e.bool(p.chosen);
            e.opt_ipv4(p.ue_ip);
            e.len(p.sdf.len());
            for s in &p.sdf {
                e.bool(s.flow_description.is_some());
                if let Some(fd) = &s.flow_description {
                    e.bytes(fd);
                }
                e.opt_u16(s.tos);
            }
            e.bytes(&p.qfis);
            e.opt_u8(p.ohr);
            e.opt_u32(p.far_id);
            e.u32s(&p.qer_ids);
            e.u32s(&p.urr_ids);
        }
        e.len(self.fars.len());
        for f in &self.fars {
            e.u32(f.id);
            e.u16(f.action);
            e.opt_u8(f.destination);
            e.bool(f.ohc.is_some());
            if let Some(o) = f.ohc {
                e.u16(o.description);
                e.u32(o.teid);
                e.opt_ipv4(o.ipv4);
            }
            e.opt_u16(f.tlm);
        }
        e.len(self.qers.len());
        for q in &self.qers {
            e.u32(q.id);
            e.u8(q.gate_ul);
            e.u8(q.gate_dl);
            e.bool(q.mbr.is_some());
            if let Some((ul, dl)) = q.mbr {
                e.u64(ul);
                e.u64(dl);
            }
            e.opt_u8(q.qfi);
        }
        e.len(self.urrs.len());
        for u in &self.urrs {
            e.u32(u.id);
            e.u8(u.method);
            e.u32(u.triggers);
            for t in u.threshold {
                e.opt_u64(t);
            }
            e.u32(u.seqn);
            e.u32(u.last_report);
        }
        e.finish()
    }

    pub fn decode(data: &[u8]) -> DecResult<Self> {
        let (mut d, _) = Dec::new(data, VERSION)?;
        let seid = d.u64()?;
        let cp_seid = d.u64()?;
        let peer = d.string()?;
        let node_id = d.bytes()?.to_vec();
        let pdrs = d.list(|d| {
            Ok(PdrDef {
                id: d.u16()?,
                precedence: d.u32()?,
                source_interface: d.u8()?,
                teid: d.opt_u32()?,
                choose_id: d.opt_u8()?,
                chosen: d.bool()?,
                ue_ip: d.opt_ipv4()?,
                sdf: d.list(|d| {
                    Ok(SdfDef {
                        flow_description: if d.bool()? {
                            Some(d.bytes()?.to_vec())
                        } else {
                            None
                        },
                        tos: d.opt_u16()?,
                    })
                })?,
                qfis: d.bytes()?.to_vec(),
                ohr: d.opt_u8()?,
                far_id: d.opt_u32()?,
                qer_ids: d.u32s()?,
                urr_ids: d.u32s()?,
            })
        })?;
        let fars = d.list(|d| {
            Ok(FarDef {
                id: d.u32()?,
                action: d.u16()?,
                destination: d.opt_u8()?,
                ohc: if d.bool()? {
                    Some(OhcDef {
                        description: d.u16()?,
                        teid: d.u32()?,
                        ipv4: d.opt_ipv4()?,
                    })
                } else {
                    None
                },
                tlm: d.opt_u16()?,
            })
        })?;
        let qers = d.list(|d| {
            Ok(QerDef {
                id: d.u32()?,
                gate_ul: d.u8()?,
                gate_dl: d.u8()?,
                mbr: if d.bool()? {
                    Some((d.u64()?, d.u64()?))
                } else {
                    None
                },
                qfi: d.opt_u8()?,
            })
        })?;
        let urrs = d.list(|d| {
            Ok(UrrDef {
                id: d.u32()?,
                method: d.u8()?,
                triggers: d.u32()?,
                threshold: [d.opt_u64()?, d.opt_u64()?, d.opt_u64()?],
                seqn: d.u32()?,
                last_report: d.u32()?,
            })
        })?;
        Ok(Session {
            seid,
            cp_seid,
            peer,
            node_id,
            pdrs,
            fars,
            qers,
            urrs,
        })
    }
}

/// The rules of one session that share a lookup key (a TEID or a UE address), compiled for
/// the data path and sorted by precedence: the value of `upf-uplink` and `upf-downlink`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleSet {
    pub seid: u64,
    pub rules: Vec<Rule>,
}

/// One PDR with everything its packets need: SDF filters, FAR outcome, QERs, URRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub pdr_id: u16,
    /// Source interface Access: uplink semantics (URR uplink volume).
    pub uplink: bool,
    /// The UE address the PDI names: the packet's UE-side address must equal it.
    pub ue_ip: Option<Ipv4Addr>,
    /// QFIs of the PDI (uplink: the packet's PDU Session Container QFI must be one of them).
    pub qfis: Vec<u8>,
    /// SDF filters (any may match; none means every packet matches).
    pub filters: Vec<Filter>,
    /// Outer header removal GTP-U/UDP/IPv4: forward the T-PDU.
    pub remove_gtpu: bool,
    pub far_id: u32,
    pub outcome: Outcome,
    pub qers: Vec<QerRef>,
    pub urrs: Vec<UrrRef>,
}

/// What the FAR does with a matching packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Send out of `port`, encapsulated when `encap` is set.
    Forward { port: u16, encap: Option<Encap> },
    /// Buffer: dropped and counted (no buffering here); `notify` asks for a Downlink Data
    /// Report to the SMF (NOCP).
    Buffer { notify: bool },
    /// Dropped for `Reason`.
    Drop(Reason),
}

/// GTP-U/UDP/IPv4 outer header to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Encap {
    pub teid: u32,
    pub address: Ipv4Addr,
    /// Outer ToS octet (Transport Level Marking).
    pub tos: u8,
    /// PDU Session Container: (downlink, QFI), when the QER or PDR has a QFI.
    pub qfi: Option<(bool, u8)>,
}

/// A QER as one direction of traffic sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QerRef {
    pub id: u32,
    pub open: bool,
    /// MBR of this direction, kbps (0: not policed).
    pub mbr_kbps: u64,
}

/// A URR as the data path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UrrRef {
    pub id: u32,
    /// Volume threshold (total, uplink, downlink) when the VOLTH trigger is on.
    pub threshold: [Option<u64>; 3],
}

/// A compiled SDF filter, in the packet's terms (source and destination already swapped for
/// the rule's direction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    pub protocol: Option<u8>,
    /// (ToS value, mask).
    pub tos: Option<(u8, u8)>,
    pub source: Side,
    pub destination: Side,
}

/// One side of a compiled filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Side {
    pub address: AddressMatch,
    /// Inclusive port ranges; empty: any port.
    pub ports: Vec<(u16, u16)>,
}

/// The address part of a compiled filter side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddressMatch {
    Any,
    /// `assigned`: the UE's address.
    Ue,
    /// An IPv4 prefix (address, length).
    Prefix(u32, u8),
    /// Never matches an IPv4 packet (an IPv6 prefix).
    Never,
}

impl RuleSet {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(VERSION);
        e.u64(self.seid);
        e.len(self.rules.len());
        for r in &self.rules {
            e.u16(r.pdr_id);
            e.bool(r.uplink);
            e.opt_ipv4(r.ue_ip);
            e.bytes(&r.qfis);
            e.len(r.filters.len());
            for f in &r.filters {
                e.opt_u8(f.protocol);
                e.bool(f.tos.is_some());
                if let Some((v, m)) = f.tos {
                    e.u8(v);
                    e.u8(m);
                }
                for side in [&f.source, &f.destination] {
                    match side.address {
                        AddressMatch::Any => e.u8(0),
                        AddressMatch::Ue => e.u8(1),
                        AddressMatch::Prefix(a, l) => {
                            e.u8(2);
                            e.u32(a);
                            e.u8(l);
                        }
                        AddressMatch::Never => e.u8(3),
                    }
                    e.len(side.ports.len());
                    for (lo, hi) in &side.ports {
                        e.u16(*lo);
                        e.u16(*hi);
                    }
                }
            }
            e.bool(r.remove_gtpu);
            e.u32(r.far_id);
            match r.outcome {
                Outcome::Forward { port, encap } => {
                    e.u8(0);
                    e.u16(port);
                    e.bool(encap.is_some());
                    if let Some(x) = encap {
                        e.u32(x.teid);
                        e.ipv4(x.address);
                        e.u8(x.tos);
                        e.bool(x.qfi.is_some());
                        if let Some((dl, q)) = x.qfi {
                            e.bool(dl);
                            e.u8(q);
                        }
                    }
                }
                Outcome::Buffer { notify } => {
                    e.u8(1);
                    e.bool(notify);
                }
                Outcome::Drop(reason) => {
                    e.u8(2);
                    e.u8(reason as u8);
                }
            }
            e.len(r.qers.len());
            for q in &r.qers {
                e.u32(q.id);
                e.bool(q.open);
                e.u64(q.mbr_kbps);
            }
            e.len(r.urrs.len());
            for u in &r.urrs {
                e.u32(u.id);
                for t in u.threshold {
                    e.opt_u64(t);
                }
            }
        }
        e.finish()
    }

    pub fn decode(data: &[u8]) -> DecResult<Self> {
        let (mut d, _) = Dec::new(data, VERSION)?;
        let seid = d.u64()?;
        let rules = d.list(|d| {
            let pdr_id = d.u16()?;
            let uplink = d.bool()?;
            let ue_ip = d.opt_ipv4()?;
            let qfis = d.bytes()?.to_vec();
            let filters = d.list(|d| {
                let protocol = d.opt_u8()?;
                let tos = if d.bool()? {
                    Some((d.u8()?, d.u8()?))
                } else {
                    None
                };
                let side = |d: &mut Dec<'_>| -> DecResult<Side> {
                    let address = match d.u8()? {
                        0 => AddressMatch::Any,
                        1 => AddressMatch::Ue,
                        2 => AddressMatch::Prefix(d.u32()?, d.u8()?),
                        3 => AddressMatch::Never,
                        _ => return Err(Corrupt),
                    };
                    let ports = d.list(|d| Ok((d.u16()?, d.u16()?)))?;
                    Ok(Side { address, ports })
                };
                let source = side(d)?;
                let destination = side(d)?;
                Ok(Filter {
                    protocol,
                    tos,
                    source,
                    destination,
                })
            })?;
            let remove_gtpu = d.bool()?;
            let far_id = d.u32()?;
            let outcome = match d.u8()? {
                0 => {
                    let port = d.u16()?;
                    let encap = if d.bool()? {
                        Some(Encap {
                            teid: d.u32()?,
                            address: d.ipv4()?,
                            tos: d.u8()?,
                            qfi: if d.bool()? {
                                Some((d.bool()?, d.u8()?))
                            } else {
                                None
                            },
                        })
                    } else {
                        None
                    };
                    Outcome::Forward { port, encap }
                }
                1 => Outcome::Buffer { notify: d.bool()? },
                2 => Outcome::Drop(Reason::from_code(d.u8()?).ok_or(Corrupt)?),
                _ => return Err(Corrupt),
            };
            let qers = d.list(|d| {
                Ok(QerRef {
                    id: d.u32()?,
                    open: d.bool()?,
                    mbr_kbps: d.u64()?,
                })
            })?;
            let urrs = d.list(|d| {
                Ok(UrrRef {
                    id: d.u32()?,
                    threshold: [d.opt_u64()?, d.opt_u64()?, d.opt_u64()?],
                })
            })?;
            Ok(Rule {
                pdr_id,
                uplink,
                ue_ip,
                qfis,
                filters,
                remove_gtpu,
                far_id,
                outcome,
                qers,
                urrs,
            })
        })?;
        Ok(RuleSet { seid, rules })
    }
}

/// Token buckets of one QER (one per direction), in bits, refilled at the MBR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bucket {
    /// [uplink, downlink]: (tokens in bits, last refill in ms), `None` until first used.
    pub directions: [Option<(u64, u64)>; 2],
}

impl Bucket {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::new(VERSION);
        for d in self.directions {
            e.bool(d.is_some());
            if let Some((tokens, last)) = d {
                e.u64(tokens);
                e.u64(last);
            }
        }
        e.finish()
    }

    pub fn decode(data: &[u8]) -> DecResult<Self> {
        let (mut d, _) = Dec::new(data, VERSION)?;
        let mut dir = || -> DecResult<Option<(u64, u64)>> {
            Ok(if d.bool()? {
                Some((d.u64()?, d.u64()?))
            } else {
                None
            })
        };
        Ok(Bucket {
            directions: [dir()?, dir()?],
        })
    }
}

/// Key of a session in `upf-sessions`.
pub(crate) fn session_key(seid: u64) -> [u8; 8] {
    seid.to_be_bytes()
}

/// Key of the index entry CP F-SEID → local SEID in `upf-sessions`: `c`, the CP SEID and the
/// CP function's Node ID octets (cut to fit 64 octets). Session keys are exactly 8 octets.
pub(crate) fn cp_index_key(cp_seid: u64, node_id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.push(b'c');
    k.extend_from_slice(&cp_seid.to_be_bytes());
    k.extend_from_slice(&node_id[..node_id.len().min(55)]);
    k
}

/// Key of a QER's buckets in `upf-qer`.
pub(crate) fn qer_key(seid: u64, qer: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(12);
    k.extend_from_slice(&seid.to_be_bytes());
    k.extend_from_slice(&qer.to_be_bytes());
    k
}

/// Key of a URR's volume counter in `upf-usage`: `u`, SEID, URR ID, `u`/`d`.
pub(crate) fn usage_key(seid: u64, urr: u32, uplink: bool) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = b'u';
    k[1..9].copy_from_slice(&seid.to_be_bytes());
    k[9..13].copy_from_slice(&urr.to_be_bytes());
    k[13] = if uplink { b'u' } else { b'd' };
    k
}

/// Key of the "downlink data notified" flag of a FAR in `upf-state`: `n`, SEID, FAR ID.
pub(crate) fn notify_key(seid: u64, far: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[0] = b'n';
    k[1..9].copy_from_slice(&seid.to_be_bytes());
    k[9..13].copy_from_slice(&far.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;

    fn session() -> Session {
        Session {
            seid: 7,
            cp_seid: 0x1122_3344_5566_7788,
            peer: "10.0.0.1:8805".to_string(),
            node_id: vec![0, 10, 0, 0, 1],
            pdrs: vec![PdrDef {
                id: 1,
                precedence: 255,
                source_interface: 0,
                teid: Some(9),
                choose_id: Some(1),
                chosen: true,
                ue_ip: Some(Ipv4Addr::new(10, 45, 0, 2)),
                sdf: vec![SdfDef {
                    flow_description: Some(b"permit out ip from any to assigned".to_vec()),
                    tos: Some(0x2cfc),
                }],
                qfis: vec![9],
                ohr: Some(0),
                far_id: Some(1),
                qer_ids: vec![1],
                urr_ids: vec![3],
            }],
            fars: vec![FarDef {
                id: 1,
                action: 2,
                destination: Some(1),
                ohc: Some(OhcDef {
                    description: 1,
                    teid: 0x1000,
                    ipv4: Some(Ipv4Addr::new(192, 168, 1, 5)),
                }),
                tlm: None,
            }],
            qers: vec![QerDef {
                id: 1,
                gate_ul: 0,
                gate_dl: 1,
                mbr: Some((100_000, 200_000)),
                qfi: Some(9),
            }],
            urrs: vec![UrrDef {
                id: 3,
                method: 2,
                triggers: 2,
                threshold: [Some(1_000_000), None, Some(5)],
                seqn: 4,
                last_report: 0xe5a1_0000,
            }],
        }
    }

    #[test]
    fn records_round_trip() {
        let s = session();
        assert_eq!(Session::decode(&s.encode()).unwrap(), s);
        let mut node = NodeState::fresh(42);
        node.associations.push(Association {
            node_id: vec![0, 10, 0, 0, 1],
            peer: "10.0.0.1:8805".to_string(),
            recovery: 1,
            hb_last_ms: 2,
            hb_outstanding: Some(3),
            misses: 4,
        });
        assert_eq!(NodeState::decode(&node.encode()).unwrap(), node);
        let compiled = crate::compile::compile(&s).unwrap();
        for set in compiled.uplink.values().chain(compiled.downlink.values()) {
            assert_eq!(&RuleSet::decode(&set.encode()).unwrap(), set);
        }
        for outcome in [
            Outcome::Buffer { notify: true },
            Outcome::Drop(Reason::FarDrop),
            Outcome::Forward {
                port: 0,
                encap: Some(Encap {
                    teid: 1,
                    address: Ipv4Addr::LOCALHOST,
                    tos: 0xb8,
                    qfi: Some((true, 9)),
                }),
            },
        ] {
            let mut set = compiled.uplink[&9].clone();
            set.rules[0].outcome = outcome;
            assert_eq!(RuleSet::decode(&set.encode()).unwrap(), set);
        }
        let b = Bucket {
            directions: [Some((5, 6)), None],
        };
        assert_eq!(Bucket::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn unknown_versions_and_truncated_records_are_refused() {
        let mut bytes = session().encode();
        bytes[0] = VERSION + 1;
        assert_eq!(Session::decode(&bytes), Err(Corrupt));
        let bytes = session().encode();
        for cut in 0..bytes.len() {
            assert_eq!(Session::decode(&bytes[..cut]), Err(Corrupt), "cut at {cut}");
        }
    }
}
