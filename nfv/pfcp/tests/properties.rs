//! Property tests: parse ∘ emit is the identity for every message representation with
//! arbitrary IE contents, and no input makes the parsers panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use outpost_pfcp::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn bytes(max: usize) -> impl Strategy<Value = &'static [u8]> {
    vec(any::<u8>(), 0..max).prop_map(leak)
}

fn v4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u8; 16]>().prop_map(Ipv6Addr::from)
}

fn node_id() -> impl Strategy<Value = NodeId<'static>> {
    prop_oneof![
        v4().prop_map(NodeId::Ipv4),
        v6().prop_map(NodeId::Ipv6),
        bytes(40).prop_map(NodeId::Fqdn),
    ]
}

fn f_seid() -> impl Strategy<Value = FSeid> {
    (any::<u64>(), of(v4()), of(v6())).prop_map(|(seid, ipv4, ipv6)| FSeid { seid, ipv4, ipv6 })
}

fn f_teid() -> impl Strategy<Value = FTeid> {
    prop_oneof![
        (any::<u32>(), of(v4()), of(v6())).prop_map(|(teid, ipv4, ipv6)| FTeid::Assigned {
            teid,
            ipv4,
            ipv6
        }),
        (any::<bool>(), any::<bool>(), of(any::<u8>())).prop_map(|(ipv4, ipv6, choose_id)| {
            FTeid::Choose {
                ipv4,
                ipv6,
                choose_id,
            }
        }),
    ]
}

prop_compose! {
    fn ue_ip_address()(
        ipv4 in of(v4()), ipv6 in of(v6()), destination in any::<bool>(),
        deleg in of(any::<u8>()), c4 in any::<bool>(), c6 in any::<bool>(), plen in of(any::<u8>()),
    ) -> UeIpAddress {
        UeIpAddress {
            ipv4, ipv6, destination, ipv6_prefix_delegation_bits: deleg,
            choose_ipv4: c4, choose_ipv6: c6, ipv6_prefix_length: plen,
        }
    }
}

prop_compose! {
    fn sdf_filter()(
        fd in of(bytes(60)), ttc in of(any::<u16>()), spi in of(any::<u32>()),
        fl in of(0u32..1 << 24), id in of(any::<u32>()),
    ) -> SdfFilter<'static> {
        SdfFilter {
            flow_description: fd, tos_traffic_class: ttc, security_parameter_index: spi,
            flow_label: fl, sdf_filter_id: id,
        }
    }
}

fn bitrate() -> impl Strategy<Value = Bitrate> {
    (0u64..1 << 40, 0u64..1 << 40).prop_map(|(uplink, downlink)| Bitrate { uplink, downlink })
}

fn gate() -> impl Strategy<Value = GateStatus> {
    (0u8..4, 0u8..4).prop_map(|(uplink, downlink)| GateStatus { uplink, downlink })
}

fn volume() -> impl Strategy<Value = Volume> {
    (of(any::<u64>()), of(any::<u64>()), of(any::<u64>())).prop_map(|(total, uplink, downlink)| {
        Volume {
            total,
            uplink,
            downlink,
        }
    })
}

prop_compose! {
    fn volume_measurement()(v in std::array::from_fn::<_, 6, _>(|_| of(any::<u64>()))) -> VolumeMeasurement {
        VolumeMeasurement {
            total_volume: v[0], uplink_volume: v[1], downlink_volume: v[2],
            total_packets: v[3], uplink_packets: v[4], downlink_packets: v[5],
        }
    }
}

prop_compose! {
    fn outer_header_creation()(
        description in 0u16..0x0400, teid in any::<u32>(), ipv4 in v4(), ipv6 in v6(),
        port in any::<u16>(), c_tag in any::<[u8; 3]>(), s_tag in any::<[u8; 3]>(),
    ) -> OuterHeaderCreation {
        let has = |mask: u16| description & mask != 0;
        OuterHeaderCreation {
            description,
            teid: has(0x0003).then_some(teid),
            ipv4: has(0x0015).then_some(ipv4),
            ipv6: has(0x002a).then_some(ipv6),
            port: has(0x000c).then_some(port),
            c_tag: has(0x0040).then_some(c_tag),
            s_tag: has(0x0080).then_some(s_tag),
        }
    }
}

