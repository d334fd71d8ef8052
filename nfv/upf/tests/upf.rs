//! The UPF end to end over in-memory tables: an SMF's PFCP messages, gNB and data network
//! packets, and what comes out.

mod common;

use core::net::{IpAddr, Ipv4Addr};

use common::*;
use outpost_gtpu::{MessageType, PduSessionInfo};
use outpost_pfcp::{
    ApplyAction, Body, Cause, CreateFar, FSeid, FTeid, GateStatus, Interface, Message, NodeId,
    QueryUrr, ReportType, SdfFilter, SessionDeletionRequest, SessionModificationRequest,
    SessionReportResponse, UpFunctionFeatures, UpdateFar, UpdateForwardingParameters, UpdateQer,
    UsageReportTrigger, message_type,
};
use outpost_upf::{
    BatchOut, Level, MemoryIo, MemoryTables, N3, N6, Reason, TableId, UP_FUNCTION_FEATURES, Upf,
    Verdict,
};

fn empty_modification() -> SessionModificationRequest<'static> {
    SessionModificationRequest {
        cp_f_seid: None,
        remove_pdr: vec![],
        remove_far: vec![],
        remove_urr: vec![],
        remove_qer: vec![],
        remove_bar: None,
        create_pdr: vec![],
        create_far: vec![],
        create_urr: vec![],
        create_qer: vec![],
        create_bar: None,
        update_pdr: vec![],
        update_far: vec![],
        update_urr: vec![],
        update_qer: vec![],
        update_bar: None,
        pfcpsmreq_flags: None,
        query_urr: vec![],
        user_plane_inactivity_timer: None,
    }
}

/// An associated UPF with the usual session: (harness, UP SEID, uplink TEID).
fn with_session() -> (Harness, u64, u32) {
    let mut h = Harness::new();
    h.associate();
    let (seid, teid) = h.establish(session_request());
    (h, seid, teid)
}

#[test]
fn association_setup_is_accepted_with_recovery_time_stamp_and_honest_features() {
    let mut h = Harness::new();
    let bytes = h.associate();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.sequence_number, 1);
    let Body::AssociationSetupResponse(r) = m.body else {
        panic!("{m:?}")
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(r.node_id, NodeId::Ipv4(NODE_ADDR));
    let expected = ((T0 / 1000) + outpost_pfcp::NTP_UNIX_OFFSET) as u32;
    assert_eq!(r.recovery_time_stamp, expected);
    let features = r.up_function_features.unwrap();
    assert_eq!(features, UP_FUNCTION_FEATURES);
    for bit in [
        UpFunctionFeatures::FTUP,
        UpFunctionFeatures::EMPU,
        UpFunctionFeatures::MNOP,
    ] {
        assert!(features.contains(bit));
    }
    for bit in [
        UpFunctionFeatures::BUCP,
        UpFunctionFeatures::DDND,
        UpFunctionFeatures::UEIP,
        UpFunctionFeatures::PDIU,
    ] {
        assert!(!features.contains(bit));
    }
}

#[test]
fn heartbeat_request_is_answered_with_the_recovery_time_stamp_set_once() {
    let mut h = Harness::new();
    let first = h.heartbeat();
    h.io.now_ms += 60_000;
    let second = h.heartbeat();
    let stamp = |bytes: &[u8]| match Message::parse(bytes).unwrap().body {
        Body::HeartbeatResponse(r) => r.recovery_time_stamp,
        other => panic!("{other:?}"),
    };
    assert_eq!(stamp(&first), stamp(&second));
    assert_eq!(Message::parse(&second).unwrap().sequence_number, 2);
}

#[test]
fn heartbeats_are_sent_from_tick_and_unanswered_ones_are_counted() {
    let mut h = Harness::new();
    h.associate();
    let tick = |h: &mut Harness, now: u64| {
        h.upf.tick(&mut h.tables, &mut h.io, now);
    };
    tick(&mut h, 1_000); // starts the period
    assert!(h.io.control.is_empty());
    tick(&mut h, 3_000);
    assert!(h.io.control.is_empty());
    tick(&mut h, 6_000);
    assert_eq!(h.io.control.len(), 1);
    let (peer, bytes) = h.io.control[0].clone();
    assert_eq!(peer, SMF);
    let m = Message::parse(&bytes).unwrap();
    assert!(matches!(m.body, Body::HeartbeatRequest(_)));
    // Unanswered three times: a warning.
    for now in [11_000, 16_000, 21_000] {
        tick(&mut h, now);
    }
    assert_eq!(h.io.control.len(), 4);
    assert!(
        h.io.logs
            .iter()
            .any(|(l, m)| *l == Level::Warn && m.contains("has not answered 3 heartbeats"))
    );
    // An answer resets the count.
    let last = Message::parse(&h.io.control[3].1).unwrap();
    let answer = Message::node(
        last.sequence_number,
        Body::HeartbeatResponse(outpost_pfcp::HeartbeatResponse {
            recovery_time_stamp: 0xe5a1_0000,
        }),
    );
    assert!(h.send_raw(&answer.to_vec().unwrap()).is_empty());
    h.io.logs.clear();
    tick(&mut h, 26_000);
    tick(&mut h, 31_000);
    assert!(!h.io.logs.iter().any(|(l, _)| *l == Level::Warn));
}

