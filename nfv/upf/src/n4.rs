//! N4: the PFCP endpoint (TS 29.244). Associations and heartbeats, session establishment,
//! modification and deletion, and the Session Report Requests the UPF starts.
//!
//! Every request is answered from the tables alone: the node record (`upf-state`) and the
//! session records (`upf-sessions`) are read, changed and written back, and the data-path rule
//! sets compiled from a session are rewritten whenever it changes.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use outpost_pfcp::{
    ApplyAction, AssociationReleaseResponse, AssociationSetupResponse, AssociationUpdateResponse,
    Body, Cause, CreateFar, CreatePdr, CreateQer, CreateUrr, CreatedPdr, DownlinkDataReport, Error,
    FSeid, FTeid, FailedRuleId, HeartbeatRequest, HeartbeatResponse, IeIter, IeValue,
    MeasurementMethod, Message, NTP_UNIX_OFFSET, NodeId, Packet, Pdi, ReportType,
    SessionDeletionResponse, SessionEstablishmentRequest, SessionEstablishmentResponse,
    SessionModificationRequest, SessionModificationResponse, SessionReportRequest,
    UpFunctionFeatures, UsageReport, UsageReportTrigger, VolumeMeasurement, Writer, ie_type,
    message_type,
};

use crate::compile::{Compiled, compile};
use crate::config::{Config, HEARTBEAT_MISSES_WARN};
use crate::env::{Io, Level, TableId, Tables};
use crate::packet;
use crate::records::{
    Association, FarDef, NODE_KEY, NodeState, OhcDef, PdrDef, QerDef, RuleSet, SdfDef, Session,
    UrrDef, cp_index_key, notify_key, qer_key, session_key, usage_key,
};

/// The UP Function Features this UPF advertises: only what it implements.
/// - FTUP: it allocates F-TEIDs when the SMF asks CHOOSE (with Choose ID sharing);
/// - EMPU: it sends End Marker packets when a downlink FAR's outer header changes;
/// - MNOP: its usage reports carry packet counts next to the volumes.
pub const UP_FUNCTION_FEATURES: UpFunctionFeatures = UpFunctionFeatures(
    UpFunctionFeatures::FTUP.0 | UpFunctionFeatures::EMPU.0 | UpFunctionFeatures::MNOP.0,
);

/// PFCPSMReq-Flags QAURR: query all URRs.
const QAURR: u8 = 0x04;

/// Datagrams to send back.
type Replies = Vec<(String, Vec<u8>)>;

/// A request the UPF turns down: the Cause and what the answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reject {
    cause: Cause,
    offending_ie: Option<u16>,
    failed_rule: Option<FailedRuleId>,
}

impl Reject {
    fn cause(cause: Cause) -> Self {
        Reject {
            cause,
            offending_ie: None,
            failed_rule: None,
        }
    }

    fn rule(rule: FailedRuleId) -> Self {
        Reject {
            cause: Cause::RULE_CREATION_MODIFICATION_FAILURE,
            offending_ie: None,
            failed_rule: Some(rule),
        }
    }

    fn system<I: Io + ?Sized>(io: &mut I, what: &str) -> Self {
        io.log(Level::Error, what);
        Reject::cause(Cause::SYSTEM_FAILURE)
    }
}

/// NTP seconds (the PFCP time stamp format) of the wall clock.
fn ntp_now<I: Io + ?Sized>(io: &mut I) -> u32 {
    (io.unix_time_ms() / 1000).wrapping_add(NTP_UNIX_OFFSET) as u32
}

fn our_node_id(config: &Config) -> NodeId<'static> {
    NodeId::Ipv4(config.node_id)
}

/// The octets of a Node ID IE value, to compare and store it.
fn node_id_bytes(node: &NodeId<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; node.value_len()];
    let mut w = Writer::new(&mut buf);
    node.emit_value(&mut w);
    buf
}

/// The node record, created (with the Recovery Time Stamp of now) on first use.
fn load_node<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
) -> Result<NodeState, Reject> {
    match tables.get(TableId::State, NODE_KEY) {
        Ok(Some(bytes)) => NodeState::decode(&bytes)
            .map_err(|_| Reject::system(io, "upf-state: the node record is corrupt")),
        Ok(None) => {
            let node = NodeState::fresh(ntp_now(io));
            save_node(tables, io, &node)?;
            io.log(
                Level::Info,
                &format!(
                    "UPF state initialised, recovery time stamp {}",
                    node.recovery
                ),
            );
            Ok(node)
        }
        Err(e) => Err(Reject::system(io, &format!("upf-state: get failed: {e}"))),
    }
}

fn save_node<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    node: &NodeState,
) -> Result<(), Reject> {
    tables
        .put(TableId::State, NODE_KEY, &node.encode())
        .map_err(|e| Reject::system(io, &format!("upf-state: put failed: {e}")))
}

fn load_session<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    seid: u64,
) -> Result<Option<Session>, Reject> {
    match tables.get(TableId::Sessions, &session_key(seid)) {
        Ok(Some(bytes)) => Session::decode(&bytes).map(Some).map_err(|_| {
            Reject::system(io, &format!("upf-sessions: session {seid:#x} is corrupt"))
        }),
        Ok(None) => Ok(None),
        Err(e) => Err(Reject::system(
            io,
            &format!("upf-sessions: get failed: {e}"),
        )),
    }
}

fn save_session<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    session: &Session,
) -> Result<(), Reject> {
    tables
        .put(
            TableId::Sessions,
            &session_key(session.seid),
            &session.encode(),
        )
        .map_err(|e| {
            io.log(Level::Warn, &format!("upf-sessions: put failed: {e}"));
            Reject::cause(Cause::NO_RESOURCES_AVAILABLE)
        })
}

fn encode<I: Io + ?Sized>(io: &mut I, message: &Message<'_>) -> Option<Vec<u8>> {
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            io.log(Level::Error, &format!("PFCP: cannot emit a message: {e}"));
            None
        }
    }
}

/// Sends a request we start to `peer`.
fn send<I: Io + ?Sized>(io: &mut I, peer: &str, message: &Message<'_>) {
    match message.to_vec() {
        Ok(bytes) => {
            if let Err(e) = io.send_control(peer, &bytes) {
                io.log(Level::Warn, &format!("PFCP: cannot send to {peer}: {e}"));
            }
        }
        Err(e) => io.log(Level::Error, &format!("PFCP: cannot emit a message: {e}")),
    }
}

/// The header fields of a datagram that `Message::parse` rejected, read without trusting its
/// length field.
struct RawHeader {
    version: u8,
    message_type: u8,
    seid: Option<u64>,
    sequence: u32,
}