fn outer_header_removal() -> impl Strategy<Value = OuterHeaderRemoval> {
    (any::<u8>(), of(any::<u8>())).prop_map(|(description, ext)| OuterHeaderRemoval {
        description,
        gtpu_extension_header_deletion: ext,
    })
}

fn interface() -> impl Strategy<Value = Interface> {
    (0u8..16).prop_map(Interface)
}

fn qfi() -> impl Strategy<Value = Qfi> {
    (0u8..64).prop_map(Qfi)
}

fn failed_rule_id() -> impl Strategy<Value = FailedRuleId> {
    prop_oneof![
        any::<u16>().prop_map(FailedRuleId::Pdr),
        any::<u32>().prop_map(FailedRuleId::Far),
        any::<u32>().prop_map(FailedRuleId::Qer),
        any::<u32>().prop_map(FailedRuleId::Urr),
        any::<u8>().prop_map(FailedRuleId::Bar),
    ]
}

fn reporting_triggers() -> impl Strategy<Value = ReportingTriggers> {
    (0u32..1 << 24).prop_map(ReportingTriggers)
}

fn usage_report_trigger() -> impl Strategy<Value = UsageReportTrigger> {
    (0u32..1 << 24).prop_map(UsageReportTrigger)
}

prop_compose! {
    fn pdi()(
        source_interface in interface(), local_f_teid in of(f_teid().boxed()),
        network_instance in of(bytes(20)), ue_ip_address in of(ue_ip_address().boxed()),
        sdf_filter in vec(sdf_filter().boxed(), 0..3), application_id in of(bytes(20)),
        qfi in vec(qfi(), 0..3),
    ) -> Pdi<'static> {
        Pdi { source_interface, local_f_teid, network_instance, ue_ip_address, sdf_filter,
              application_id, qfi }
    }
}

prop_compose! {
    fn create_pdr()(
        pdr_id in any::<u16>(), precedence in any::<u32>(), pdi in pdi().boxed(),
        outer_header_removal in of(outer_header_removal()), far_id in of(any::<u32>()),
        urr_id in vec(any::<u32>(), 0..3), qer_id in vec(any::<u32>(), 0..3),
    ) -> CreatePdr<'static> {
        CreatePdr { pdr_id, precedence, pdi, outer_header_removal, far_id, urr_id, qer_id }
    }
}

prop_compose! {
    fn create_far()(
        far_id in any::<u32>(), apply_action in any::<u16>().prop_map(ApplyAction),
        fp in of((interface(), of(bytes(20)), of(outer_header_creation().boxed()), of(any::<u16>()))),
        bar_id in of(any::<u8>()),
    ) -> CreateFar<'static> {
        CreateFar {
            far_id, apply_action, bar_id,
            forwarding_parameters: fp.map(|(d, n, o, t)| ForwardingParameters {
                destination_interface: d, network_instance: n, outer_header_creation: o,
                transport_level_marking: t,
            }),
        }
    }
}

prop_compose! {
    fn create_urr()(
        urr_id in any::<u32>(), mm in any::<u8>().prop_map(MeasurementMethod),
        rt in reporting_triggers(), mp in of(any::<u32>()), vt in of(volume()),
        vq in of(volume()), tt in of(any::<u32>()), tq in of(any::<u32>()), qht in of(any::<u32>()),
    ) -> CreateUrr {
        CreateUrr {
            urr_id, measurement_method: mm, reporting_triggers: rt, measurement_period: mp,
            volume_threshold: vt, volume_quota: vq, time_threshold: tt, time_quota: tq,
            quota_holding_time: qht,
        }
    }
}

