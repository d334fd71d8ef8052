//! Shared by the UPF suites and the UPF benchmark: an appliance running the UPF plugin on two
//! memory ports, and an SMF speaking PFCP to its control socket over real UDP.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use outpost_pfcp::{Body, Cause, FSeid, FTeid, Message, SessionEstablishmentRequest};
use outpost_runtime::Appliance;

#[path = "../../../nfv/upf/tests/common/mod.rs"]
pub mod common;

/// The UPF on memory ports `n3` and `n6` (IP packets, no Ethernet), with its six tables.
pub fn manifest(version: u32, batch: u32, sessions: u64) -> String {
    manifest_of("upf.wasm", version, batch, sessions)
}

/// [`manifest`] with another build of the UPF (a file name in the artifacts directory).
pub fn manifest_of(component: &str, version: u32, batch: u32, sessions: u64) -> String {
    format!(
        r#"
[ports.n3]
kind = "memory"
capacity = 65536
[ports.n6]
kind = "memory"
capacity = 65536
{tables}
[plugins.upf]
kind = "network-function"
component = "{component}"
version = "{version}"
config = {{ n3-address = "{n3}", node-id = "{node}", heartbeat-interval-ms = "0" }}
grants.ports = ["n3", "n6"]
grants.tables = {granted}
grants.control = "127.0.0.1:0"
limits = {{ memory_mb = 64, deadline_ms = 1000, batch = {batch} }}
"#,
        tables = tables(sessions),
        granted = GRANTED_TABLES,
        n3 = common::N3_ADDR,
        node = common::NODE_ADDR,
    )
}

/// The UPF's tables, as `grants.tables` lists them.
pub const GRANTED_TABLES: &str =
    r#"["upf-state", "upf-sessions", "upf-uplink", "upf-downlink", "upf-qer", "upf-usage"]"#;

/// The six tables the UPF keeps its state in, sized for `sessions`.
pub fn tables(sessions: u64) -> String {
    format!(
        r#"
[tables.upf-state]
kind = "exact"
max_entries = 1024
max_value = 65536
[tables.upf-sessions]
kind = "exact"
max_entries = {entries}
max_value = 65536
[tables.upf-uplink]
kind = "exact"
max_entries = {entries}
max_value = 4096
[tables.upf-downlink]
kind = "exact"
max_entries = {entries}
max_value = 4096
[tables.upf-qer]
kind = "exact"
max_entries = {entries}
[tables.upf-usage]
kind = "exact"
max_entries = {entries}
"#,
        entries = sessions * 4 + 64,
    )
}

/// UE `i`'s address.
pub fn ue(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 45, (i / 250) as u8, (i % 250 + 2) as u8)
}

/// The gNB TEID of session `i`.
pub fn gnb_teid(i: u32) -> u32 {
    0x1_0000 + i
}

/// An SMF on a UDP socket.
pub struct Smf {
    sock: UdpSocket,
    upf: SocketAddr,
    seq: u32,
}

impl Smf {
    /// Talks to the UPF's control socket of `app`.
    pub fn new(app: &Arc<Appliance>) -> Smf {
        let upf = app.network_functions()[0]
            .control
            .clone()
            .unwrap()
            .parse()
            .unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Smf { sock, upf, seq: 0 }
    }

