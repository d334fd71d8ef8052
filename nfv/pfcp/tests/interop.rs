//! Interop against peers no one here wrote: scapy (`scapy.contrib.pfcp`), pycrate
//! (`pycrate_mobile.TS29244_PFCP`) and Wireshark's dissector (tshark).
//!
//! - Messages built by scapy and pycrate parse here, and the IE tree we read from their bytes
//!   (types, nesting, key field values) equals the one the library reads.
//! - Every message type we emit decodes in scapy and in pycrate (mandatory IEs complete, no IE
//!   left undecoded) to the same IE tree we read from our own bytes.
//! - The same messages, in a capture, dissect in tshark as PFCP with no malformed packet or
//!   error-level expert info, and tshark's message type, SEID, sequence number and key IE
//!   values match.
//!
//! Needs `scripts/pyenv.sh` (scapy, pycrate) and tshark; `scripts/test.sh` installs both.

// One copy of the interop helpers serves both codec crates.
#[path = "../../gtpu/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};

use outpost_pfcp::*;
use serde_json::{Value, json};
use support::{Datagram, assert_well_formed, find_all, find_field, run_script};

const GROUPED: &[u16] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 77, 78, 79, 80, 83, 85, 86, 87,
    99,
];

fn ip4(a: Ipv4Addr) -> Value {
    json!(a.to_string())
}

fn ip6(a: Ipv6Addr) -> Value {
    json!(a.to_string())
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> Value) -> Value {
    v.map(f).unwrap_or(Value::Null)
}

/// The IE tree of a message as we read it: the same shape `pfcp_vectors.py` prints.
fn summary(bytes: &[u8]) -> Value {
    let p = Packet::new_checked(bytes).expect("a whole PFCP message");
    json!({
        "type": p.message_type(),
        "seid": p.seid(),
        "seq": p.sequence_number(),
        "ies": ies(p.payload()),
    })
}

fn ies(data: &[u8]) -> Vec<Value> {
    IeIter::new(data)
        .map(|ie| ie_summary(ie.expect("well-formed IEs")))
        .collect()
}

fn le_int(v: &[u8], n: usize) -> u64 {
    v.iter()
        .take(n)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | u64::from(*b) << (8 * i))
}