prop_compose! {
    fn create_qer()(
        qer_id in any::<u32>(), corr in of(any::<u32>()), gate_status in gate(),
        mbr in of(bitrate()), gbr in of(bitrate()), qfi in of(qfi()),
    ) -> CreateQer {
        CreateQer { qer_id, qer_correlation_id: corr, gate_status, mbr, gbr, qfi }
    }
}

prop_compose! {
    fn create_bar()(bar_id in any::<u8>(), d in of(any::<u8>()), s in of(any::<u8>())) -> CreateBar {
        CreateBar { bar_id, downlink_data_notification_delay: d, suggested_buffering_packets_count: s }
    }
}

prop_compose! {
    fn created_pdr()(pdr_id in any::<u16>(), f in of(f_teid().boxed()), ue in of(ue_ip_address().boxed())) -> CreatedPdr {
        CreatedPdr { pdr_id, local_f_teid: f, ue_ip_address: ue }
    }
}

prop_compose! {
    fn update_pdr()(
        pdr_id in any::<u16>(), ohr in of(outer_header_removal()), precedence in of(any::<u32>()),
        pdi in of(pdi().boxed()), far_id in of(any::<u32>()), urr_id in vec(any::<u32>(), 0..3),
        qer_id in vec(any::<u32>(), 0..3),
    ) -> UpdatePdr<'static> {
        UpdatePdr { pdr_id, outer_header_removal: ohr, precedence, pdi, far_id, urr_id, qer_id }
    }
}

prop_compose! {
    fn update_far()(
        far_id in any::<u32>(), apply_action in of(any::<u16>().prop_map(ApplyAction)),
        ufp in of((of(interface()), of(bytes(20)), of(outer_header_creation().boxed()),
                   of(any::<u16>()), of(any::<u8>()))),
        bar_id in of(any::<u8>()),
    ) -> UpdateFar<'static> {
        UpdateFar {
            far_id, apply_action, bar_id,
            update_forwarding_parameters: ufp.map(|(d, n, o, t, f)| UpdateForwardingParameters {
                destination_interface: d, network_instance: n, outer_header_creation: o,
                transport_level_marking: t, pfcpsmreq_flags: f,
            }),
        }
    }
}

prop_compose! {
    fn update_urr()(
        urr_id in any::<u32>(), mm in of(any::<u8>().prop_map(MeasurementMethod)),
        rt in of(reporting_triggers()), mp in of(any::<u32>()), vt in of(volume()),
        vq in of(volume()), tt in of(any::<u32>()), tq in of(any::<u32>()), qht in of(any::<u32>()),
    ) -> UpdateUrr {
        UpdateUrr {
            urr_id, measurement_method: mm, reporting_triggers: rt, measurement_period: mp,
            volume_threshold: vt, volume_quota: vq, time_threshold: tt, time_quota: tq,
            quota_holding_time: qht,
        }
    }
}

prop_compose! {
    fn update_qer()(
        qer_id in any::<u32>(), corr in of(any::<u32>()), gate_status in of(gate()),
        mbr in of(bitrate()), gbr in of(bitrate()), qfi in of(qfi()),
    ) -> UpdateQer {
        UpdateQer { qer_id, qer_correlation_id: corr, gate_status, mbr, gbr, qfi }
    }
}

prop_compose! {
    fn usage_report()(
        urr_id in any::<u32>(), ur_seqn in any::<u32>(), trigger in usage_report_trigger(),
        times in std::array::from_fn::<_, 5, _>(|_| of(any::<u32>())), vm in of(volume_measurement().boxed()), ui in of(any::<u8>()),
    ) -> UsageReport {
        UsageReport {
            urr_id, ur_seqn, usage_report_trigger: trigger, start_time: times[0],
            end_time: times[1], volume_measurement: vm, duration_measurement: times[2],
            time_of_first_packet: times[3], time_of_last_packet: times[4], usage_information: ui,
        }
    }
}

fn up_features() -> impl Strategy<Value = Option<UpFunctionFeatures>> {
    of(any::<u64>().prop_map(UpFunctionFeatures))
}

