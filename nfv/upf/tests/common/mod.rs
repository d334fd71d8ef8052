//! Shared test fixtures: an SMF talking to a UPF over in-memory tables, and packet builders.
#![allow(dead_code)]

use core::net::Ipv4Addr;

use outpost_pfcp::{
    ApplyAction, AssociationSetupRequest, Bitrate, Body, CreateFar, CreatePdr, CreateQer,
    CreateUrr, FSeid, FTeid, ForwardingParameters, GateStatus, HeartbeatRequest, Interface,
    MeasurementMethod, Message, NodeId, OuterHeaderCreation, OuterHeaderRemoval, Pdi, Qfi,
    ReportingTriggers, SdfFilter, SessionEstablishmentRequest, UeIpAddress, Volume,
};
use outpost_upf::{BatchOut, Config, MemoryIo, MemoryTables, Upf};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

pub const SMF: &str = "10.0.0.1:8805";
pub const SMF_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub const N3_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const GNB: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 5);
pub const GNB2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 6);
pub const GNB_TEID: u32 = 0x1000;
pub const UE: Ipv4Addr = Ipv4Addr::new(10, 45, 0, 2);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const CP_SEID: u64 = 0x1122_3344_5566_7788;
pub const T0: u64 = 1_700_000_000_000;

pub fn config() -> Config {
    Config {
        n3_address: N3_ADDR,
        node_id: NODE_ADDR,
        heartbeat_interval_ms: 5_000,
    }
}

/// A UPF, its tables and I/O, and the SMF side's sequence numbers.
pub struct Harness {
    pub upf: Upf,
    pub tables: MemoryTables,
    pub io: MemoryIo,
    pub seq: u32,
}

impl Harness {
    pub fn new() -> Self {
        Harness {
            upf: Upf::new(config()),
            tables: MemoryTables::new(),
            io: MemoryIo::new(T0),
            seq: 0,
        }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends raw bytes from the SMF; the replies.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        self.upf.control(&mut self.tables, &mut self.io, SMF, bytes)
    }

    /// Sends a message and returns the single reply's bytes.
    pub fn ask(&mut self, m: &Message<'_>) -> Vec<u8> {
        let replies = self.send_raw(&m.to_vec().unwrap());
        assert_eq!(replies.len(), 1, "one reply expected to {m:?}");
        assert_eq!(replies[0].0, SMF);
        replies.into_iter().next().unwrap().1
    }

    pub fn associate(&mut self) -> Vec<u8> {
        let seq = self.next_seq();
        self.ask(&Message::node(
            seq,
            Body::AssociationSetupRequest(AssociationSetupRequest {
                node_id: NodeId::Ipv4(SMF_ADDR),
                recovery_time_stamp: 0xe5a1_0000,
                up_function_features: None,
                cp_function_features: None,
            }),
        ))
    }

    pub fn heartbeat(&mut self) -> Vec<u8> {
        let seq = self.next_seq();
        self.ask(&Message::node(
            seq,
            Body::HeartbeatRequest(HeartbeatRequest {
                recovery_time_stamp: 0xe5a1_0000,
            }),
        ))
    }