#[test]
fn establishment_with_choose_allocates_one_teid_per_choose_id() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    let mut second = uplink_pdr();
    second.pdr_id = 3;
    second.precedence = 200;
    req.create_pdr.push(second);
    let seq = h.next_seq();
    let bytes = h.ask(&Message::session(
        0,
        seq,
        Body::SessionEstablishmentRequest(req),
    ));
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.seid, Some(CP_SEID));
    assert_eq!(m.sequence_number, seq);
    let Body::SessionEstablishmentResponse(r) = m.body else {
        panic!("{m:?}")
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(r.node_id, NodeId::Ipv4(NODE_ADDR));
    let f_seid = r.up_f_seid.unwrap();
    assert_eq!(f_seid.ipv4, Some(NODE_ADDR));
    assert_ne!(f_seid.seid, 0);
    assert_eq!(r.created_pdr.len(), 2);
    let teids: Vec<_> = r
        .created_pdr
        .iter()
        .map(|c| match c.local_f_teid {
            Some(FTeid::Assigned { teid, ipv4, .. }) => {
                assert_eq!(ipv4, Some(N3_ADDR));
                teid
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(teids[0], teids[1]);
    assert_ne!(teids[0], 0);
    // A second session gets another TEID and SEID.
    let mut req = session_request();
    req.cp_f_seid.seid = CP_SEID + 1;
    req.create_pdr[1].pdi.ue_ip_address.as_mut().unwrap().ipv4 = Some(Ipv4Addr::new(10, 45, 0, 3));
    req.create_pdr[0].pdi.ue_ip_address.as_mut().unwrap().ipv4 = Some(Ipv4Addr::new(10, 45, 0, 3));
    let seq = h.next_seq();
    let bytes = h.ask(&Message::session(
        0,
        seq,
        Body::SessionEstablishmentRequest(req),
    ));
    let Body::SessionEstablishmentResponse(r2) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r2.cause, Cause::REQUEST_ACCEPTED);
    assert_ne!(r2.up_f_seid.unwrap().seid, f_seid.seid);
    assert!(!matches!(
        r2.created_pdr[0].local_f_teid,
        Some(FTeid::Assigned { teid, .. }) if teid == teids[0]
    ));
}

#[test]
fn uplink_gpdu_is_decapsulated_to_n6() {
    let (mut h, _, teid) = with_session();
    let inner = ue_packet(100);
    let out = h.batch(&[(N3, gpdu(GNB, teid, Some(9), &inner))]);
    assert_eq!(out.verdicts, [Verdict::Forward(N6)]);
    assert_eq!(out.packet(0), inner.as_slice());
}

#[test]
fn downlink_packet_is_encapsulated_with_the_qfi_towards_the_gnb() {
    let (mut h, _, _) = with_session();
    let inner = server_packet(200);
    let out = h.batch(&[(N6, inner.clone())]);
    assert_eq!(out.verdicts, [Verdict::Forward(N3)]);
    let (src, dst, sport, dport, gtp) = outer(out.packet(0));
    assert_eq!((src, dst, sport, dport), (N3_ADDR, GNB, 2152, 2152));
    let p = outpost_gtpu::Packet::new_checked(&gtp[..]).unwrap();
    assert_eq!(p.message_type(), MessageType::GPdu);
    assert_eq!(p.teid(), GNB_TEID);
    assert_eq!(
        p.pdu_session_info().unwrap().unwrap(),
        PduSessionInfo::Downlink {
            qfi: 9,
            rqi: false,
            ppi: None
        }
    );
    assert_eq!(p.payload(), inner.as_slice());
}

#[test]
fn unknown_teid_is_answered_with_an_error_indication_to_the_sender() {
    let (mut h, _, teid) = with_session();
    let mut packet = gpdu(GNB, teid + 77, None, &ue_packet(60));
    // From an ephemeral source port: the UDP Port extension header names it.
    packet[20..22].copy_from_slice(&40_123u16.to_be_bytes());
    packet[26..28].copy_from_slice(&[0, 0]);
    let out = h.batch(&[(N3, packet)]);
    assert_eq!(out.verdicts, [Verdict::Forward(N3)]);
    let (src, dst, sport, dport, gtp) = outer(out.packet(0));
    assert_eq!((src, dst, sport, dport), (N3_ADDR, GNB, 2152, 2152));
    let (repr, message) = outpost_gtpu::Message::parse_packet(&gtp).unwrap();
    assert_eq!(repr.teid, 0);
    assert_eq!(
        repr.extension_headers.as_slice(),
        &[outpost_gtpu::ExtensionHeaderRepr::UdpPort(40_123)]
    );
    assert_eq!(
        message,
        outpost_gtpu::Message::ErrorIndication {
            teid_data_i: teid + 77,
            peer_address: IpAddr::V4(N3_ADDR),
        }
    );
    assert_eq!(h.drops(Reason::UnknownTeid), 1);
}

#[test]
fn echo_request_is_answered_on_n3_with_swapped_addresses_and_ports() {
    let mut h = Harness::new();
    let echo = [
        0x32, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x00,
    ];
    let out = h.batch(&[(N3, udp_packet(GNB, N3_ADDR, 33_000, 2152, &echo))]);
    assert_eq!(out.verdicts, [Verdict::Forward(N3)]);
    let (src, dst, sport, dport, gtp) = outer(out.packet(0));
    assert_eq!((src, dst, sport, dport), (N3_ADDR, GNB, 2152, 33_000));
    let (repr, message) = outpost_gtpu::Message::parse_packet(&gtp).unwrap();
    assert_eq!(repr.sequence_number, Some(0x1234));
    assert_eq!(message, outpost_gtpu::Message::EchoResponse { recovery: 0 });
}

#[test]
fn non_gtpu_and_foreign_packets_on_n3_are_dropped_and_counted() {
    let mut h = Harness::new();
    let out = h.batch(&[
        (N3, udp_packet(GNB, N3_ADDR, 1000, 53, b"dns?")),
        (
            N3,
            udp_packet(GNB, Ipv4Addr::new(192, 0, 2, 9), 2152, 2152, b"x"),
        ),
        (N3, vec![0x60, 0, 0, 0]),
        (7, server_packet(40)),
    ]);
    assert!(out.verdicts.iter().all(|v| *v == Verdict::Drop));
    assert!(out.data.is_empty());
    assert_eq!(h.drops(Reason::NotGtpu), 1);
    assert_eq!(h.drops(Reason::WrongAddress), 1);
    assert_eq!(h.drops(Reason::NotIpv4), 1);
    assert_eq!(h.drops(Reason::UnknownPort), 1);
}

#[test]
fn path_switch_sends_an_end_marker_to_the_old_gnb_before_switching() {
    let (mut h, seid, _) = with_session();
    let mut m = empty_modification();
    m.update_far.push(UpdateFar {
        far_id: 2,
        apply_action: None,
        update_forwarding_parameters: Some(UpdateForwardingParameters {
            destination_interface: None,
            network_instance: None,
            outer_header_creation: Some(outpost_pfcp::OuterHeaderCreation::gtpu_ipv4(0x2000, GNB2)),
            transport_level_marking: None,
            pfcpsmreq_flags: Some(0x02),
        }),
        bar_id: None,
    });
    let bytes = h.session(seid, Body::SessionModificationRequest(m));
    let r = Message::parse(&bytes).unwrap();
    assert_eq!(r.seid, Some(CP_SEID));
    let Body::SessionModificationResponse(r) = r.body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(h.io.transmitted.len(), 1);
    let (port, marker) = &h.io.transmitted[0];
    assert_eq!(*port, N3);
    let (src, dst, sport, dport, gtp) = outer(marker);
    assert_eq!((src, dst, sport, dport), (N3_ADDR, GNB, 2152, 2152));
    let p = outpost_gtpu::Packet::new_checked(&gtp[..]).unwrap();
    assert_eq!(p.message_type(), MessageType::EndMarker);
    assert_eq!(p.teid(), GNB_TEID);
    // Downlink now goes to the new gNB.
    let out = h.batch(&[(N6, server_packet(80))]);
    let (_, dst, _, _, gtp) = outer(out.packet(0));
    assert_eq!(dst, GNB2);
    assert_eq!(
        outpost_gtpu::Packet::new_checked(&gtp[..]).unwrap().teid(),
        0x2000
    );
}

#[test]
fn closed_gate_drops_packets() {
    let (mut h, seid, teid) = with_session();
    let mut m = empty_modification();
    m.update_qer.push(UpdateQer {
        qer_id: 1,
        qer_correlation_id: None,
        gate_status: Some(GateStatus {
            uplink: GateStatus::CLOSED,
            downlink: GateStatus::OPEN,
        }),
        mbr: None,
        gbr: None,
        qfi: None,
    });
    h.session(seid, Body::SessionModificationRequest(m));
    let out = h.batch(&[
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(100))),
        (N6, server_packet(100)),
    ]);
    assert_eq!(out.verdicts, [Verdict::Drop, Verdict::Forward(N3)]);
    assert_eq!(h.drops(Reason::GateClosed), 1);
}

