//! Compiles a [`Session`] into the [`RuleSet`]s the data path reads: one per local TEID
//! (uplink) and one per UE address (downlink), each with its PDRs sorted by precedence and
//! the FAR, QERs and URRs they point to folded in, so that a packet needs one table read.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use outpost_pfcp::{
    Action, Address, ApplyAction, Direction, FailedRuleId, FlowDescription, Interface,
    OuterHeaderCreation, OuterHeaderRemoval, ReportingTriggers,
};

use crate::datapath::Reason;
use crate::records::{
    AddressMatch, Encap, Filter, Outcome, PdrDef, QerRef, Rule, RuleSet, Session, Side, UrrRef,
};

/// Port index of N3 (access).
pub const N3: u16 = 0;
/// Port index of N6 (core / data network).
pub const N6: u16 = 1;

/// The rule sets of a session, by lookup key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Compiled {
    /// By local TEID (`upf-uplink`).
    pub uplink: BTreeMap<u32, RuleSet>,
    /// By UE IPv4 address (`upf-downlink`).
    pub downlink: BTreeMap<u32, RuleSet>,
}

/// Checks the references of every PDR and compiles the session. The error names the PDR whose
/// FAR, QER, URR or SDF filter is missing or unusable.
pub(crate) fn compile(session: &Session) -> Result<Compiled, FailedRuleId> {
    let mut out = Compiled::default();
    let mut pdrs: Vec<&PdrDef> = session.pdrs.iter().collect();
    pdrs.sort_by_key(|p| (p.precedence, p.id));
    for pdr in pdrs {
        let rule = compile_pdr(session, pdr).ok_or(FailedRuleId::Pdr(pdr.id))?;
        let set = |map: &mut BTreeMap<u32, RuleSet>, key: u32| {
            map.entry(key)
                .or_insert_with(|| RuleSet {
                    seid: session.seid,
                    rules: Vec::new(),
                })
                .rules
                .push(rule);
        };
        match (pdr.teid, pdr.ue_ip) {
            (Some(teid), _) => set(&mut out.uplink, teid),
            (None, Some(ue)) => set(&mut out.downlink, u32::from(ue)),
            // Nothing to look it up by: it can never match a packet here.
            (None, None) => {}
        }
    }
    Ok(out)
}

fn compile_pdr(session: &Session, pdr: &PdrDef) -> Option<Rule> {
    let uplink = pdr.source_interface == Interface::ACCESS.0;
    let mut filters = Vec::with_capacity(pdr.sdf.len());
    for sdf in &pdr.sdf {
        let flow = match &sdf.flow_description {
            Some(fd) => Some(FlowDescription::parse(fd).ok()?),
            None => None,
        };
        filters.push(compile_filter(flow.as_ref(), sdf.tos, uplink));
    }
    let mut qers = Vec::with_capacity(pdr.qer_ids.len());
    let mut qer_qfi = None;
    for id in &pdr.qer_ids {
        let q = session.qer(*id)?;
        let (gate, mbr) = if uplink {
            (q.gate_ul, q.mbr.map_or(0, |m| m.0))
        } else {
            (q.gate_dl, q.mbr.map_or(0, |m| m.1))
        };
        qer_qfi = qer_qfi.or(q.qfi);
        qers.push(QerRef {
            id: *id,
            open: gate == 0,
            mbr_kbps: mbr,
        });
    }
    let mut urrs = Vec::with_capacity(pdr.urr_ids.len());
    for id in &pdr.urr_ids {
        let u = session.urr(*id)?;
        let volth = ReportingTriggers(u.triggers).contains(ReportingTriggers::VOLTH);
        let threshold = if volth {
            u.threshold.map(|t| t.filter(|v| *v > 0))
        } else {
            [None; 3]
        };
        urrs.push(UrrRef { id: *id, threshold });
    }
    let qfi = qer_qfi.or(pdr.qfis.first().copied());
    let (far_id, outcome) = match pdr.far_id {
        None => (0, Outcome::Drop(Reason::NoFar)),
        Some(id) => (id, far_outcome(session, id, qfi)?),
    };
    Some(Rule {
        pdr_id: pdr.id,
        uplink,
        ue_ip: pdr.ue_ip,
        qfis: pdr.qfis.clone(),
        filters,
        remove_gtpu: matches!(
            pdr.ohr,
            Some(OuterHeaderRemoval::GTPU_UDP_IPV4 | OuterHeaderRemoval::GTPU_UDP_IP)
        ),
        far_id,
        outcome,
        qers,
        urrs,
    })
}