    /// Establishes `req`; returns (UP SEID, uplink TEID of PDR 1) and checks acceptance.
    pub fn establish(&mut self, req: SessionEstablishmentRequest<'_>) -> (u64, u32) {
        let seq = self.next_seq();
        let bytes = self.ask(&Message::session(
            0,
            seq,
            Body::SessionEstablishmentRequest(req),
        ));
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.seid, Some(CP_SEID));
        let Body::SessionEstablishmentResponse(r) = m.body else {
            panic!("{m:?}")
        };
        assert_eq!(r.cause, outpost_pfcp::Cause::REQUEST_ACCEPTED, "{r:?}");
        let seid = r.up_f_seid.unwrap().seid;
        let teid = r
            .created_pdr
            .iter()
            .find(|c| c.pdr_id == 1)
            .and_then(|c| match c.local_f_teid {
                Some(FTeid::Assigned { teid, .. }) => Some(teid),
                _ => None,
            })
            .unwrap_or(0);
        (seid, teid)
    }

    /// A session message to `seid`; the reply's bytes.
    pub fn session(&mut self, seid: u64, body: Body<'_>) -> Vec<u8> {
        let seq = self.next_seq();
        self.ask(&Message::session(seid, seq, body))
    }

    /// Runs one batch of (port, packet).
    pub fn batch(&mut self, packets: &[(u16, Vec<u8>)]) -> BatchOut {
        let ingress: Vec<u16> = packets.iter().map(|p| p.0).collect();
        let lengths: Vec<u32> = packets.iter().map(|p| p.1.len() as u32).collect();
        let data: Vec<u8> = packets.iter().flat_map(|p| p.1.iter().copied()).collect();
        let mut out = BatchOut::new();
        self.upf.process(
            &mut self.tables,
            &mut self.io,
            &ingress,
            &lengths,
            &data,
            &mut out,
        );
        assert_eq!(out.verdicts.len(), packets.len());
        assert_eq!(out.lengths.len(), packets.len());
        assert_eq!(
            out.lengths.iter().map(|l| *l as usize).sum::<usize>(),
            out.data.len()
        );
        out
    }

    /// The drop counter for `reason` (packets).
    pub fn drops(&self, reason: outpost_upf::Reason) -> u64 {
        self.tables
            .counter(outpost_upf::TableId::Usage, &outpost_upf::drop_key(reason))
            .map_or(0, |c| c.0)
    }
}

pub fn uplink_pdr() -> CreatePdr<'static> {
    CreatePdr {
        pdr_id: 1,
        precedence: 100,
        pdi: Pdi {
            source_interface: Interface::ACCESS,
            local_f_teid: Some(FTeid::Choose {
                ipv4: true,
                ipv6: false,
                choose_id: Some(1),
            }),
            network_instance: Some(b"\x08internet"),
            ue_ip_address: Some(UeIpAddress {
                ipv4: Some(UE),
                ..Default::default()
            }),
            sdf_filter: Vec::new(),
            application_id: None,
            qfi: vec![Qfi(9)],
        },
        outer_header_removal: Some(OuterHeaderRemoval {
            description: OuterHeaderRemoval::GTPU_UDP_IPV4,
            gtpu_extension_header_deletion: None,
        }),
        far_id: Some(1),
        urr_id: vec![1],
        qer_id: vec![1],
    }
}

pub fn downlink_pdr() -> CreatePdr<'static> {
    CreatePdr {
        pdr_id: 2,
        precedence: 100,
        pdi: Pdi {
            source_interface: Interface::CORE,
            local_f_teid: None,
            network_instance: None,
            ue_ip_address: Some(UeIpAddress {
                ipv4: Some(UE),
                destination: true,
                ..Default::default()
            }),
            sdf_filter: vec![SdfFilter {
                flow_description: Some(b"permit out ip from any to assigned"),
                ..Default::default()
            }],
            application_id: None,
            qfi: Vec::new(),
        },
        outer_header_removal: None,
        far_id: Some(2),
        urr_id: vec![1],
        qer_id: vec![1],
    }
}

pub fn uplink_far() -> CreateFar<'static> {
    CreateFar {
        far_id: 1,
        apply_action: ApplyAction::FORW,
        forwarding_parameters: Some(ForwardingParameters {
            destination_interface: Interface::CORE,
            network_instance: None,
            outer_header_creation: None,
            transport_level_marking: None,
        }),
        bar_id: None,
    }
}

pub fn downlink_far(gnb: Ipv4Addr, teid: u32) -> CreateFar<'static> {
    CreateFar {
        far_id: 2,
        apply_action: ApplyAction::FORW,
        forwarding_parameters: Some(ForwardingParameters {
            destination_interface: Interface::ACCESS,
            network_instance: None,
            outer_header_creation: Some(OuterHeaderCreation::gtpu_ipv4(teid, gnb)),
            transport_level_marking: None,
        }),
        bar_id: None,
    }
}