impl RawHeader {
    fn read(d: &[u8]) -> Option<RawHeader> {
        let flags = *d.first()?;
        let message_type = *d.get(1)?;
        let s = flags & 0x01 != 0;
        let (seid, seq_at) = if s {
            let b: [u8; 8] = d.get(4..12)?.try_into().ok()?;
            (Some(u64::from_be_bytes(b)), 12)
        } else {
            (None, 4)
        };
        let q = d.get(seq_at..seq_at + 3)?;
        Some(RawHeader {
            version: flags >> 5,
            message_type,
            seid,
            sequence: u32::from_be_bytes([0, q[0], q[1], q[2]]),
        })
    }
}

/// Handles one datagram from `peer`; returns the answers.
pub(crate) fn control<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    peer: &str,
    datagram: &[u8],
) -> Replies {
    let Some(header) = RawHeader::read(datagram) else {
        io.log(Level::Debug, &format!("PFCP: runt datagram from {peer}"));
        return Vec::new();
    };
    if header.version != 1 {
        // Version Not Supported Response: a bare header with the request's sequence number.
        let q = header.sequence.to_be_bytes();
        let reply = vec![
            0x20,
            message_type::VERSION_NOT_SUPPORTED_RESPONSE,
            0,
            4,
            q[1],
            q[2],
            q[3],
            0,
        ];
        return vec![(String::from(peer), reply)];
    }
    let message = match Message::parse(datagram) {
        Ok(m) => m,
        Err(e) => return malformed(config, tables, io, peer, datagram, &header, e),
    };
    let seq = message.sequence_number;
    let reply = |m: Option<Message<'_>>, io: &mut I| -> Replies {
        m.and_then(|m| encode(io, &m))
            .map(|bytes| vec![(String::from(peer), bytes)])
            .unwrap_or_default()
    };
    match &message.body {
        Body::HeartbeatRequest(_) => {
            let m = load_node(tables, io).ok().map(|node| {
                Message::node(
                    seq,
                    Body::HeartbeatResponse(HeartbeatResponse {
                        recovery_time_stamp: node.recovery,
                    }),
                )
            });
            reply(m, io)
        }
        Body::HeartbeatResponse(_) => {
            heartbeat_answered(tables, io, peer, seq);
            Vec::new()
        }
        Body::AssociationSetupRequest(req) => {
            let (cause, recovery) =
                match associate(tables, io, peer, &req.node_id, req.recovery_time_stamp) {
                    Ok(recovery) => (Cause::REQUEST_ACCEPTED, recovery),
                    Err((r, recovery)) => (r.cause, recovery),
                };
            let m = Message::node(
                seq,
                Body::AssociationSetupResponse(AssociationSetupResponse {
                    node_id: our_node_id(config),
                    cause,
                    recovery_time_stamp: recovery,
                    up_function_features: Some(UP_FUNCTION_FEATURES),
                    cp_function_features: None,
                }),
            );
            reply(Some(m), io)
        }
        Body::AssociationUpdateRequest(req) => {
            let cause = match load_node(tables, io) {
                Ok(node) if node.association(&node_id_bytes(&req.node_id)).is_some() => {
                    Cause::REQUEST_ACCEPTED
                }
                Ok(_) => Cause::NO_ESTABLISHED_PFCP_ASSOCIATION,
                Err(r) => r.cause,
            };
            let m = Message::node(
                seq,
                Body::AssociationUpdateResponse(AssociationUpdateResponse {
                    node_id: our_node_id(config),
                    cause,
                    up_function_features: Some(UP_FUNCTION_FEATURES),
                    cp_function_features: None,
                }),
            );
            reply(Some(m), io)
        }
        Body::AssociationReleaseRequest(req) => {
            let cause = match release(tables, io, &node_id_bytes(&req.node_id)) {
                Ok(()) => Cause::REQUEST_ACCEPTED,
                Err(r) => r.cause,
            };
            let m = Message::node(
                seq,
                Body::AssociationReleaseResponse(AssociationReleaseResponse {
                    node_id: our_node_id(config),
                    cause,
                }),
            );
            reply(Some(m), io)
        }
        Body::SessionEstablishmentRequest(req) => {
            let m = establish(config, tables, io, peer, seq, req);
            reply(Some(m), io)
        }
        Body::SessionModificationRequest(req) => {
            let m = modify(config, tables, io, seq, message.seid.unwrap_or(0), req);
            reply(Some(m), io)
        }
        Body::SessionDeletionRequest(_) => {
            let m = delete(tables, io, seq, message.seid.unwrap_or(0));
            reply(Some(m), io)
        }
        Body::SessionReportResponse(rsp) => {
            if !rsp.cause.is_accepted() {
                io.log(
                    Level::Warn,
                    &format!(
                        "PFCP: {peer} rejected the report for SEID {:#x} with cause {}",
                        message.seid.unwrap_or(0),
                        rsp.cause.0
                    ),
                );
            }
            Vec::new()
        }
        // Answers to requests we never send, and requests only a UP function sends.
        _ => {
            io.log(
                Level::Debug,
                &format!(
                    "PFCP: ignoring message type {} from {peer}",
                    message.message_type()
                ),
            );
            Vec::new()
        }
    }
}