#[test]
fn mbr_policing_drops_the_excess_and_lets_traffic_through_after_a_refill() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    req.create_qer = vec![qer(1_000, 1_000)]; // 1 Mbit/s: 100 ms of burst = 12 500 octets
    let (_, _) = h.establish(req);
    let packets: Vec<_> = (0..20).map(|_| (N6, server_packet(1000))).collect();
    let out = h.batch(&packets);
    let passed = out
        .verdicts
        .iter()
        .filter(|v| **v == Verdict::Forward(N3))
        .count();
    assert_eq!(passed, 12);
    assert_eq!(h.drops(Reason::Mbr), 8);
    // The bucket lives in the table: the next batch, at the same time, passes nothing.
    let out = h.batch(&packets[..2]);
    assert_eq!(out.verdicts, [Verdict::Drop, Verdict::Drop]);
    // 40 ms later: 40 000 bits = 5 packets.
    h.io.now_ms += 40;
    let out = h.batch(&packets);
    let passed = out
        .verdicts
        .iter()
        .filter(|v| **v == Verdict::Forward(N3))
        .count();
    assert_eq!(passed, 5);
}

#[test]
fn reaching_the_volume_threshold_sends_a_session_report_request() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    req.create_urr = vec![urr(Some(5_000))];
    let (_, teid) = h.establish(req);
    // 2 000 octets uplink + 2 000 downlink: below.
    h.batch(&[
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(1000))),
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(1000))),
        (N6, server_packet(1000)),
        (N6, server_packet(1000)),
    ]);
    assert!(h.io.control.is_empty());
    // 1 500 more downlink: 5 500 ≥ 5 000.
    h.batch(&[(N6, server_packet(1500))]);
    assert_eq!(h.io.control.len(), 1);
    let (peer, bytes) = h.io.control.remove(0);
    assert_eq!(peer, SMF);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.seid, Some(CP_SEID));
    let Body::SessionReportRequest(r) = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(r.report_type, ReportType::USAR);
    assert_eq!(r.usage_report.len(), 1);
    let u = &r.usage_report[0];
    assert_eq!(u.urr_id, 1);
    assert_eq!(u.ur_seqn, 0);
    assert_eq!(u.usage_report_trigger, UsageReportTrigger::VOLTH);
    let v = u.volume_measurement.unwrap();
    assert_eq!(v.total_volume, Some(5_500));
    assert_eq!(v.uplink_volume, Some(2_000));
    assert_eq!(v.downlink_volume, Some(3_500));
    assert_eq!(v.total_packets, Some(5));
    // The SMF answers; nothing goes back.
    let answer = Message::session(
        0x99,
        m.sequence_number,
        Body::SessionReportResponse(SessionReportResponse {
            cause: Cause::REQUEST_ACCEPTED,
            offending_ie: None,
            update_bar: None,
            pfcpsrrsp_flags: None,
        }),
    );
    assert!(h.send_raw(&answer.to_vec().unwrap()).is_empty());
    // Rearmed: the measurement restarted, the next report comes after another 5 000.
    h.batch(&[(N6, server_packet(1500)), (N6, server_packet(1500))]);
    assert!(h.io.control.is_empty());
    h.batch(&[(N6, server_packet(1500)), (N6, server_packet(1500))]);
    assert_eq!(h.io.control.len(), 1);
    let m = Message::parse(&h.io.control[0].1).unwrap();
    let Body::SessionReportRequest(r) = &m.body else {
        panic!()
    };
    assert_eq!(r.usage_report[0].ur_seqn, 1);
    assert_eq!(
        r.usage_report[0].volume_measurement.unwrap().total_volume,
        Some(6_000)
    );
}