fn cp_features() -> impl Strategy<Value = Option<CpFunctionFeatures>> {
    of(any::<u16>().prop_map(CpFunctionFeatures))
}

fn cause() -> impl Strategy<Value = Cause> {
    any::<u8>().prop_map(Cause)
}

fn node_body() -> impl Strategy<Value = Body<'static>> {
    prop_oneof![
        any::<u32>().prop_map(|r| Body::HeartbeatRequest(HeartbeatRequest {
            recovery_time_stamp: r
        })),
        any::<u32>().prop_map(|r| Body::HeartbeatResponse(HeartbeatResponse {
            recovery_time_stamp: r
        })),
        (
            node_id().boxed(),
            any::<u32>(),
            up_features(),
            cp_features()
        )
            .prop_map(|(n, r, u, c)| {
                Body::AssociationSetupRequest(AssociationSetupRequest {
                    node_id: n,
                    recovery_time_stamp: r,
                    up_function_features: u,
                    cp_function_features: c,
                })
            }),
        (
            node_id().boxed(),
            cause(),
            any::<u32>(),
            up_features(),
            cp_features()
        )
            .prop_map(|(n, cause, r, u, c)| Body::AssociationSetupResponse(
                AssociationSetupResponse {
                    node_id: n,
                    cause,
                    recovery_time_stamp: r,
                    up_function_features: u,
                    cp_function_features: c,
                }
            )),
        (
            node_id().boxed(),
            up_features(),
            cp_features(),
            of(any::<u8>()),
            of(any::<u8>())
        )
            .prop_map(|(n, u, c, rel, grace)| Body::AssociationUpdateRequest(
                AssociationUpdateRequest {
                    node_id: n,
                    up_function_features: u,
                    cp_function_features: c,
                    association_release_request: rel,
                    graceful_release_period: grace,
                }
            )),
        (node_id().boxed(), cause(), up_features(), cp_features()).prop_map(|(n, cause, u, c)| {
            Body::AssociationUpdateResponse(AssociationUpdateResponse {
                node_id: n,
                cause,
                up_function_features: u,
                cp_function_features: c,
            })
        }),
        node_id()
            .boxed()
            .prop_map(
                |n| Body::AssociationReleaseRequest(AssociationReleaseRequest { node_id: n })
            ),
        (node_id().boxed(), cause()).prop_map(|(n, cause)| {
            Body::AssociationReleaseResponse(AssociationReleaseResponse { node_id: n, cause })
        }),
    ]
}

prop_compose! {
    fn establishment_request()(
        node_id in node_id().boxed(), cp_f_seid in f_seid().boxed(), create_pdr in vec(create_pdr().boxed(), 1..3),
        create_far in vec(create_far().boxed(), 1..3), create_urr in vec(create_urr().boxed(), 0..2),
        create_qer in vec(create_qer().boxed(), 0..2), create_bar in of(create_bar().boxed()),
        pdn_type in of(any::<u8>()), upit in of(any::<u32>()), apn_dnn in of(bytes(20)),
    ) -> SessionEstablishmentRequest<'static> {
        SessionEstablishmentRequest {
            node_id, cp_f_seid, create_pdr, create_far, create_urr, create_qer, create_bar,
            pdn_type, user_plane_inactivity_timer: upit, apn_dnn,
        }
    }
}