/// Answers a request that failed to parse with the Cause and Offending IE of the error.
fn malformed<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    peer: &str,
    datagram: &[u8],
    header: &RawHeader,
    error: Error,
) -> Replies {
    io.log(
        Level::Debug,
        &format!(
            "PFCP: message type {} from {peer}: {error}",
            header.message_type
        ),
    );
    let Some(cause) = error.cause() else {
        return Vec::new();
    };
    let offending_ie = error.offending_ie();
    let seq = header.sequence;
    let session_seid = |tables: &mut T, io: &mut I| match header.seid {
        Some(seid) => load_session(tables, io, seid)
            .ok()
            .flatten()
            .map_or(0, |s| s.cp_seid),
        None => 0,
    };
    let m = match header.message_type {
        message_type::HEARTBEAT_REQUEST => {
            let Ok(node) = load_node(tables, io) else {
                return Vec::new();
            };
            Message::node(
                seq,
                Body::HeartbeatResponse(HeartbeatResponse {
                    recovery_time_stamp: node.recovery,
                }),
            )
        }
        message_type::ASSOCIATION_SETUP_REQUEST => {
            let recovery = load_node(tables, io).map_or(0, |n| n.recovery);
            Message::node(
                seq,
                Body::AssociationSetupResponse(AssociationSetupResponse {
                    node_id: our_node_id(config),
                    cause,
                    recovery_time_stamp: recovery,
                    up_function_features: Some(UP_FUNCTION_FEATURES),
                    cp_function_features: None,
                }),
            )
        }
        message_type::ASSOCIATION_UPDATE_REQUEST => Message::node(
            seq,
            Body::AssociationUpdateResponse(AssociationUpdateResponse {
                node_id: our_node_id(config),
                cause,
                up_function_features: None,
                cp_function_features: None,
            }),
        ),
        message_type::ASSOCIATION_RELEASE_REQUEST => Message::node(
            seq,
            Body::AssociationReleaseResponse(AssociationReleaseResponse {
                node_id: our_node_id(config),
                cause,
            }),
        ),
        message_type::SESSION_ESTABLISHMENT_REQUEST => {
            // Answer to the CP F-SEID if it can be read at all.
            let packet = Packet::new_unchecked(datagram);
            let start = packet.header_len().min(datagram.len());
            let end = packet.total_len().clamp(start, datagram.len());
            let cp_seid = IeIter::new(&datagram[start..end])
                .map_while(Result::ok)
                .find(|ie| ie.ie_type == ie_type::F_SEID)
                .and_then(|ie| FSeid::parse_value(ie.value, ie_type::F_SEID).ok())
                .map_or(0, |f| f.seid);
            Message::session(
                cp_seid,
                seq,
                Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                    node_id: our_node_id(config),
                    cause,
                    offending_ie,
                    up_f_seid: None,
                    created_pdr: Vec::new(),
                    failed_rule_id: None,
                }),
            )
        }
        message_type::SESSION_MODIFICATION_REQUEST => Message::session(
            session_seid(tables, io),
            seq,
            Body::SessionModificationResponse(SessionModificationResponse {
                cause,
                offending_ie,
                created_pdr: Vec::new(),
                usage_report: Vec::new(),
                failed_rule_id: None,
            }),
        ),
        message_type::SESSION_DELETION_REQUEST => Message::session(
            session_seid(tables, io),
            seq,
            Body::SessionDeletionResponse(SessionDeletionResponse {
                cause,
                offending_ie,
                usage_report: Vec::new(),
            }),
        ),
        _ => return Vec::new(),
    };
    encode(io, &m)
        .map(|bytes| vec![(String::from(peer), bytes)])
        .unwrap_or_default()
}

/// Sets up (or refreshes) the association with `node_id`; returns our recovery time stamp.
/// A CP function that comes back with a new recovery time stamp has lost its sessions: ours
/// are deleted too.
fn associate<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    peer: &str,
    node_id: &NodeId<'_>,
    recovery: u32,
) -> Result<u32, (Reject, u32)> {
    let mut node = load_node(tables, io).map_err(|r| (r, 0))?;
    let id = node_id_bytes(node_id);
    let restarted = match node.associations.iter_mut().find(|a| a.node_id == id) {
        Some(a) => {
            let restarted = a.recovery != recovery;
            a.peer = String::from(peer);
            a.recovery = recovery;
            a.hb_outstanding = None;
            a.misses = 0;
            restarted
        }
        None => {
            node.associations.push(Association {
                node_id: id.clone(),
                peer: String::from(peer),
                recovery,
                hb_last_ms: 0,
                hb_outstanding: None,
                misses: 0,
            });
            false
        }
    };
    save_node(tables, io, &node).map_err(|r| (r, node.recovery))?;
    if restarted {
        io.log(
            Level::Warn,
            &format!("PFCP: CP function {peer} restarted; deleting its sessions"),
        );
        delete_sessions_of(tables, io, &id);
    } else {
        io.log(
            Level::Info,
            &format!("PFCP: association with {peer} set up"),
        );
    }
    Ok(node.recovery)
}

fn release<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    node_id: &[u8],
) -> Result<(), Reject> {
    let mut node = load_node(tables, io)?;
    let before = node.associations.len();
    node.associations.retain(|a| a.node_id != node_id);
    if node.associations.len() == before {
        return Err(Reject::cause(Cause::NO_ESTABLISHED_PFCP_ASSOCIATION));
    }
    save_node(tables, io, &node)?;
    delete_sessions_of(tables, io, node_id);
    io.log(Level::Info, "PFCP: association released");
    Ok(())
}

/// Deletes every session the CP function `node_id` created (no usage reports: it is gone).
fn delete_sessions_of<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    node_id: &[u8],
) {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let keys = match tables.keys(TableId::Sessions, after.as_deref(), 64) {
            Ok(k) => k,
            Err(e) => {
                io.log(Level::Error, &format!("upf-sessions: keys failed: {e}"));
                return;
            }
        };
        let Some(last) = keys.last().cloned() else {
            return;
        };
        for key in keys.into_iter().filter(|k| k.len() == 8) {
            let Ok(Some(bytes)) = tables.get(TableId::Sessions, &key) else {
                continue;
            };
            if let Ok(session) = Session::decode(&bytes)
                && session.node_id == node_id
            {
                destroy(tables, io, &session);
            }
        }
        after = Some(last);
    }
}

/// Records the answer to one of our Heartbeat Requests.
fn heartbeat_answered<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    peer: &str,
    seq: u32,
) {
    let Ok(mut node) = load_node(tables, io) else {
        return;
    };
    let Some(a) = node
        .associations
        .iter_mut()
        .find(|a| a.hb_outstanding == Some(seq) && a.peer == peer)
    else {
        return;
    };
    a.hb_outstanding = None;
    a.misses = 0;
    let _ = save_node(tables, io, &node);
}

/// Sends due Heartbeat Requests and counts the unanswered ones.
pub(crate) fn tick<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    now_ms: u64,
) {
    let interval = config.heartbeat_interval_ms;
    if interval == 0 {
        return;
    }
    let mut node = match tables.get(TableId::State, NODE_KEY) {
        Ok(Some(bytes)) => match NodeState::decode(&bytes) {
            Ok(n) => n,
            Err(_) => return,
        },
        _ => return,
    };
    let due = |a: &Association| {
        a.hb_last_ms == 0 || now_ms < a.hb_last_ms || now_ms - a.hb_last_ms >= interval
    };
    if !node.associations.iter().any(due) {
        return;
    }
    let mut requests = Vec::new();
    let recovery = node.recovery;
    for i in 0..node.associations.len() {
        let a = &node.associations[i];
        if !due(a) {
            continue;
        }
        if a.hb_last_ms == 0 || now_ms < a.hb_last_ms {
            // First tick since the association (or the tick clock restarted): start the period.
            node.associations[i].hb_last_ms = now_ms.max(1);
            continue;
        }
        let seq = node.take_sequence();
        let a = &mut node.associations[i];
        if a.hb_outstanding.is_some() {
            a.misses += 1;
            if a.misses >= HEARTBEAT_MISSES_WARN {
                io.log(
                    Level::Warn,
                    &format!("PFCP: {} has not answered {} heartbeats", a.peer, a.misses),
                );
            }
        }
        a.hb_outstanding = Some(seq);
        a.hb_last_ms = now_ms;
        requests.push((a.peer.clone(), seq));
    }
    let _ = save_node(tables, io, &node);
    for (peer, seq) in requests {
        let m = Message::node(
            seq,
            Body::HeartbeatRequest(HeartbeatRequest {
                recovery_time_stamp: recovery,
            }),
        );
        send(io, &peer, &m);
    }
}