#[test]
fn deletion_reports_usage_and_removes_every_table_entry_of_the_session() {
    let (mut h, seid, teid) = with_session();
    h.batch(&[
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(300))),
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(200))),
        (N6, server_packet(1000)),
    ]);
    // The session and its CP F-SEID index entry.
    assert_eq!(h.tables.len(TableId::Sessions), 2);
    let bytes = h.session(
        seid,
        Body::SessionDeletionRequest(SessionDeletionRequest {}),
    );
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.seid, Some(CP_SEID));
    let Body::SessionDeletionResponse(r) = m.body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(r.usage_report.len(), 1);
    let u = &r.usage_report[0];
    assert_eq!(u.urr_id, 1);
    assert_eq!(u.usage_report_trigger, UsageReportTrigger::TERMR);
    let v = u.volume_measurement.unwrap();
    assert_eq!(v.uplink_volume, Some(500));
    assert_eq!(v.downlink_volume, Some(1000));
    assert_eq!(v.total_volume, Some(1500));
    assert_eq!(
        (v.uplink_packets, v.downlink_packets, v.total_packets),
        (Some(2), Some(1), Some(3))
    );
    for t in [
        TableId::Sessions,
        TableId::Uplink,
        TableId::Downlink,
        TableId::Qer,
    ] {
        assert_eq!(h.tables.len(t), 0, "{t:?}");
    }
    // Only drop counters are left in upf-usage, and the node record in upf-state.
    assert!(
        h.tables
            .all_keys(TableId::Usage)
            .iter()
            .all(|k| k.starts_with(b"drop/"))
    );
    assert_eq!(h.tables.all_keys(TableId::State), [b"node".to_vec()]);
    // Its packets are now unknown.
    let out = h.batch(&[(N6, server_packet(100))]);
    assert_eq!(out.verdicts, [Verdict::Drop]);
}