prop_compose! {
    fn modification_request()(
        cp_f_seid in of(f_seid().boxed()),
        removes in (vec(any::<u16>(), 0..2), vec(any::<u32>(), 0..2), vec(any::<u32>(), 0..2),
                    vec(any::<u32>(), 0..2), of(any::<u8>())),
        creates in (vec(create_pdr().boxed(), 0..2), vec(create_far().boxed(), 0..2), vec(create_urr().boxed(), 0..2),
                    vec(create_qer().boxed(), 0..2), of(create_bar().boxed())),
        updates in (vec(update_pdr().boxed(), 0..2), vec(update_far().boxed(), 0..2), vec(update_urr().boxed(), 0..2),
                    vec(update_qer().boxed(), 0..2), of(create_bar().boxed())),
        flags in of(any::<u8>()), query in vec(any::<u32>(), 0..2), upit in of(any::<u32>()),
    ) -> SessionModificationRequest<'static> {
        SessionModificationRequest {
            cp_f_seid,
            remove_pdr: removes.0.into_iter().map(|pdr_id| RemovePdr { pdr_id }).collect(),
            remove_far: removes.1.into_iter().map(|far_id| RemoveFar { far_id }).collect(),
            remove_urr: removes.2.into_iter().map(|urr_id| RemoveUrr { urr_id }).collect(),
            remove_qer: removes.3.into_iter().map(|qer_id| RemoveQer { qer_id }).collect(),
            remove_bar: removes.4.map(|bar_id| RemoveBar { bar_id }),
            create_pdr: creates.0, create_far: creates.1, create_urr: creates.2,
            create_qer: creates.3, create_bar: creates.4,
            update_pdr: updates.0, update_far: updates.1, update_urr: updates.2,
            update_qer: updates.3, update_bar: updates.4,
            pfcpsmreq_flags: flags,
            query_urr: query.into_iter().map(|urr_id| QueryUrr { urr_id }).collect(),
            user_plane_inactivity_timer: upit,
        }
    }
}

fn session_body() -> impl Strategy<Value = Body<'static>> {
    prop_oneof![
        establishment_request()
            .boxed()
            .prop_map(Body::SessionEstablishmentRequest),
        (
            node_id().boxed(),
            cause(),
            of(any::<u16>()),
            of(f_seid().boxed()),
            vec(created_pdr().boxed(), 0..3),
            of(failed_rule_id())
        )
            .prop_map(
                |(node_id, cause, offending_ie, up_f_seid, created_pdr, failed_rule_id)| {
                    Body::SessionEstablishmentResponse(SessionEstablishmentResponse {
                        node_id,
                        cause,
                        offending_ie,
                        up_f_seid,
                        created_pdr,
                        failed_rule_id,
                    })
                }
            ),
        modification_request()
            .boxed()
            .prop_map(Body::SessionModificationRequest),
        (
            cause(),
            of(any::<u16>()),
            vec(created_pdr().boxed(), 0..2),
            vec(usage_report().boxed(), 0..3),
            of(failed_rule_id())
        )
            .prop_map(
                |(cause, offending_ie, created_pdr, usage_report, failed_rule_id)| {
                    Body::SessionModificationResponse(SessionModificationResponse {
                        cause,
                        offending_ie,
                        created_pdr,
                        usage_report,
                        failed_rule_id,
                    })
                }
            ),
        Just(Body::SessionDeletionRequest(SessionDeletionRequest {})),
        (cause(), of(any::<u16>()), vec(usage_report().boxed(), 0..3)).prop_map(
            |(cause, offending_ie, usage_report)| {
                Body::SessionDeletionResponse(SessionDeletionResponse {
                    cause,
                    offending_ie,
                    usage_report,
                })
            }
        ),
        (
            any::<u8>(),
            of(vec(any::<u16>(), 1..4)),
            vec(usage_report().boxed(), 0..3),
            of(vec(f_teid().boxed(), 1..3))
        )
            .prop_map(|(rt, dldr, usage_report, erir)| {
                Body::SessionReportRequest(SessionReportRequest {
                    report_type: ReportType(rt),
                    downlink_data_report: dldr.map(|pdr_id| DownlinkDataReport { pdr_id }),
                    usage_report,
                    error_indication_report: erir
                        .map(|remote_f_teid| ErrorIndicationReport { remote_f_teid }),
                })
            }),
        (
            cause(),
            of(any::<u16>()),
            of((
                any::<u8>(),
                std::array::from_fn::<_, 3, _>(|_| of(any::<u8>()))
            )),
            of(any::<u8>())
        )
            .prop_map(|(cause, offending_ie, bar, flags)| {
                Body::SessionReportResponse(SessionReportResponse {
                    cause,
                    offending_ie,
                    update_bar: bar.map(|(bar_id, o)| UpdateBarReportResponse {
                        bar_id,
                        downlink_data_notification_delay: o[0],
                        dl_buffering_duration: o[1],
                        suggested_buffering_packets_count: o[2],
                    }),
                    pfcpsrrsp_flags: flags,
                })
            }),
    ]
}