/// The session's lookup keys: TEIDs (uplink table) and UE addresses (downlink table), as
/// [`compile`] indexes them.
fn lookup_keys(session: &Session) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let mut teids = BTreeSet::new();
    let mut ues = BTreeSet::new();
    for p in &session.pdrs {
        match (p.teid, p.ue_ip) {
            (Some(t), _) => {
                teids.insert(t);
            }
            (None, Some(ue)) => {
                ues.insert(u32::from(ue));
            }
            _ => {}
        }
    }
    (teids, ues)
}

/// Why installing compiled rules failed.
enum InstallError {
    /// A TEID or UE address belongs to another session: the PDR that wanted it.
    Conflict(FailedRuleId),
    /// A table refused a write.
    Table,
}

/// Writes the rule sets of `new` and removes those of `old` it no longer has. A key held by
/// another session is a conflict (nothing is written then).
fn install<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    session: &Session,
    old: &Compiled,
    new: &Compiled,
) -> Result<(), InstallError> {
    for (table, map, old_map) in [
        (TableId::Uplink, &new.uplink, &old.uplink),
        (TableId::Downlink, &new.downlink, &old.downlink),
    ] {
        let fresh: Vec<u32> = map
            .keys()
            .filter(|k| !old_map.contains_key(k))
            .copied()
            .collect();
        if fresh.is_empty() {
            continue;
        }
        let keys: Vec<Vec<u8>> = fresh.iter().map(|k| k.to_be_bytes().to_vec()).collect();
        let values = tables.get_many(table, &keys).map_err(|e| {
            io.log(
                Level::Error,
                &format!("{}: get-many failed: {e}", table.name()),
            );
            InstallError::Table
        })?;
        for (k, v) in fresh.iter().zip(values) {
            let Some(v) = v else { continue };
            if RuleSet::decode(&v).is_ok_and(|s| s.seid == session.seid) {
                continue;
            }
            let pdr = session
                .pdrs
                .iter()
                .find(|p| match table {
                    TableId::Uplink => p.teid == Some(*k),
                    _ => p.teid.is_none() && p.ue_ip.map(u32::from) == Some(*k),
                })
                .map_or(0, |p| p.id);
            io.log(
                Level::Warn,
                &format!(
                    "PFCP: PDR {pdr} of session {:#x} wants {} key {k:#x}, held by another session",
                    session.seid,
                    table.name()
                ),
            );
            return Err(InstallError::Conflict(FailedRuleId::Pdr(pdr)));
        }
    }
    for (table, map, old_map) in [
        (TableId::Uplink, &new.uplink, &old.uplink),
        (TableId::Downlink, &new.downlink, &old.downlink),
    ] {
        for (k, set) in map {
            if old_map.get(k) == Some(set) {
                continue;
            }
            if let Err(e) = tables.put(table, &k.to_be_bytes(), &set.encode()) {
                io.log(Level::Warn, &format!("{}: put failed: {e}", table.name()));
                return Err(InstallError::Table);
            }
        }
        for k in old_map.keys().filter(|k| !map.contains_key(k)) {
            let _ = tables.remove(table, &k.to_be_bytes());
        }
    }
    Ok(())
}

/// Undoes a failed [`install`]: back to `old`.
fn restore<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    session: &Session,
    old: &Compiled,
    new: &Compiled,
) {
    for (table, map, new_map) in [
        (TableId::Uplink, &old.uplink, &new.uplink),
        (TableId::Downlink, &old.downlink, &new.downlink),
    ] {
        for k in new_map.keys().filter(|k| !map.contains_key(k)) {
            // Only keys this session wrote (a conflicting key is another session's).
            if let Ok(Some(v)) = tables.get(table, &k.to_be_bytes())
                && RuleSet::decode(&v).is_ok_and(|s| s.seid == session.seid)
            {
                let _ = tables.remove(table, &k.to_be_bytes());
            }
        }
        for (k, set) in map {
            if let Err(e) = tables.put(table, &k.to_be_bytes(), &set.encode()) {
                io.log(
                    Level::Error,
                    &format!("{}: restore failed: {e}", table.name()),
                );
            }
        }
    }
}

/// Removes every table entry of a session.
fn destroy<T: Tables + ?Sized, I: Io + ?Sized>(tables: &mut T, io: &mut I, session: &Session) {
    let (teids, ues) = lookup_keys(session);
    let mut failed = false;
    for t in teids {
        failed |= tables.remove(TableId::Uplink, &t.to_be_bytes()).is_err();
    }
    for u in ues {
        failed |= tables.remove(TableId::Downlink, &u.to_be_bytes()).is_err();
    }
    for q in &session.qers {
        failed |= tables
            .remove(TableId::Qer, &qer_key(session.seid, q.id))
            .is_err();
    }
    for u in &session.urrs {
        for uplink in [true, false] {
            failed |= tables
                .remove(TableId::Usage, &usage_key(session.seid, u.id, uplink))
                .is_err();
        }
    }
    for f in &session.fars {
        failed |= tables
            .remove(TableId::State, &notify_key(session.seid, f.id))
            .is_err();
    }
    failed |= tables
        .remove(
            TableId::Sessions,
            &cp_index_key(session.cp_seid, &session.node_id),
        )
        .is_err();
    failed |= tables
        .remove(TableId::Sessions, &session_key(session.seid))
        .is_err();
    if failed {
        io.log(
            Level::Error,
            &format!(
                "session {:#x}: some table entries could not be removed",
                session.seid
            ),
        );
    }
}