#[test]
fn malformed_request_is_answered_with_the_cause_and_offending_ie() {
    let mut h = Harness::new();
    h.associate();
    // A Session Establishment Request without Create FAR.
    let mut req = session_request();
    req.create_far.clear();
    let bytes = Message::session(0, 9, Body::SessionEstablishmentRequest(req))
        .to_vec()
        .unwrap();
    let replies = h.send_raw(&bytes);
    assert_eq!(replies.len(), 1);
    let m = Message::parse(&replies[0].1).unwrap();
    assert_eq!(m.sequence_number, 9);
    assert_eq!(m.seid, Some(CP_SEID));
    let Body::SessionEstablishmentResponse(r) = m.body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::MANDATORY_IE_MISSING);
    assert_eq!(r.offending_ie, Some(outpost_pfcp::ie_type::CREATE_FAR));
    // A length field past the datagram: Invalid Length.
    let mut hb = Message::node(
        3,
        Body::AssociationSetupRequest(outpost_pfcp::AssociationSetupRequest {
            node_id: NodeId::Ipv4(SMF_ADDR),
            recovery_time_stamp: 1,
            up_function_features: None,
            cp_function_features: None,
        }),
    )
    .to_vec()
    .unwrap();
    hb[3] += 4;
    let replies = h.send_raw(&hb);
    let Body::AssociationSetupResponse(r) = Message::parse(&replies[0].1).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::INVALID_LENGTH);
    // Unknown message types and runts are ignored.
    assert!(
        h.send_raw(&[0x20, 0x03, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00])
            .is_empty()
    );
    assert!(h.send_raw(&[0x20]).is_empty());
}

#[test]
fn wrong_pfcp_version_gets_version_not_supported() {
    let mut h = Harness::new();
    let replies = h.send_raw(&[0x40, 0x01, 0x00, 0x04, 0x00, 0x00, 0x07, 0x00]);
    assert_eq!(replies.len(), 1);
    let r = &replies[0].1;
    assert_eq!(r[0] >> 5, 1);
    assert_eq!(r[1], message_type::VERSION_NOT_SUPPORTED_RESPONSE);
    assert_eq!(&r[4..7], &[0, 0, 7]);
}

#[test]
fn unknown_seid_gets_session_context_not_found() {
    let (mut h, seid, _) = with_session();
    for body in [
        Body::SessionModificationRequest(empty_modification()),
        Body::SessionDeletionRequest(SessionDeletionRequest {}),
    ] {
        let bytes = h.session(seid + 1000, body);
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.seid, Some(0));
        let cause = match m.body {
            Body::SessionModificationResponse(r) => r.cause,
            Body::SessionDeletionResponse(r) => r.cause,
            other => panic!("{other:?}"),
        };
        assert_eq!(cause, Cause::SESSION_CONTEXT_NOT_FOUND);
    }
}