fn ie_summary(ie: Ie<'_>) -> Value {
    let (t, v) = (ie.ie_type, ie.value);
    if GROUPED.contains(&t) {
        return json!({"t": t, "ies": ies(v)});
    }
    fn p<'a, T: IeValue<'a>>(v: &'a [u8], t: u16) -> T {
        T::parse_value(v, t).unwrap_or_else(|e| panic!("IE {t}: {e}"))
    }
    let int = |n: u64| json!({"t": t, "v": {"int": n}});
    match t {
        19 | 88 => int(p::<u8>(v, t).into()),
        20 | 42 => int(p::<Interface>(v, t).0.into()),
        124 => int(p::<Qfi>(v, t).0.into()),
        40 | 56 => int(p::<u16>(v, t).into()),
        28 | 29 | 32 | 67 | 69 | 70 | 75 | 76 | 81 | 96 | 104 | 108 | 109 => {
            int(p::<u32>(v, t).into())
        }
        39 | 44 | 62 | 89 => int(le_int(v, 1)),
        37 | 43 | 63 => int(le_int(v, 2)),
        60 => {
            let (kind, addr) = match p::<NodeId>(v, t) {
                NodeId::Ipv4(a) => (0, a.to_string()),
                NodeId::Ipv6(a) => (1, a.to_string()),
                n @ NodeId::Fqdn(_) => (2, n.fqdn().expect("a dotted FQDN")),
            };
            json!({"t": t, "v": {"kind": kind, "addr": addr}})
        }
        57 => {
            let f: FSeid = p(v, t);
            json!({"t": t, "v": {"seid": f.seid, "ipv4": opt(f.ipv4, ip4), "ipv6": opt(f.ipv6, ip6)}})
        }
        21 => {
            let s = match p::<FTeid>(v, t) {
                FTeid::Assigned { teid, ipv4, ipv6 } => json!({
                    "v4": u8::from(ipv4.is_some()), "v6": u8::from(ipv6.is_some()), "ch": 0,
                    "chid": null, "teid": teid, "ipv4": opt(ipv4, ip4), "ipv6": opt(ipv6, ip6),
                }),
                FTeid::Choose {
                    ipv4,
                    ipv6,
                    choose_id,
                } => json!({
                    "v4": u8::from(ipv4), "v6": u8::from(ipv6), "ch": 1, "chid": choose_id,
                    "teid": null, "ipv4": null, "ipv6": null,
                }),
            };
            json!({"t": t, "v": s})
        }
        93 => {
            let u: UeIpAddress = p(v, t);
            json!({"t": t, "v": {"sd": u8::from(u.destination), "ipv4": opt(u.ipv4, ip4), "ipv6": opt(u.ipv6, ip6)}})
        }
        23 => {
            let f: SdfFilter = p(v, t);
            let fd = f
                .flow_description
                .map(|d| String::from_utf8(d.to_vec()).expect("ASCII flow description"));
            json!({"t": t, "v": {"fd": fd}})
        }
        84 => {
            let o: OuterHeaderCreation = p(v, t);
            json!({"t": t, "v": {
                "desc": o.description & 0xff, "teid": o.teid,
                "ipv4": opt(o.ipv4, ip4), "ipv6": opt(o.ipv6, ip6),
            }})
        }
        95 => json!({"t": t, "v": {"desc": p::<OuterHeaderRemoval>(v, t).description}}),
        25 => {
            let g: GateStatus = p(v, t);
            json!({"t": t, "v": {"ul": g.uplink, "dl": g.downlink}})
        }
        26 | 27 => {
            let b: Bitrate = p(v, t);
            json!({"t": t, "v": {"ul": b.uplink, "dl": b.downlink}})
        }
        31 | 73 => {
            let vol: Volume = p(v, t);
            json!({"t": t, "v": {"total": vol.total, "ul": vol.uplink, "dl": vol.downlink}})
        }
        66 => {
            let m: VolumeMeasurement = p(v, t);
            json!({"t": t, "v": {"total": m.total_volume, "ul": m.uplink_volume, "dl": m.downlink_volume}})
        }
        _ => json!({"t": t, "hex": hex(v)}),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn messages_built_by_scapy_and_pycrate_parse_to_what_they_mean() {
    let vectors = run_script("pfcp_vectors.py", &["generate"], None);
    let vectors = vectors.as_array().expect("a list of vectors");
    assert!(vectors.len() >= 20, "{vectors:?}");
    let mut types = std::collections::BTreeSet::new();
    for v in vectors {
        let name = format!(
            "{}/{}",
            v["lib"].as_str().unwrap(),
            v["name"].as_str().unwrap()
        );
        let bytes = unhex(v["hex"].as_str().unwrap());
        let message =
            Message::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e} ({})", hex(&bytes)));
        types.insert(message.message_type());
        assert_eq!(summary(&bytes), v["summary"], "{name}");
        // What we parsed emits again to something that parses the same.
        let again = message.to_vec().unwrap();
        assert_eq!(Message::parse(&again).unwrap(), message, "{name}");
    }
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        [1, 2, 5, 6, 7, 8, 9, 10, 50, 51, 52, 53, 54, 55, 56, 57]
    );
}