/// Allocates a TEID no session uses (not in `taken`, not in `upf-uplink`).
fn allocate_teid<T: Tables + ?Sized>(
    tables: &mut T,
    node: &mut NodeState,
    taken: &BTreeSet<u32>,
) -> Option<u32> {
    for _ in 0..1024 {
        let teid = node.next_teid;
        node.next_teid = teid.wrapping_add(1).max(1);
        if teid == 0 || taken.contains(&teid) {
            continue;
        }
        match tables.get(TableId::Uplink, &teid.to_be_bytes()) {
            Ok(None) => return Some(teid),
            Ok(Some(_)) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// State of F-TEID allocation while applying a request.
struct TeidAllocation<'n> {
    node: &'n mut NodeState,
    /// TEIDs of the session (explicit and chosen).
    taken: BTreeSet<u32>,
    /// Choose ID → TEID.
    chosen: BTreeMap<u8, u32>,
    created: Vec<CreatedPdr>,
    n3: Ipv4Addr,
    allocated: bool,
}

impl TeidAllocation<'_> {
    fn new<'n>(node: &'n mut NodeState, session: &Session, n3: Ipv4Addr) -> TeidAllocation<'n> {
        let mut taken = BTreeSet::new();
        let mut chosen = BTreeMap::new();
        for p in &session.pdrs {
            if let Some(t) = p.teid {
                taken.insert(t);
                if let Some(id) = p.choose_id {
                    chosen.insert(id, t);
                }
            }
        }
        TeidAllocation {
            node,
            taken,
            chosen,
            created: Vec::new(),
            n3,
            allocated: false,
        }
    }

    /// The local TEID of a PDI: (TEID, Choose ID, chosen by us).
    fn resolve<T: Tables + ?Sized>(
        &mut self,
        tables: &mut T,
        pdr_id: u16,
        pdi: &Pdi<'_>,
        keep: Option<(u32, Option<u8>)>,
    ) -> Result<(Option<u32>, Option<u8>, bool), Reject> {
        Ok(match pdi.local_f_teid {
            None => (None, None, false),
            Some(FTeid::Assigned { teid, .. }) => {
                self.taken.insert(teid);
                (Some(teid), None, false)
            }
            Some(FTeid::Choose {
                ipv4, choose_id, ..
            }) => {
                if !ipv4 {
                    // IPv6-only tunnels are not supported.
                    return Err(Reject::rule(FailedRuleId::Pdr(pdr_id)));
                }
                let existing = choose_id
                    .and_then(|id| self.chosen.get(&id).copied())
                    .or(keep.map(|k| k.0));
                let teid = match existing {
                    Some(t) => t,
                    None => {
                        let t = allocate_teid(tables, self.node, &self.taken)
                            .ok_or(Reject::cause(Cause::NO_RESOURCES_AVAILABLE))?;
                        self.allocated = true;
                        t
                    }
                };
                self.taken.insert(teid);
                if let Some(id) = choose_id {
                    self.chosen.insert(id, teid);
                }
                self.created.push(CreatedPdr {
                    pdr_id,
                    local_f_teid: Some(FTeid::Assigned {
                        teid,
                        ipv4: Some(self.n3),
                        ipv6: None,
                    }),
                    ue_ip_address: None,
                });
                (Some(teid), choose_id.or(keep.and_then(|k| k.1)), true)
            }
        })
    }
}

fn pdr_def<T: Tables + ?Sized>(
    tables: &mut T,
    alloc: &mut TeidAllocation<'_>,
    c: &CreatePdr<'_>,
) -> Result<PdrDef, Reject> {
    let (teid, choose_id, chosen) = alloc.resolve(tables, c.pdr_id, &c.pdi, None)?;
    let ue_ip = ue_ip(c.pdr_id, &c.pdi)?;
    Ok(PdrDef {
        id: c.pdr_id,
        precedence: c.precedence,
        source_interface: c.pdi.source_interface.0,
        teid,
        choose_id,
        chosen,
        ue_ip,
        sdf: sdf_defs(&c.pdi),
        qfis: c.pdi.qfi.iter().map(|q| q.0).collect(),
        ohr: c.outer_header_removal.map(|o| o.description),
        far_id: c.far_id,
        qer_ids: c.qer_id.clone(),
        urr_ids: c.urr_id.clone(),
    })
}

fn ue_ip(pdr_id: u16, pdi: &Pdi<'_>) -> Result<Option<Ipv4Addr>, Reject> {
    match pdi.ue_ip_address {
        // UE address allocation (UEIP) is not supported.
        Some(u) if u.choose_ipv4 || u.choose_ipv6 => Err(Reject::rule(FailedRuleId::Pdr(pdr_id))),
        Some(u) => Ok(u.ipv4),
        None => Ok(None),
    }
}

fn sdf_defs(pdi: &Pdi<'_>) -> Vec<SdfDef> {
    pdi.sdf_filter
        .iter()
        .map(|f| SdfDef {
            flow_description: f.flow_description.map(<[u8]>::to_vec),
            tos: f.tos_traffic_class,
        })
        .collect()
}

fn far_def<I: Io + ?Sized>(io: &mut I, c: &CreateFar<'_>) -> FarDef {
    let fp = c.forwarding_parameters.as_ref();
    warn_buffering(io, c.far_id, c.apply_action);
    FarDef {
        id: c.far_id,
        action: c.apply_action.0,
        destination: fp.map(|f| f.destination_interface.0),
        ohc: fp.and_then(|f| f.outer_header_creation).map(|o| OhcDef {
            description: o.description,
            teid: o.teid.unwrap_or(0),
            ipv4: o.ipv4,
        }),
        tlm: fp.and_then(|f| f.transport_level_marking),
    }
}

fn warn_buffering<I: Io + ?Sized>(io: &mut I, far: u32, action: ApplyAction) {
    if action.contains(ApplyAction::BUFF) && !action.contains(ApplyAction::FORW) {
        io.log(
            Level::Info,
            &format!(
                "FAR {far} asks BUFF: this UPF does not buffer; its packets are dropped and \
                 counted as drop/buffer (NOCP still sends a Downlink Data Report)"
            ),
        );
    }
}

fn qer_def(c: &CreateQer) -> QerDef {
    QerDef {
        id: c.qer_id,
        gate_ul: c.gate_status.uplink,
        gate_dl: c.gate_status.downlink,
        mbr: c.mbr.map(|b| (b.uplink, b.downlink)),
        qfi: c.qfi.map(|q| q.0),
    }
}

fn urr_def(c: &CreateUrr, now: u32) -> UrrDef {
    UrrDef {
        id: c.urr_id,
        method: c.measurement_method.0,
        triggers: c.reporting_triggers.0,
        threshold: c
            .volume_threshold
            .map_or([None; 3], |v| [v.total, v.uplink, v.downlink]),
        seqn: 0,
        last_report: now,
    }
}

/// Replaces the rule with the same ID, or appends it.
fn upsert<R>(rules: &mut Vec<R>, rule: R, same: impl Fn(&R) -> bool) {
    match rules.iter_mut().find(|r| same(r)) {
        Some(slot) => *slot = rule,
        None => rules.push(rule),
    }
}

fn establish<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    peer: &str,
    seq: u32,
    req: &SessionEstablishmentRequest<'_>,
) -> Message<'static> {
    let cp_seid = req.cp_f_seid.seid;
    let answer = |result: Result<(u64, Vec<CreatedPdr>), Reject>| {
        let (cause, offending_ie, up_f_seid, created_pdr, failed_rule_id) = match result {
            Ok((seid, created)) => (
                Cause::REQUEST_ACCEPTED,
                None,
                Some(FSeid {
                    seid,
                    ipv4: Some(config.node_id),
                    ipv6: None,
                }),
                created,
                None,
            ),
            Err(r) => (r.cause, r.offending_ie, None, Vec::new(), r.failed_rule),
        };
        Message::session(
            cp_seid,
            seq,
            Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                node_id: our_node_id(config),
                cause,
                offending_ie,
                up_f_seid,
                created_pdr,
                failed_rule_id,
            }),
        )
    };
    answer(establish_session(config, tables, io, peer, req))
}