#[test]
fn establishment_without_association_gets_no_established_association() {
    let mut h = Harness::new();
    let seq = h.next_seq();
    let bytes = h.ask(&Message::session(
        0,
        seq,
        Body::SessionEstablishmentRequest(session_request()),
    ));
    let Body::SessionEstablishmentResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::NO_ESTABLISHED_PFCP_ASSOCIATION);
    assert!(r.up_f_seid.is_none());
    assert_eq!(h.tables.len(TableId::Sessions), 0);
}

#[test]
fn state_survives_a_new_upf_value() {
    let (mut h, seid, teid) = with_session();
    h.batch(&[(N3, gpdu(GNB, teid, Some(9), &ue_packet(400)))]);
    // A hot swap: a new Upf (new instance, maybe a new version) over the same tables.
    h.upf = Upf::from_lookup(|k| match k {
        "n3-address" => Some(N3_ADDR.to_string()),
        "node-id" => Some(NODE_ADDR.to_string()),
        _ => None,
    });
    let out = h.batch(&[(N3, gpdu(GNB, teid, Some(9), &ue_packet(600)))]);
    assert_eq!(out.verdicts, [Verdict::Forward(N6)]);
    let bytes = h.heartbeat();
    let Body::HeartbeatResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(
        r.recovery_time_stamp,
        ((T0 / 1000) + outpost_pfcp::NTP_UNIX_OFFSET) as u32
    );
    let bytes = h.session(
        seid,
        Body::SessionDeletionRequest(SessionDeletionRequest {}),
    );
    let Body::SessionDeletionResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(
        r.usage_report[0].volume_measurement.unwrap().uplink_volume,
        Some(1000)
    );
}

#[test]
fn sdf_filters_and_precedence_pick_the_pdr_on_a_shared_teid() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    // PDR 3 on the same TEID, higher priority, only for UDP to the DNS server: dropped.
    let mut dns = uplink_pdr();
    dns.pdr_id = 3;
    dns.precedence = 10;
    dns.pdi.sdf_filter = vec![SdfFilter {
        flow_description: Some(b"permit out 17 from 198.51.100.0/24 53 to assigned"),
        ..Default::default()
    }];
    dns.far_id = Some(3);
    req.create_pdr.push(dns);
    req.create_far.push(CreateFar {
        far_id: 3,
        apply_action: ApplyAction::DROP,
        forwarding_parameters: None,
        bar_id: None,
    });
    let (_, teid) = h.establish(req);
    let web = udp_packet(UE, Ipv4Addr::new(203, 0, 113, 1), 40000, 443, &[1; 50]);
    let out = h.batch(&[
        (N3, gpdu(GNB, teid, Some(9), &ue_packet(100))),
        (N3, gpdu(GNB, teid, Some(9), &web)),
        // Wrong QFI for every PDR.
        (N3, gpdu(GNB, teid, Some(5), &web)),
        // Spoofed UE source address.
        (
            N3,
            gpdu(
                GNB,
                teid,
                Some(9),
                &udp_packet(Ipv4Addr::new(10, 45, 9, 9), SERVER, 1, 2, &[0; 8]),
            ),
        ),
    ]);
    assert_eq!(
        out.verdicts,
        [
            Verdict::Drop,
            Verdict::Forward(N6),
            Verdict::Drop,
            Verdict::Drop
        ]
    );
    assert_eq!(h.drops(Reason::FarDrop), 1);
    assert_eq!(h.drops(Reason::NoPdr), 2);
}

#[test]
fn a_batch_reads_each_rule_table_once() {
    let (mut h, _, teid) = with_session();
    h.tables.reset_calls();
    let mut packets = Vec::new();
    for _ in 0..50 {
        packets.push((N3, gpdu(GNB, teid, Some(9), &ue_packet(100))));
        packets.push((N6, server_packet(100)));
    }
    let out = h.batch(&packets);
    assert!(out.verdicts.iter().all(|v| *v != Verdict::Drop));
    assert_eq!(h.tables.calls(TableId::Uplink), 1);
    assert_eq!(h.tables.calls(TableId::Downlink), 1);
    assert_eq!(h.tables.calls(TableId::Qer), 2); // one get-many, one put
    assert_eq!(h.tables.calls(TableId::Usage), 2); // URR 1 uplink and downlink
    assert_eq!(h.tables.calls(TableId::Sessions), 0);
    assert_eq!(h.tables.calls(TableId::State), 0);
}