fn message() -> impl Strategy<Value = Message<'static>> {
    (
        prop_oneof![
            node_body().boxed().prop_map(|b| (None, b)),
            (any::<u64>(), session_body().boxed()).prop_map(|(s, b)| (Some(s), b)),
        ],
        0u32..1 << 24,
        of(0u8..16),
    )
        .prop_map(|((seid, body), sequence_number, priority)| Message {
            seid,
            sequence_number,
            priority,
            body,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn message_parse_of_emit_is_the_identity(message in message()) {
        let bytes = message.to_vec().unwrap();
        prop_assert_eq!(bytes.len(), message.buffer_len());
        let parsed = Message::parse(&bytes).unwrap();
        prop_assert_eq!(&parsed, &message);
        // And emit ∘ parse is the identity on what we emit.
        prop_assert_eq!(parsed.to_vec().unwrap(), bytes);
    }

    #[test]
    fn flow_description_display_parses_back(
        proto in of(any::<u8>()),
        src in (v4(), 0u8..=32),
        ports in vec((any::<u16>(), any::<u16>()), 0..3),
    ) {
        let ports: Vec<PortRange> = ports
            .into_iter()
            .map(|(a, b)| PortRange { start: a.min(b), end: a.max(b) })
            .collect();
        let flow = FlowDescription {
            action: Action::Permit,
            direction: Direction::Out,
            protocol: proto,
            source: Endpoint {
                address: Address::Prefix { address: src.0.into(), len: src.1 },
                ports,
            },
            destination: Endpoint { address: Address::Assigned, ports: Vec::new() },
        };
        let text = flow.to_string();
        prop_assert_eq!(FlowDescription::parse(text.as_bytes()).unwrap(), flow);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        exercise(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(
        message in message(),
        cut in any::<prop::sample::Index>(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        extra in vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = message.to_vec().unwrap();
        // Truncated.
        exercise(&bytes[..cut.index(bytes.len() + 1)]);
        // Oversized: trailing octets after the message.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        exercise(&longer);
        // Some octets changed (length fields, flags, IE types...).
        for (at, bits) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= bits;
        }
        exercise(&bytes);
    }
}

/// Runs every parser over `bytes` (as a message, as a body of every type, as IEs of every
/// type); only panics are failures.
fn exercise(bytes: &[u8]) {
    if let Ok(m) = Message::parse(bytes) {
        // What parses must emit and parse again to the same thing.
        let again = m.to_vec().unwrap();
        assert_eq!(Message::parse(&again).unwrap(), m);
    }
    if let Ok(p) = Packet::new_checked(bytes) {
        let _ = (p.seid(), p.sequence_number(), p.message_priority());
        let _ = p.ies().count();
    }
    for t in [1u8, 2, 5, 6, 7, 8, 9, 10, 50, 51, 52, 53, 54, 55, 56, 57] {
        let _ = Body::parse(t, bytes);
    }
    let _ = IeIter::new(bytes).count();
    let _ = FlowDescription::parse(bytes);
    let _ = CreatePdr::parse_value(bytes, 1);
    let _ = UsageReport::parse_value(bytes, 80);
    let _ = SdfFilter::parse_value(bytes, 23);
    let _ = OuterHeaderCreation::parse_value(bytes, 84);
    let _ = UeIpAddress::parse_value(bytes, 93);
    let _ = FTeid::parse_value(bytes, 21);
    let _ = NodeId::parse_value(bytes, 60).map(|n| n.fqdn());
}