pub fn qer(ul_kbps: u64, dl_kbps: u64) -> CreateQer {
    CreateQer {
        qer_id: 1,
        qer_correlation_id: None,
        gate_status: GateStatus::BOTH_OPEN,
        mbr: Some(Bitrate {
            uplink: ul_kbps,
            downlink: dl_kbps,
        }),
        gbr: None,
        qfi: Some(Qfi(9)),
    }
}

pub fn urr(threshold: Option<u64>) -> CreateUrr {
    CreateUrr {
        urr_id: 1,
        measurement_method: MeasurementMethod::VOLUM,
        reporting_triggers: ReportingTriggers::VOLTH,
        measurement_period: None,
        volume_threshold: threshold.map(|t| Volume {
            total: Some(t),
            ..Default::default()
        }),
        volume_quota: None,
        time_threshold: None,
        time_quota: None,
        quota_holding_time: None,
    }
}

/// The usual session: PDR 1 uplink (CHOOSE), PDR 2 downlink to the UE, QER 1 (QFI 9, MBR
/// 100/200 Mbps), URR 1 (total threshold 10 MB).
pub fn session_request() -> SessionEstablishmentRequest<'static> {
    SessionEstablishmentRequest {
        node_id: NodeId::Ipv4(SMF_ADDR),
        cp_f_seid: FSeid {
            seid: CP_SEID,
            ipv4: Some(SMF_ADDR),
            ipv6: None,
        },
        create_pdr: vec![uplink_pdr(), downlink_pdr()],
        create_far: vec![uplink_far(), downlink_far(GNB, GNB_TEID)],
        create_urr: vec![urr(Some(10_000_000))],
        create_qer: vec![qer(100_000, 200_000)],
        create_bar: None,
        pdn_type: Some(1),
        user_plane_inactivity_timer: None,
        apn_dnn: None,
    }
}

/// An IPv4/UDP packet with valid checksums.
pub fn udp_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp = UdpRepr {
        src_port: sport,
        dst_port: dport,
    };
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 8 + payload.len(),
        hop_limit: 64,
    };
    let mut buf = vec![0u8; 20 + 8 + payload.len()];
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]), &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(&mut buf[20..]),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &caps,
    );
    buf
}

/// A UE's packet of `len` octets in total (UDP to the server).
pub fn ue_packet(len: usize) -> Vec<u8> {
    udp_packet(UE, SERVER, 40000, 53, &vec![0xab; len - 28])
}

/// A server's packet to the UE of `len` octets in total.
pub fn server_packet(len: usize) -> Vec<u8> {
    udp_packet(SERVER, UE, 53, 40000, &vec![0xcd; len - 28])
}

/// A G-PDU from `gnb` to the UPF's N3 address carrying `inner`, with an uplink PDU Session
/// Container when `qfi` is given.
pub fn gpdu(gnb: Ipv4Addr, teid: u32, qfi: Option<u8>, inner: &[u8]) -> Vec<u8> {
    let info = qfi.map(|qfi| outpost_gtpu::PduSessionInfo::Uplink { qfi });
    let hlen = outpost_gtpu::gpdu_header_len(info.as_ref());
    let mut gtp = vec![0u8; hlen + inner.len()];
    outpost_gtpu::emit_gpdu_header(&mut gtp, teid, info.as_ref(), inner.len()).unwrap();
    gtp[hlen..].copy_from_slice(inner);
    udp_packet(gnb, N3_ADDR, 2152, 2152, &gtp)
}

/// Checks the IPv4 header checksum and returns (src, dst, UDP src port, UDP dst port, UDP
/// payload) of an outer packet the UPF built.
pub fn outer(packet: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16, Vec<u8>) {
    let ip = Ipv4Packet::new_checked(packet).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    assert_eq!(ip.hop_limit(), 64);
    assert_eq!(usize::from(ip.total_len()), packet.len());
    assert_eq!(ip.next_header(), IpProtocol::Udp);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(usize::from(udp.len()), ip.payload().len());
    (
        ip.src_addr(),
        ip.dst_addr(),
        udp.src_port(),
        udp.dst_port(),
        udp.payload().to_vec(),
    )
}