fn establish_session<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    peer: &str,
    req: &SessionEstablishmentRequest<'_>,
) -> Result<(u64, Vec<CreatedPdr>), Reject> {
    let mut node = load_node(tables, io)?;
    let node_id = node_id_bytes(&req.node_id);
    if node.association(&node_id).is_none() {
        return Err(Reject::cause(Cause::NO_ESTABLISHED_PFCP_ASSOCIATION));
    }
    // A retransmission (our answer was lost): answer again with the session we made.
    let index = cp_index_key(req.cp_f_seid.seid, &node_id);
    if let Ok(Some(v)) = tables.get(TableId::Sessions, &index)
        && let Ok(b) = <[u8; 8]>::try_from(v.as_slice())
        && let Ok(Some(existing)) = load_session(tables, io, u64::from_be_bytes(b))
        && existing.node_id == node_id
    {
        io.log(
            Level::Info,
            &format!(
                "session {:#x}: Session Establishment Request retransmitted by {peer}",
                existing.seid
            ),
        );
        let created = existing
            .pdrs
            .iter()
            .filter(|p| p.chosen)
            .filter_map(|p| {
                p.teid.map(|teid| CreatedPdr {
                    pdr_id: p.id,
                    local_f_teid: Some(FTeid::Assigned {
                        teid,
                        ipv4: Some(config.n3_address),
                        ipv6: None,
                    }),
                    ue_ip_address: None,
                })
            })
            .collect();
        return Ok((existing.seid, created));
    }
    let mut seid = 0;
    for _ in 0..1024 {
        let candidate = node.next_seid;
        node.next_seid = candidate.wrapping_add(1).max(1);
        match tables.get(TableId::Sessions, &session_key(candidate)) {
            Ok(None) if candidate != 0 => {
                seid = candidate;
                break;
            }
            Ok(_) => continue,
            Err(e) => {
                return Err(Reject::system(
                    io,
                    &format!("upf-sessions: get failed: {e}"),
                ));
            }
        }
    }
    if seid == 0 {
        return Err(Reject::cause(Cause::NO_RESOURCES_AVAILABLE));
    }
    let now = ntp_now(io);
    let mut session = Session {
        seid,
        cp_seid: req.cp_f_seid.seid,
        peer: String::from(peer),
        node_id,
        pdrs: Vec::new(),
        fars: Vec::new(),
        qers: Vec::new(),
        urrs: Vec::new(),
    };
    for c in &req.create_far {
        let f = far_def(io, c);
        upsert(&mut session.fars, f, |r| r.id == c.far_id);
    }
    for c in &req.create_qer {
        upsert(&mut session.qers, qer_def(c), |r| r.id == c.qer_id);
    }
    for c in &req.create_urr {
        upsert(&mut session.urrs, urr_def(c, now), |r| r.id == c.urr_id);
    }
    let created = {
        let mut alloc = TeidAllocation::new(&mut node, &session, config.n3_address);
        let mut pdrs = Vec::new();
        for c in &req.create_pdr {
            let p = pdr_def(tables, &mut alloc, c)?;
            upsert(&mut pdrs, p, |r: &PdrDef| r.id == c.pdr_id);
        }
        session.pdrs = pdrs;
        alloc.created
    };
    let compiled = compile(&session).map_err(Reject::rule)?;
    let empty = Compiled::default();
    match install(tables, io, &session, &empty, &compiled) {
        Ok(()) => {}
        Err(InstallError::Conflict(rule)) => return Err(Reject::rule(rule)),
        Err(InstallError::Table) => {
            restore(tables, io, &session, &empty, &compiled);
            return Err(Reject::cause(Cause::NO_RESOURCES_AVAILABLE));
        }
    }
    if let Err(r) = save_session(tables, io, &session) {
        restore(tables, io, &session, &empty, &compiled);
        return Err(r);
    }
    if let Err(e) = tables.put(TableId::Sessions, &index, &seid.to_be_bytes()) {
        io.log(Level::Warn, &format!("upf-sessions: index put failed: {e}"));
    }
    // The allocators only avoid probing: a lost update costs lookups, never a duplicate.
    let _ = save_node(tables, io, &node);
    io.log(
        Level::Info,
        &format!(
            "session {seid:#x} established for {peer} (CP SEID {:#x}): {} PDRs",
            session.cp_seid,
            session.pdrs.len()
        ),
    );
    Ok((seid, created))
}

fn modify<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    seq: u32,
    seid: u64,
    req: &SessionModificationRequest<'_>,
) -> Message<'static> {
    let (cp_seid, result) = match load_session(tables, io, seid) {
        Ok(Some(session)) => {
            let cp = req.cp_f_seid.map_or(session.cp_seid, |f| f.seid);
            (cp, modify_session(config, tables, io, session, req))
        }
        Ok(None) => (0, Err(Reject::cause(Cause::SESSION_CONTEXT_NOT_FOUND))),
        Err(r) => (0, Err(r)),
    };
    let body = match result {
        Ok((created_pdr, usage_report)) => SessionModificationResponse {
            cause: Cause::REQUEST_ACCEPTED,
            offending_ie: None,
            created_pdr,
            usage_report,
            failed_rule_id: None,
        },
        Err(r) => SessionModificationResponse {
            cause: r.cause,
            offending_ie: r.offending_ie,
            created_pdr: Vec::new(),
            usage_report: Vec::new(),
            failed_rule_id: r.failed_rule,
        },
    };
    Message::session(cp_seid, seq, Body::SessionModificationResponse(body))
}

type Modified = (Vec<CreatedPdr>, Vec<UsageReport>);