    fn ask(&mut self, m: Message<'_>) -> Vec<u8> {
        self.sock.send_to(&m.to_vec().unwrap(), self.upf).unwrap();
        let mut buf = vec![0u8; 65535];
        loop {
            let (n, _) = self.sock.recv_from(&mut buf).expect("the UPF answers");
            let reply = Message::parse(&buf[..n]).unwrap();
            if reply.sequence_number == m.sequence_number {
                return buf[..n].to_vec();
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Association setup; panics unless accepted.
    pub fn associate(&mut self) {
        let seq = self.next_seq();
        let bytes = self.ask(Message::node(
            seq,
            Body::AssociationSetupRequest(outpost_pfcp::AssociationSetupRequest {
                node_id: outpost_pfcp::NodeId::Ipv4(common::SMF_ADDR),
                recovery_time_stamp: 0xe5a1_0000,
                up_function_features: None,
                cp_function_features: None,
            }),
        ));
        let Body::AssociationSetupResponse(r) = Message::parse(&bytes).unwrap().body else {
            panic!("not an association setup response")
        };
        assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    }

    /// Establishes session `i` (UE `ue(i)`, gNB TEID `gnb_teid(i)`, no usage threshold);
    /// returns (UP SEID, the UPF's uplink TEID).
    pub fn establish(&mut self, i: u32) -> (u64, u32) {
        let mut req: SessionEstablishmentRequest<'static> = common::session_request();
        req.cp_f_seid = FSeid {
            seid: common::CP_SEID + u64::from(i),
            ipv4: Some(common::SMF_ADDR),
            ipv6: None,
        };
        for pdr in &mut req.create_pdr {
            if let Some(ue_ip) = &mut pdr.pdi.ue_ip_address {
                ue_ip.ipv4 = Some(ue(i));
            }
        }
        req.create_far[1] = common::downlink_far(common::GNB, gnb_teid(i));
        req.create_urr = vec![common::urr(None)];
        // No policing: the benchmark offers more than any MBR would pass.
        req.create_qer = vec![common::qer(100_000_000, 100_000_000)];
        let seq = self.next_seq();
        let bytes = self.ask(Message::session(
            0,
            seq,
            Body::SessionEstablishmentRequest(req),
        ));
        let Body::SessionEstablishmentResponse(r) = Message::parse(&bytes).unwrap().body else {
            panic!("not an establishment response")
        };
        assert_eq!(r.cause, Cause::REQUEST_ACCEPTED, "{r:?}");
        let teid = r
            .created_pdr
            .iter()
            .find_map(|c| match c.local_f_teid {
                Some(FTeid::Assigned { teid, .. }) => Some(teid),
                _ => None,
            })
            .expect("a chosen TEID");
        (r.up_f_seid.unwrap().seid, teid)
    }

    /// Deletes a session; returns (cause, uplink bytes, downlink bytes) of its usage report.
    pub fn delete(&mut self, seid: u64) -> (Cause, Option<u64>, Option<u64>) {
        let seq = self.next_seq();
        let bytes = self.ask(Message::session(
            seid,
            seq,
            Body::SessionDeletionRequest(outpost_pfcp::SessionDeletionRequest {}),
        ));
        let Body::SessionDeletionResponse(r) = Message::parse(&bytes).unwrap().body else {
            panic!("not a deletion response")
        };
        let volume = r.usage_report.first().and_then(|u| u.volume_measurement);
        (
            r.cause,
            volume.as_ref().and_then(|v| v.uplink_volume),
            volume.as_ref().and_then(|v| v.downlink_volume),
        )
    }
}

/// An uplink G-PDU of session `teid` from UE `i` carrying `tag` (8 bytes) in a `len`-octet
/// inner packet.
pub fn uplink(teid: u32, i: u32, tag: u64, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len - 28];
    payload[..8].copy_from_slice(&tag.to_be_bytes());
    let inner = common::udp_packet(ue(i), common::SERVER, 40000, 53, &payload);
    common::gpdu(common::GNB, teid, Some(9), &inner)
}

/// A downlink packet to UE `i` carrying `tag`, `len` octets.
pub fn downlink(i: u32, tag: u64, len: usize) -> Vec<u8> {
    let mut payload = vec![0u8; len - 28];
    payload[..8].copy_from_slice(&tag.to_be_bytes());
    common::udp_packet(common::SERVER, ue(i), 53, 40000, &payload)
}

/// The tag of a packet the UPF forwarded: the first 8 payload bytes after the last UDP header.
pub fn tag_of(packet: &[u8], len: usize) -> u64 {
    let start = packet.len() - (len - 28);
    u64::from_be_bytes(packet[start..start + 8].try_into().unwrap())
}