#[test]
fn scapy_vectors_carry_the_fields_a_upf_uses() {
    let vectors = run_script("pfcp_vectors.py", &["generate"], None);
    let find = |lib: &str, name: &str| {
        let v = vectors
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["lib"] == lib && v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {lib}/{name}"));
        unhex(v["hex"].as_str().unwrap())
    };
    let bytes = find("scapy", "session_establishment_request");
    let m = Message::parse(&bytes).unwrap();
    let Body::SessionEstablishmentRequest(req) = &m.body else {
        panic!("{m:?}")
    };
    assert_eq!(req.cp_f_seid.seid, 0x1122_3344_5566_7788);
    assert_eq!(
        req.create_pdr[0].pdi.local_f_teid,
        Some(FTeid::Choose {
            ipv4: true,
            ipv6: false,
            choose_id: Some(1)
        })
    );
    let flow = req.create_pdr[1].pdi.sdf_filter[0].flow().unwrap().unwrap();
    assert_eq!(flow.protocol, Some(17));
    assert!(
        flow.source
            .matches("198.51.100.9".parse().unwrap(), Some(53), None)
    );
    assert_eq!(
        req.create_far[2].apply_action,
        ApplyAction::BUFF | ApplyAction::NOCP
    );
    assert_eq!(req.create_qer[0].gate_status.downlink, GateStatus::CLOSED);
    assert_eq!(
        req.create_urr[0].volume_threshold.unwrap().downlink,
        Some(524_288)
    );

    let bytes = find(
        "scapy",
        "session_establishment_response_mandatory_ie_missing",
    );
    let Body::SessionEstablishmentResponse(resp) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(resp.cause, Cause::MANDATORY_IE_MISSING);
    assert_eq!(resp.offending_ie, Some(ie_type::CREATE_FAR));

    let bytes = find("pycrate", "session_report_request");
    let Body::SessionReportRequest(rep) = Message::parse(&bytes).unwrap().body else {
        panic!()
    };
    assert_eq!(rep.report_type, ReportType::USAR);
    let usage = &rep.usage_report[0];
    assert_eq!(
        usage.usage_report_trigger,
        UsageReportTrigger::PERIO | UsageReportTrigger::TERMR
    );
    assert_eq!(
        usage.volume_measurement.unwrap().total_volume,
        Some(123_456)
    );
}