fn modify_session<T: Tables + ?Sized, I: Io + ?Sized>(
    config: &Config,
    tables: &mut T,
    io: &mut I,
    mut session: Session,
    req: &SessionModificationRequest<'_>,
) -> Result<Modified, Reject> {
    let old = session.clone();
    let old_compiled = compile(&old).unwrap_or_default();
    let mut node = load_node(tables, io)?;
    let now = ntp_now(io);
    if let Some(f) = req.cp_f_seid {
        session.cp_seid = f.seid;
    }

    for r in &req.remove_pdr {
        session.pdrs.retain(|p| p.id != r.pdr_id);
    }
    for r in &req.remove_far {
        session.fars.retain(|f| f.id != r.far_id);
    }
    let removed_urrs: Vec<u32> = req
        .remove_urr
        .iter()
        .map(|r| r.urr_id)
        .filter(|id| session.urr(*id).is_some())
        .collect();
    session.urrs.retain(|u| !removed_urrs.contains(&u.id));
    for r in &req.remove_qer {
        session.qers.retain(|q| q.id != r.qer_id);
    }

    for c in &req.create_far {
        let f = far_def(io, c);
        upsert(&mut session.fars, f, |r| r.id == c.far_id);
    }
    for c in &req.create_qer {
        upsert(&mut session.qers, qer_def(c), |r| r.id == c.qer_id);
    }
    for c in &req.create_urr {
        upsert(&mut session.urrs, urr_def(c, now), |r| r.id == c.urr_id);
    }

    let mut end_markers: Vec<(u32, Ipv4Addr)> = Vec::new();
    for u in &req.update_far {
        let Some(far) = session.fars.iter_mut().find(|f| f.id == u.far_id) else {
            return Err(Reject::rule(FailedRuleId::Far(u.far_id)));
        };
        if let Some(a) = u.apply_action {
            far.action = a.0;
            warn_buffering(io, far.id, a);
        }
        if let Some(fp) = &u.update_forwarding_parameters {
            if let Some(d) = fp.destination_interface {
                far.destination = Some(d.0);
            }
            if let Some(o) = fp.outer_header_creation {
                let new = OhcDef {
                    description: o.description,
                    teid: o.teid.unwrap_or(0),
                    ipv4: o.ipv4,
                };
                // A path switch: the old gNB gets an End Marker after its last packet.
                if let Some(old) = far.ohc
                    && old != new
                    && let Some(addr) = old.ipv4
                    && old.description & outpost_pfcp::OuterHeaderCreation::GTPU_UDP_IPV4 != 0
                    && far.destination == Some(outpost_pfcp::Interface::ACCESS.0)
                {
                    end_markers.push((old.teid, addr));
                }
                far.ohc = Some(new);
            }
            if let Some(t) = fp.transport_level_marking {
                far.tlm = Some(t);
            }
        }
    }
    for u in &req.update_qer {
        let Some(q) = session.qers.iter_mut().find(|q| q.id == u.qer_id) else {
            return Err(Reject::rule(FailedRuleId::Qer(u.qer_id)));
        };
        if let Some(g) = u.gate_status {
            q.gate_ul = g.uplink;
            q.gate_dl = g.downlink;
        }
        if let Some(m) = u.mbr {
            q.mbr = Some((m.uplink, m.downlink));
        }
        if let Some(f) = u.qfi {
            q.qfi = Some(f.0);
        }
    }
    for u in &req.update_urr {
        let Some(r) = session.urrs.iter_mut().find(|r| r.id == u.urr_id) else {
            return Err(Reject::rule(FailedRuleId::Urr(u.urr_id)));
        };
        if let Some(m) = u.measurement_method {
            r.method = m.0;
        }
        if let Some(t) = u.reporting_triggers {
            r.triggers = t.0;
        }
        if let Some(v) = u.volume_threshold {
            r.threshold = [v.total, v.uplink, v.downlink];
        }
    }

    let (created, allocated) = {
        let mut alloc = TeidAllocation::new(&mut node, &session, config.n3_address);
        let mut pdrs = core::mem::take(&mut session.pdrs);
        for c in &req.create_pdr {
            let p = pdr_def(tables, &mut alloc, c)?;
            upsert(&mut pdrs, p, |r: &PdrDef| r.id == c.pdr_id);
        }
        for u in &req.update_pdr {
            let Some(p) = pdrs.iter_mut().find(|p| p.id == u.pdr_id) else {
                return Err(Reject::rule(FailedRuleId::Pdr(u.pdr_id)));
            };
            if let Some(pdi) = &u.pdi {
                let keep = p.teid.filter(|_| p.chosen).map(|t| (t, p.choose_id));
                let (teid, choose_id, chosen) = alloc.resolve(tables, u.pdr_id, pdi, keep)?;
                p.teid = teid;
                p.choose_id = choose_id;
                p.chosen = chosen;
                p.source_interface = pdi.source_interface.0;
                p.ue_ip = ue_ip(u.pdr_id, pdi)?;
                p.sdf = sdf_defs(pdi);
                p.qfis = pdi.qfi.iter().map(|q| q.0).collect();
            }
            if let Some(o) = u.outer_header_removal {
                p.ohr = Some(o.description);
            }
            if let Some(prec) = u.precedence {
                p.precedence = prec;
            }
            if let Some(f) = u.far_id {
                p.far_id = Some(f);
            }
            if !u.urr_id.is_empty() {
                p.urr_ids = u.urr_id.clone();
            }
            if !u.qer_id.is_empty() {
                p.qer_ids = u.qer_id.clone();
            }
        }
        session.pdrs = pdrs;
        // Updated PDRs keep their TEID: only Create PDR answers with Created PDR.
        let created_ids: BTreeSet<u16> = req.create_pdr.iter().map(|c| c.pdr_id).collect();
        let created = alloc
            .created
            .into_iter()
            .filter(|c| created_ids.contains(&c.pdr_id))
            .collect::<Vec<_>>();
        (created, alloc.allocated)
    };

    let compiled = compile(&session).map_err(Reject::rule)?;
    for (teid, addr) in &end_markers {
        let marker = packet::end_marker(config.n3_address, *addr, *teid);
        if let Err(e) = io.transmit(crate::compile::N3, &marker) {
            io.log(Level::Warn, &format!("End Marker to {addr}: {e}"));
        }
    }
    match install(tables, io, &session, &old_compiled, &compiled) {
        Ok(()) => {}
        Err(InstallError::Conflict(rule)) => return Err(Reject::rule(rule)),
        Err(InstallError::Table) => {
            restore(tables, io, &session, &old_compiled, &compiled);
            return Err(Reject::cause(Cause::NO_RESOURCES_AVAILABLE));
        }
    }

    // Usage reports: removed URRs (final), queried ones (immediate).
    let mut reports = Vec::new();
    for id in &removed_urrs {
        if let Some(mut u) = old.urr(*id).cloned() {
            reports.push(take_usage(
                tables,
                session.seid,
                &mut u,
                UsageReportTrigger::TERMR,
                now,
            ));
        }
    }
    let all = req.pfcpsmreq_flags.is_some_and(|f| f & QAURR != 0);
    let queried: Vec<u32> = if all {
        session.urrs.iter().map(|u| u.id).collect()
    } else {
        req.query_urr.iter().map(|q| q.urr_id).collect()
    };
    for id in queried {
        if let Some(u) = session.urrs.iter_mut().find(|u| u.id == id) {
            reports.push(take_usage(
                tables,
                session.seid,
                u,
                UsageReportTrigger::IMMER,
                now,
            ));
        }
    }
    // Clean-up of removed rules' state; updated FARs may notify buffered data again.
    for q in &old.qers {
        if session.qer(q.id).is_none() {
            let _ = tables.remove(TableId::Qer, &qer_key(session.seid, q.id));
        }
    }
    for f in &old.fars {
        if session.far(f.id).is_none() || req.update_far.iter().any(|u| u.far_id == f.id) {
            let _ = tables.remove(TableId::State, &notify_key(session.seid, f.id));
        }
    }

    if let Err(r) = save_session(tables, io, &session) {
        restore(tables, io, &session, &old_compiled, &compiled);
        return Err(r);
    }
    if session.cp_seid != old.cp_seid {
        let _ = tables.remove(TableId::Sessions, &cp_index_key(old.cp_seid, &old.node_id));
        let _ = tables.put(
            TableId::Sessions,
            &cp_index_key(session.cp_seid, &session.node_id),
            &session.seid.to_be_bytes(),
        );
    }
    if allocated {
        let _ = save_node(tables, io, &node);
    }
    Ok((created, reports))
}