#[test]
fn invalid_configuration_drops_every_packet_without_panicking() {
    let upf = Upf::from_lookup(|k| (k == "n3-address").then(|| "not-an-address".to_string()));
    assert!(upf.config_error().unwrap().contains("n3-address"));
    let mut tables = MemoryTables::new();
    let mut io = MemoryIo::new(T0);
    let mut out = BatchOut::new();
    let p = server_packet(60);
    upf.process(
        &mut tables,
        &mut io,
        &[1, 0],
        &[60, 60],
        &[p.clone(), p].concat(),
        &mut out,
    );
    assert_eq!(out.verdicts, [Verdict::Drop, Verdict::Drop]);
    assert_eq!(
        tables.counter(TableId::Usage, &outpost_upf::drop_key(Reason::BadConfig)),
        Some((2, 120))
    );
    assert!(
        upf.control(&mut tables, &mut io, SMF, &[0x20, 1, 0, 4, 0, 0, 1, 0])
            .is_empty()
    );
    assert!(Upf::from_lookup(|_| None).config_error().is_some());
}

#[test]
fn association_release_deletes_the_sessions_of_the_smf() {
    let (mut h, _, _) = with_session();
    let seq = h.next_seq();
    let bytes = h.ask(&Message::node(
        seq,
        Body::AssociationReleaseRequest(outpost_pfcp::AssociationReleaseRequest {
            node_id: NodeId::Ipv4(SMF_ADDR),
        }),
    ));
    let Body::AssociationReleaseResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(h.tables.len(TableId::Sessions), 0);
    assert_eq!(h.tables.len(TableId::Uplink), 0);
    assert_eq!(h.tables.len(TableId::Downlink), 0);
    // And sessions need a new association.
    let seq = h.next_seq();
    let bytes = h.ask(&Message::session(
        0,
        seq,
        Body::SessionEstablishmentRequest(session_request()),
    ));
    let Body::SessionEstablishmentResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::NO_ESTABLISHED_PFCP_ASSOCIATION);
}

#[test]
fn query_urr_reports_in_the_modification_response_and_restarts_the_measurement() {
    let (mut h, seid, teid) = with_session();
    h.batch(&[(N3, gpdu(GNB, teid, Some(9), &ue_packet(700)))]);
    let mut m = empty_modification();
    m.query_urr.push(QueryUrr { urr_id: 1 });
    let bytes = h.session(seid, Body::SessionModificationRequest(m));
    let Body::SessionModificationResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.usage_report.len(), 1);
    assert_eq!(
        r.usage_report[0].usage_report_trigger,
        UsageReportTrigger::IMMER
    );
    assert_eq!(
        r.usage_report[0].volume_measurement.unwrap().uplink_volume,
        Some(700)
    );
    let bytes = h.session(
        seid,
        Body::SessionDeletionRequest(SessionDeletionRequest {}),
    );
    let Body::SessionDeletionResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.usage_report[0].ur_seqn, 1);
    assert_eq!(
        r.usage_report[0].volume_measurement.unwrap().total_volume,
        Some(0)
    );
}

#[test]
fn buffered_downlink_data_is_dropped_and_reported_once_per_far_update() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    req.create_far[1] = CreateFar {
        far_id: 2,
        apply_action: ApplyAction::BUFF | ApplyAction::NOCP,
        forwarding_parameters: None,
        bar_id: None,
    };
    let (seid, _) = h.establish(req);
    let out = h.batch(&[(N6, server_packet(100)), (N6, server_packet(100))]);
    assert_eq!(out.verdicts, [Verdict::Drop, Verdict::Drop]);
    assert_eq!(h.drops(Reason::Buffer), 2);
    h.batch(&[(N6, server_packet(100))]);
    assert_eq!(h.io.control.len(), 1);
    let m = Message::parse(&h.io.control[0].1).unwrap();
    let Body::SessionReportRequest(r) = m.body else {
        panic!()
    };
    assert_eq!(r.report_type, ReportType::DLDR);
    assert_eq!(r.downlink_data_report.unwrap().pdr_id, [2]);
    // The SMF pages the UE and updates the FAR to forward: traffic flows.
    let mut m = empty_modification();
    m.update_far.push(UpdateFar {
        far_id: 2,
        apply_action: Some(ApplyAction::FORW),
        update_forwarding_parameters: Some(UpdateForwardingParameters {
            destination_interface: Some(Interface::ACCESS),
            network_instance: None,
            outer_header_creation: Some(outpost_pfcp::OuterHeaderCreation::gtpu_ipv4(
                GNB_TEID, GNB,
            )),
            transport_level_marking: None,
            pfcpsmreq_flags: None,
        }),
        bar_id: None,
    });
    h.session(seid, Body::SessionModificationRequest(m));
    assert!(
        h.io.transmitted.is_empty(),
        "no End Marker without a previous path"
    );
    let out = h.batch(&[(N6, server_packet(100))]);
    assert_eq!(out.verdicts, [Verdict::Forward(N3)]);
}