/// Every message type, with the IEs a UPF sends and receives.
fn our_messages() -> Vec<(&'static str, Message<'static>)> {
    let smf = NodeId::Ipv4(Ipv4Addr::new(10, 0, 0, 1));
    let upf = NodeId::Fqdn(b"\x03upf\x04edge\x03lan");
    let cp_seid = 0x1122_3344_5566_7788;
    let up_seid = 0x42;
    let rts = 3_900_000_000;
    let pdi_uplink = Pdi {
        source_interface: Interface::ACCESS,
        local_f_teid: Some(FTeid::Choose {
            ipv4: true,
            ipv6: false,
            choose_id: Some(1),
        }),
        network_instance: Some(b"\x08internet"),
        ue_ip_address: Some(UeIpAddress {
            ipv4: Some(Ipv4Addr::new(10, 45, 0, 2)),
            ..Default::default()
        }),
        sdf_filter: vec![],
        application_id: None,
        qfi: vec![Qfi(9)],
    };
    let pdi_downlink = Pdi {
        source_interface: Interface::CORE,
        local_f_teid: None,
        network_instance: Some(b"\x08internet"),
        ue_ip_address: Some(UeIpAddress {
            ipv4: Some(Ipv4Addr::new(10, 45, 0, 2)),
            destination: true,
            ..Default::default()
        }),
        sdf_filter: vec![SdfFilter {
            flow_description: Some(b"permit out 17 from 198.51.100.0/24 53 to assigned"),
            ..Default::default()
        }],
        application_id: None,
        qfi: vec![],
    };
    let create_pdr = vec![
        CreatePdr {
            pdr_id: 1,
            precedence: 255,
            pdi: pdi_uplink.clone(),
            outer_header_removal: Some(OuterHeaderRemoval {
                description: OuterHeaderRemoval::GTPU_UDP_IPV4,
                gtpu_extension_header_deletion: None,
            }),
            far_id: Some(1),
            urr_id: vec![1],
            qer_id: vec![1],
        },
        CreatePdr {
            pdr_id: 2,
            precedence: 254,
            pdi: pdi_downlink,
            outer_header_removal: None,
            far_id: Some(2),
            urr_id: vec![1],
            qer_id: vec![1],
        },
    ];
    let create_far = vec![
        CreateFar {
            far_id: 1,
            apply_action: ApplyAction::FORW,
            forwarding_parameters: Some(ForwardingParameters {
                destination_interface: Interface::CORE,
                network_instance: Some(b"\x08internet"),
                outer_header_creation: None,
                transport_level_marking: None,
            }),
            bar_id: None,
        },
        CreateFar {
            far_id: 2,
            apply_action: ApplyAction::FORW,
            forwarding_parameters: Some(ForwardingParameters {
                destination_interface: Interface::ACCESS,
                network_instance: None,
                outer_header_creation: Some(OuterHeaderCreation::gtpu_ipv4(
                    0x1000,
                    Ipv4Addr::new(192, 168, 1, 5),
                )),
                transport_level_marking: Some(0xb8fc),
            }),
            bar_id: None,
        },
        CreateFar {
            far_id: 3,
            apply_action: ApplyAction::BUFF | ApplyAction::NOCP,
            forwarding_parameters: None,
            bar_id: Some(1),
        },
    ];
    let create_urr = CreateUrr {
        urr_id: 1,
        measurement_method: MeasurementMethod::VOLUM | MeasurementMethod::DURAT,
        reporting_triggers: ReportingTriggers::VOLTH | ReportingTriggers::TIMTH,
        measurement_period: None,
        volume_threshold: Some(Volume {
            total: Some(1_048_576),
            uplink: None,
            downlink: Some(524_288),
        }),
        volume_quota: None,
        time_threshold: Some(3600),
        time_quota: None,
        quota_holding_time: None,
    };
    let create_qer = CreateQer {
        qer_id: 1,
        qer_correlation_id: None,
        gate_status: GateStatus {
            uplink: GateStatus::OPEN,
            downlink: GateStatus::CLOSED,
        },
        mbr: Some(Bitrate {
            uplink: 100_000,
            downlink: 200_000,
        }),
        gbr: Some(Bitrate {
            uplink: 10_000,
            downlink: 20_000,
        }),
        qfi: Some(Qfi(9)),
    };
    let bar = CreateBar {
        bar_id: 1,
        downlink_data_notification_delay: Some(2),
        suggested_buffering_packets_count: Some(10),
    };
    let usage_report = UsageReport {
        urr_id: 1,
        ur_seqn: 3,
        usage_report_trigger: UsageReportTrigger::VOLTH,
        start_time: Some(rts),
        end_time: Some(rts + 60),
        volume_measurement: Some(VolumeMeasurement {
            total_volume: Some(3000),
            uplink_volume: Some(1000),
            downlink_volume: Some(2000),
            total_packets: Some(30),
            uplink_packets: Some(10),
            downlink_packets: Some(20),
        }),
        duration_measurement: Some(60),
        time_of_first_packet: Some(rts + 1),
        time_of_last_packet: Some(rts + 59),
        usage_information: None,
    };
    let allocated = FTeid::Assigned {
        teid: 0x00ab_cdef,
        ipv4: Some(Ipv4Addr::new(192, 168, 1, 1)),
        ipv6: None,
    };
    let up_features = UpFunctionFeatures::FTUP | UpFunctionFeatures::EMPU;
    vec![
        (
            "heartbeat_request",
            Message::node(
                1,
                Body::HeartbeatRequest(HeartbeatRequest {
                    recovery_time_stamp: rts,
                }),
            ),
        ),
        (
            "heartbeat_response",
            Message::node(
                1,
                Body::HeartbeatResponse(HeartbeatResponse {
                    recovery_time_stamp: rts,
                }),
            ),
        ),
        (
            "association_setup_request",
            Message::node(
                2,
                Body::AssociationSetupRequest(AssociationSetupRequest {
                    node_id: upf,
                    recovery_time_stamp: rts,
                    up_function_features: Some(up_features),
                    cp_function_features: None,
                }),
            ),
        ),
        (
            "association_setup_response",
            Message::node(
                2,
                Body::AssociationSetupResponse(AssociationSetupResponse {
                    node_id: upf,
                    cause: Cause::REQUEST_ACCEPTED,
                    recovery_time_stamp: rts,
                    up_function_features: Some(up_features),
                    cp_function_features: None,
                }),
            ),
        ),
        (
            "association_update_request",
            Message::node(
                3,
                Body::AssociationUpdateRequest(AssociationUpdateRequest {
                    node_id: smf,
                    up_function_features: None,
                    cp_function_features: Some(CpFunctionFeatures::LOAD),
                    association_release_request: None,
                    graceful_release_period: None,
                }),
            ),
        ),
        (
            "association_update_response",
            Message::node(
                3,
                Body::AssociationUpdateResponse(AssociationUpdateResponse {
                    node_id: upf,
                    cause: Cause::REQUEST_ACCEPTED,
                    up_function_features: Some(up_features),
                    cp_function_features: None,
                }),
            ),
        ),
        (
            "association_release_request",
            Message::node(
                4,
                Body::AssociationReleaseRequest(AssociationReleaseRequest { node_id: smf }),
            ),
        ),
        (
            "association_release_response",
            Message::node(
                4,
                Body::AssociationReleaseResponse(AssociationReleaseResponse {
                    node_id: upf,
                    cause: Cause::REQUEST_ACCEPTED,
                }),
            ),
        ),
        (
            "session_establishment_request",
            Message::session(
                0,
                5,
                Body::SessionEstablishmentRequest(SessionEstablishmentRequest {
                    node_id: smf,
                    cp_f_seid: FSeid {
                        seid: cp_seid,
                        ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                        ipv6: None,
                    },
                    create_pdr: create_pdr.clone(),
                    create_far: create_far.clone(),
                    create_urr: vec![create_urr.clone()],
                    create_qer: vec![create_qer.clone()],
                    create_bar: Some(bar.clone()),
                    pdn_type: Some(1),
                    user_plane_inactivity_timer: Some(300),
                    apn_dnn: Some(b"\x08internet"),
                }),
            ),
        ),
        (
            "session_establishment_response",
            Message::session(
                cp_seid,
                5,
                Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                    node_id: upf,
                    cause: Cause::REQUEST_ACCEPTED,
                    offending_ie: None,
                    up_f_seid: Some(FSeid {
                        seid: up_seid,
                        ipv4: Some(Ipv4Addr::new(192, 168, 1, 1)),
                        ipv6: Some("2001:db8::1".parse().unwrap()),
                    }),
                    created_pdr: vec![CreatedPdr {
                        pdr_id: 1,
                        local_f_teid: Some(allocated),
                        ue_ip_address: None,
                    }],
                    failed_rule_id: None,
                }),
            ),
        ),
        (
            "session_establishment_response_mandatory_ie_missing",
            Message::session(
                cp_seid,
                6,
                Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                    node_id: upf,
                    cause: Cause::MANDATORY_IE_MISSING,
                    offending_ie: Some(ie_type::CREATE_FAR),
                    up_f_seid: None,
                    created_pdr: vec![],
                    failed_rule_id: None,
                }),
            ),
        ),
        (
            "session_establishment_response_rule_failure",
            Message::session(
                cp_seid,
                7,
                Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                    node_id: upf,
                    cause: Cause::RULE_CREATION_MODIFICATION_FAILURE,
                    offending_ie: None,
                    up_f_seid: None,
                    created_pdr: vec![],
                    failed_rule_id: Some(FailedRuleId::Pdr(2)),
                }),
            ),
        ),
        (
            "session_modification_request",
            Message {
                seid: Some(up_seid),
                sequence_number: 8,
                priority: Some(7),
                body: Body::SessionModificationRequest(SessionModificationRequest {
                    cp_f_seid: None,
                    remove_pdr: vec![RemovePdr { pdr_id: 2 }],
                    remove_far: vec![RemoveFar { far_id: 2 }],
                    remove_urr: vec![RemoveUrr { urr_id: 9 }],
                    remove_qer: vec![RemoveQer { qer_id: 9 }],
                    remove_bar: Some(RemoveBar { bar_id: 1 }),
                    create_pdr: vec![create_pdr[0].clone()],
                    create_far: vec![create_far[0].clone()],
                    create_urr: vec![],
                    create_qer: vec![],
                    create_bar: None,
                    update_pdr: vec![UpdatePdr {
                        pdr_id: 1,
                        outer_header_removal: None,
                        precedence: Some(100),
                        pdi: Some(pdi_uplink),
                        far_id: Some(3),
                        urr_id: vec![],
                        qer_id: vec![],
                    }],
                    update_far: vec![UpdateFar {
                        far_id: 1,
                        apply_action: Some(ApplyAction::FORW),
                        update_forwarding_parameters: Some(UpdateForwardingParameters {
                            destination_interface: Some(Interface::ACCESS),
                            network_instance: None,
                            outer_header_creation: Some(OuterHeaderCreation::gtpu_ipv4(
                                0x2000,
                                Ipv4Addr::new(192, 168, 1, 6),
                            )),
                            transport_level_marking: None,
                            pfcpsmreq_flags: Some(0x02),
                        }),
                        bar_id: None,
                    }],
                    update_urr: vec![UpdateUrr {
                        urr_id: 1,
                        measurement_method: None,
                        reporting_triggers: Some(ReportingTriggers::VOLTH),
                        measurement_period: None,
                        volume_threshold: Some(Volume {
                            total: Some(2_000_000),
                            ..Default::default()
                        }),
                        volume_quota: None,
                        time_threshold: None,
                        time_quota: None,
                        quota_holding_time: None,
                    }],
                    update_qer: vec![UpdateQer {
                        qer_id: 1,
                        qer_correlation_id: None,
                        gate_status: Some(GateStatus::BOTH_OPEN),
                        mbr: Some(Bitrate {
                            uplink: 50_000,
                            downlink: 60_000,
                        }),
                        gbr: None,
                        qfi: None,
                    }],
                    update_bar: None,
                    pfcpsmreq_flags: None,
                    query_urr: vec![QueryUrr { urr_id: 1 }],
                    user_plane_inactivity_timer: None,
                }),
            },
        ),
        (
            "session_modification_response",
            Message::session(
                cp_seid,
                8,
                Body::SessionModificationResponse(SessionModificationResponse {
                    cause: Cause::REQUEST_ACCEPTED,
                    offending_ie: None,
                    created_pdr: vec![CreatedPdr {
                        pdr_id: 1,
                        local_f_teid: Some(allocated),
                        ue_ip_address: None,
                    }],
                    usage_report: vec![usage_report.clone()],
                    failed_rule_id: None,
                }),
            ),
        ),
        (
            "session_deletion_request",
            Message::session(
                up_seid,
                9,
                Body::SessionDeletionRequest(SessionDeletionRequest {}),
            ),
        ),
        (
            "session_deletion_response",
            Message::session(
                cp_seid,
                9,
                Body::SessionDeletionResponse(SessionDeletionResponse {
                    cause: Cause::REQUEST_ACCEPTED,
                    offending_ie: None,
                    usage_report: vec![usage_report.clone()],
                }),
            ),
        ),
        (
            "session_deletion_response_not_found",
            Message::session(
                cp_seid,
                10,
                Body::SessionDeletionResponse(SessionDeletionResponse {
                    cause: Cause::SESSION_CONTEXT_NOT_FOUND,
                    offending_ie: None,
                    usage_report: vec![],
                }),
            ),
        ),
        (
            "session_report_request",
            Message::session(
                cp_seid,
                11,
                Body::SessionReportRequest(SessionReportRequest {
                    report_type: ReportType::DLDR | ReportType::USAR | ReportType::ERIR,
                    downlink_data_report: Some(DownlinkDataReport { pdr_id: vec![2] }),
                    usage_report: vec![usage_report],
                    error_indication_report: Some(ErrorIndicationReport {
                        remote_f_teid: vec![FTeid::Assigned {
                            teid: 0x1000,
                            ipv4: Some(Ipv4Addr::new(192, 168, 1, 5)),
                            ipv6: None,
                        }],
                    }),
                }),
            ),
        ),
        (
            "session_report_response",
            Message::session(
                up_seid,
                11,
                Body::SessionReportResponse(SessionReportResponse {
                    cause: Cause::REQUEST_ACCEPTED,
                    offending_ie: None,
                    update_bar: Some(UpdateBarReportResponse {
                        bar_id: 1,
                        downlink_data_notification_delay: Some(1),
                        dl_buffering_duration: None,
                        suggested_buffering_packets_count: Some(5),
                    }),
                    pfcpsrrsp_flags: None,
                }),
            ),
        ),
    ]
}