fn delete<T: Tables + ?Sized, I: Io + ?Sized>(
    tables: &mut T,
    io: &mut I,
    seq: u32,
    seid: u64,
) -> Message<'static> {
    let (cp_seid, body) = match load_session(tables, io, seid) {
        Ok(Some(mut session)) => {
            let now = ntp_now(io);
            let seid = session.seid;
            let reports = session
                .urrs
                .iter_mut()
                .map(|u| take_usage(tables, seid, u, UsageReportTrigger::TERMR, now))
                .collect();
            destroy(tables, io, &session);
            io.log(Level::Info, &format!("session {seid:#x} deleted"));
            (
                session.cp_seid,
                SessionDeletionResponse {
                    cause: Cause::REQUEST_ACCEPTED,
                    offending_ie: None,
                    usage_report: reports,
                },
            )
        }
        Ok(None) => (
            0,
            SessionDeletionResponse {
                cause: Cause::SESSION_CONTEXT_NOT_FOUND,
                offending_ie: None,
                usage_report: Vec::new(),
            },
        ),
        Err(r) => (
            0,
            SessionDeletionResponse {
                cause: r.cause,
                offending_ie: None,
                usage_report: Vec::new(),
            },
        ),
    };
    Message::session(cp_seid, seq, Body::SessionDeletionResponse(body))
}

/// A usage report of what `urr` measured since its last report; resets the measurement
/// (the counters are removed) and moves its UR-SEQN and start time on.
fn take_usage<T: Tables + ?Sized>(
    tables: &mut T,
    seid: u64,
    urr: &mut UrrDef,
    trigger: UsageReportTrigger,
    now: u32,
) -> UsageReport {
    let mut read = |uplink: bool| {
        let key = usage_key(seid, urr.id, uplink);
        let v = tables.count(TableId::Usage, &key, 0, 0).unwrap_or((0, 0));
        let _ = tables.remove(TableId::Usage, &key);
        v
    };
    let (ul, dl) = (read(true), read(false));
    let method = MeasurementMethod(urr.method);
    let volume =
        method.contains(MeasurementMethod::VOLUM) || !method.contains(MeasurementMethod::DURAT);
    let report = UsageReport {
        urr_id: urr.id,
        ur_seqn: urr.seqn,
        usage_report_trigger: trigger,
        start_time: Some(urr.last_report),
        end_time: Some(now),
        volume_measurement: volume.then(|| VolumeMeasurement {
            total_volume: Some(ul.1.saturating_add(dl.1)),
            uplink_volume: Some(ul.1),
            downlink_volume: Some(dl.1),
            total_packets: Some(ul.0.saturating_add(dl.0)),
            uplink_packets: Some(ul.0),
            downlink_packets: Some(dl.0),
        }),
        duration_measurement: method
            .contains(MeasurementMethod::DURAT)
            .then(|| now.wrapping_sub(urr.last_report)),
        time_of_first_packet: None,
        time_of_last_packet: None,
        usage_information: None,
    };
    urr.seqn = urr.seqn.wrapping_add(1);
    urr.last_report = now;
    report
}

/// Sends a Session Report Request (USAR) with a usage report for each of `urrs` of session
/// `seid` to the SMF that created it.
pub(crate) fn report_usage<T: Tables + ?Sized, I: Io + ?Sized>(
    _config: &Config,
    tables: &mut T,
    io: &mut I,
    seid: u64,
    urrs: &[u32],
    trigger: UsageReportTrigger,
) {
    let Ok(Some(mut session)) = load_session(tables, io, seid) else {
        return;
    };
    let now = ntp_now(io);
    let reports: Vec<UsageReport> = session
        .urrs
        .iter_mut()
        .filter(|u| urrs.contains(&u.id))
        .map(|u| take_usage(tables, seid, u, trigger, now))
        .collect();
    if reports.is_empty() {
        return;
    }
    let _ = save_session(tables, io, &session);
    let Ok(mut node) = load_node(tables, io) else {
        return;
    };
    let seq = node.take_sequence();
    let _ = save_node(tables, io, &node);
    let m = Message::session(
        session.cp_seid,
        seq,
        Body::SessionReportRequest(SessionReportRequest {
            report_type: ReportType::USAR,
            downlink_data_report: None,
            usage_report: reports,
            error_indication_report: None,
        }),
    );
    send(io, &session.peer, &m);
}

/// Sends a Session Report Request (DLDR) for the first downlink packet a BUFF+NOCP FAR
/// dropped since it was last created or updated.
pub(crate) fn notify_downlink_data<T: Tables + ?Sized, I: Io + ?Sized>(
    _config: &Config,
    tables: &mut T,
    io: &mut I,
    seid: u64,
    far: u32,
    pdr: u16,
) {
    let key = notify_key(seid, far);
    if !matches!(tables.get(TableId::State, &key), Ok(None)) {
        return;
    }
    let Ok(Some(session)) = load_session(tables, io, seid) else {
        return;
    };
    if tables.put(TableId::State, &key, &[1]).is_err() {
        return;
    }
    let Ok(mut node) = load_node(tables, io) else {
        return;
    };
    let seq = node.take_sequence();
    let _ = save_node(tables, io, &node);
    let m = Message::session(
        session.cp_seid,
        seq,
        Body::SessionReportRequest(SessionReportRequest {
            report_type: ReportType::DLDR,
            downlink_data_report: Some(DownlinkDataReport { pdr_id: vec![pdr] }),
            usage_report: Vec::new(),
            error_indication_report: None,
        }),
    );
    send(io, &session.peer, &m);
}