fn far_outcome(session: &Session, id: u32, qfi: Option<u8>) -> Option<Outcome> {
    let far = session.far(id)?;
    let action = ApplyAction(far.action);
    Some(if action.contains(ApplyAction::DROP) {
        Outcome::Drop(Reason::FarDrop)
    } else if action.contains(ApplyAction::FORW) {
        let port = match far.destination.map(Interface) {
            None => return Some(Outcome::Drop(Reason::NoForwardingParameters)),
            Some(Interface::ACCESS) => N3,
            Some(Interface::CORE | Interface::SGI_LAN_N6_LAN | Interface::VN_INTERNAL_5G) => N6,
            Some(_) => return Some(Outcome::Drop(Reason::UnsupportedDestination)),
        };
        let encap = match far.ohc {
            None => None,
            Some(ohc) => match ohc.ipv4 {
                Some(address) if ohc.description & OuterHeaderCreation::GTPU_UDP_IPV4 != 0 => {
                    Some(Encap {
                        teid: ohc.teid,
                        address,
                        tos: far.tlm.map_or(0, |t| (t >> 8) as u8),
                        qfi: qfi.map(|q| (port == N3, q)),
                    })
                }
                _ => return Some(Outcome::Drop(Reason::UnsupportedOuterHeader)),
            },
        };
        if port == N3 && encap.is_none() {
            // N3 carries only GTP-U: never put a bare user packet on it.
            return Some(Outcome::Drop(Reason::MissingOuterHeader));
        }
        Outcome::Forward { port, encap }
    } else if action.contains(ApplyAction::BUFF) {
        Outcome::Buffer {
            notify: action.contains(ApplyAction::NOCP),
        }
    } else {
        Outcome::Drop(Reason::NoAction)
    })
}

/// Compiles a flow description for packets of one direction. IPFilterRules are written from
/// the network's side (`out`: from the remote end to the UE), so for uplink packets an `out`
/// rule's `from` is the packet's destination; `in` rules are the reverse. A `deny` rule never
/// selects a packet.
fn compile_filter(flow: Option<&FlowDescription>, tos: Option<u16>, uplink: bool) -> Filter {
    let tos = tos.map(|t| ((t >> 8) as u8, t as u8));
    let Some(flow) = flow else {
        let any = Side {
            address: AddressMatch::Any,
            ports: Vec::new(),
        };
        return Filter {
            protocol: None,
            tos,
            source: any.clone(),
            destination: any,
        };
    };
    let side = |e: &outpost_pfcp::Endpoint| Side {
        address: match e.address {
            _ if flow.action == Action::Deny => AddressMatch::Never,
            Address::Any => AddressMatch::Any,
            Address::Assigned => AddressMatch::Ue,
            Address::Prefix {
                address: core::net::IpAddr::V4(a),
                len,
            } => AddressMatch::Prefix(u32::from(a), len.min(32)),
            Address::Prefix { .. } => AddressMatch::Never,
        },
        ports: e.ports.iter().map(|r| (r.start, r.end)).collect(),
    };
    let (from, to) = (side(&flow.source), side(&flow.destination));
    let swap = uplink == (flow.direction == Direction::Out);
    let (source, destination) = if swap { (to, from) } else { (from, to) };
    Filter {
        protocol: flow.protocol,
        tos,
        source,
        destination,
    }
}