#[test]
fn a_teid_held_by_another_session_is_refused() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    req.create_pdr[0].pdi.local_f_teid = Some(FTeid::Assigned {
        teid: 0x42,
        ipv4: Some(N3_ADDR),
        ipv6: None,
    });
    h.establish(req.clone());
    req.cp_f_seid = FSeid {
        seid: 5,
        ipv4: Some(SMF_ADDR),
        ipv6: None,
    };
    req.create_pdr[1].pdi.ue_ip_address.as_mut().unwrap().ipv4 = Some(Ipv4Addr::new(10, 45, 0, 9));
    let seq = h.next_seq();
    let bytes = h.ask(&Message::session(
        0,
        seq,
        Body::SessionEstablishmentRequest(req),
    ));
    let Body::SessionEstablishmentResponse(r) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::RULE_CREATION_MODIFICATION_FAILURE);
    assert_eq!(r.failed_rule_id, Some(outpost_pfcp::FailedRuleId::Pdr(1)));
    assert_eq!(h.tables.len(TableId::Sessions), 2);
    assert_eq!(h.tables.len(TableId::Downlink), 1);
}

#[test]
fn a_retransmitted_establishment_gets_the_same_session() {
    let mut h = Harness::new();
    h.associate();
    let request = Message::session(0, 40, Body::SessionEstablishmentRequest(session_request()))
        .to_vec()
        .unwrap();
    let first = h.send_raw(&request);
    let again = h.send_raw(&request);
    assert_eq!(first, again);
    let Body::SessionEstablishmentResponse(r) = Message::parse(&again[0].1).unwrap().body else {
        panic!()
    };
    assert_eq!(r.cause, Cause::REQUEST_ACCEPTED);
    assert_eq!(r.created_pdr.len(), 1);
    assert_eq!(h.tables.len(TableId::Uplink), 1);
    assert_eq!(h.tables.len(TableId::Sessions), 2);
}

/// An IPv4/TCP segment (20-octet header, no payload) from `sport` to `dport`.
fn tcp_packet(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut p = udp_packet(src, dst, 0, 0, &[0; 12]);
    p[9] = 6;
    p[10..12].copy_from_slice(&[0, 0]);
    let mut ip = smoltcp::wire::Ipv4Packet::new_unchecked(&mut p[..]);
    ip.fill_checksum();
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50; // data offset 5
    p
}

#[test]
fn downlink_sdf_filter_matches_tcp_ports_before_the_catch_all() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    let mut https = downlink_pdr();
    https.pdr_id = 4;
    https.precedence = 10;
    https.pdi.sdf_filter = vec![SdfFilter {
        flow_description: Some(b"permit out 6 from any 443 to assigned 1024-65535"),
        ..Default::default()
    }];
    https.far_id = Some(4);
    req.create_pdr.push(https);
    req.create_far.push(CreateFar {
        far_id: 4,
        apply_action: ApplyAction::DROP,
        forwarding_parameters: None,
        bar_id: None,
    });
    h.establish(req);
    let out = h.batch(&[
        (N6, tcp_packet(SERVER, UE, 443, 50_000)),
        (N6, tcp_packet(SERVER, UE, 80, 50_000)),
        (N6, tcp_packet(SERVER, UE, 443, 80)),
        (N6, server_packet(60)),
    ]);
    assert_eq!(
        out.verdicts,
        [
            Verdict::Drop,
            Verdict::Forward(N3),
            Verdict::Forward(N3),
            Verdict::Forward(N3)
        ]
    );
}

#[test]
fn a_downlink_far_without_outer_header_never_sends_bare_packets_on_n3() {
    let mut h = Harness::new();
    h.associate();
    let mut req = session_request();
    req.create_far[1]
        .forwarding_parameters
        .as_mut()
        .unwrap()
        .outer_header_creation = None;
    h.establish(req);
    let out = h.batch(&[(N6, server_packet(100))]);
    assert_eq!(out.verdicts, [Verdict::Drop]);
    assert_eq!(h.drops(Reason::MissingOuterHeader), 1);
}