#[test]
fn every_message_we_emit_decodes_in_scapy_and_pycrate() {
    let messages = our_messages();
    let input: Vec<Value> = messages
        .iter()
        .map(|(name, m)| json!({"name": name, "hex": hex(&m.to_vec().unwrap())}))
        .collect();
    let decoded = run_script("pfcp_vectors.py", &["decode"], Some(&Value::Array(input)));
    let decoded = decoded.as_array().expect("one result per message");
    assert_eq!(decoded.len(), messages.len());
    for ((name, m), d) in messages.iter().zip(decoded) {
        let ours = summary(&m.to_vec().unwrap());
        for lib in ["scapy", "pycrate"] {
            let r = &d[lib];
            assert!(r.get("error").is_none(), "{lib} cannot decode {name}: {r}");
            assert_eq!(r["summary"], ours, "{lib} reads {name} differently");
        }
        assert_eq!(
            d["pycrate"]["code"], 0,
            "pycrate: {name} misses a mandatory IE"
        );
        assert_eq!(
            d["pycrate"]["raw_fallback"],
            json!([]),
            "pycrate could not decode some IEs of {name}"
        );
    }
}

#[test]
fn every_message_we_emit_dissects_cleanly_in_tshark() {
    let messages = our_messages();
    let bytes: Vec<Vec<u8>> = messages.iter().map(|(_, m)| m.to_vec().unwrap()).collect();
    let smf = Ipv4Addr::new(10, 0, 0, 1);
    let upf = Ipv4Addr::new(192, 168, 1, 1);
    let datagrams: Vec<Datagram> = bytes
        .iter()
        .map(|b| Datagram {
            src: (upf, 8805),
            dst: (smf, 8805),
            payload: b,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pfcp.pcap");
    if let Some(keep) = std::env::var_os("OUTPOST_KEEP_PCAP") {
        support::write_pcap(std::path::Path::new(&keep), &datagrams);
    }
    support::write_pcap(&path, &datagrams);
    let frames = support::tshark_layers(&path);
    assert_eq!(frames.len(), messages.len());
    let num = |v: Option<&Value>| -> u64 {
        let s = v
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no field: {v:?}"));
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap(),
        }
    };
    for ((name, m), layers) in messages.iter().zip(&frames) {
        assert!(
            layers.get("pfcp").is_some(),
            "{name}: not dissected as PFCP: {layers:#}"
        );
        assert_well_formed(name, layers);
        let pfcp = &layers["pfcp"];
        // Header fields sit at the top of the PFCP tree.
        assert_eq!(
            num(pfcp.get("pfcp.msg_type")),
            u64::from(m.message_type()),
            "{name}"
        );
        assert_eq!(
            num(pfcp.get("pfcp.seqno")),
            u64::from(m.sequence_number),
            "{name}"
        );
        assert_eq!(
            pfcp.get("pfcp.seid").map(|v| num(Some(v))),
            m.seid,
            "{name}"
        );
        assert_eq!(
            num(pfcp
                .get("pfcp.mp_flag")
                .or(find_field(pfcp, "pfcp.mp_flag"))),
            u64::from(m.priority.is_some()),
            "{name}"
        );
        // Every IE we put in is an IE tshark found (serde_json's maps do not keep tshark's
        // order, so compare sorted).
        let mut ours: Vec<u64> = all_ie_types(&m.to_vec().unwrap());
        let mut theirs: Vec<u64> = find_all(pfcp, "pfcp.ie_type")
            .into_iter()
            .map(|v| num(Some(v)))
            .collect();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(theirs, ours, "{name}: IE types");
    }
    // Key IE values, as tshark reads them.
    let frame = |name: &str| {
        let i = messages.iter().position(|(n, _)| *n == name).unwrap();
        &frames[i]["pfcp"]
    };
    let est = frame("session_establishment_request");
    assert_eq!(num(find_field(est, "pfcp.f_teid_flags.ch")), 1);
    assert_eq!(num(find_field(est, "pfcp.f_teid_flags.ch_id")), 1);
    assert_eq!(num(find_field(est, "pfcp.f_teid.choose_id")), 1);
    assert_eq!(
        find_field(est, "pfcp.ue_ip_addr_ipv4").unwrap(),
        "10.45.0.2"
    );
    assert_eq!(
        find_field(est, "pfcp.flow_desc").unwrap(),
        "permit out 17 from 198.51.100.0/24 53 to assigned"
    );
    assert_eq!(num(find_field(est, "pfcp.outer_hdr_creation.teid")), 0x1000);
    assert_eq!(
        find_field(est, "pfcp.outer_hdr_creation.ipv4").unwrap(),
        "192.168.1.5"
    );
    assert_eq!(num(find_field(est, "pfcp.ul_mbr")), 100_000);
    assert_eq!(num(find_field(est, "pfcp.dl_mbr")), 200_000);
    assert_eq!(num(find_field(est, "pfcp.qfi_value")), 9);
    assert_eq!(
        num(find_field(est, "pfcp.volume_threshold.tovol")),
        1_048_576
    );
    assert_eq!(num(est.get("pfcp.seid")), 0);
    let resp = frame("session_establishment_response");
    assert_eq!(num(find_field(resp, "pfcp.cause")), 1);
    assert_eq!(num(find_field(resp, "pfcp.f_teid.teid")), 0x00ab_cdef);
    assert_eq!(
        find_field(resp, "pfcp.f_teid.ipv4_addr").unwrap(),
        "192.168.1.1"
    );
    let missing = frame("session_establishment_response_mandatory_ie_missing");
    assert_eq!(num(find_field(missing, "pfcp.cause")), 66);
    assert_eq!(num(find_field(missing, "pfcp.offending_ie")), 3);
    let report = frame("session_report_request");
    assert_eq!(
        num(find_field(report, "pfcp.volume_measurement.tovol")),
        3000
    );
    assert_eq!(
        num(find_field(report, "pfcp.volume_measurement.dlvol")),
        2000
    );
    assert_eq!(num(find_field(report, "pfcp.volume_measurement.dlnop")), 20);
    assert_eq!(num(find_field(report, "pfcp.duration_measurement")), 60);
}

/// IE types of a message, grouped IEs and their content.
fn all_ie_types(bytes: &[u8]) -> Vec<u64> {
    fn walk(data: &[u8], out: &mut Vec<u64>) {
        for ie in IeIter::new(data) {
            let ie = ie.unwrap();
            out.push(u64::from(ie.ie_type));
            if GROUPED.contains(&ie.ie_type) {
                walk(ie.value, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Packet::new_checked(bytes).unwrap().payload(), &mut out);
    out
}
