//! Interop against peers no one here wrote: scapy (`scapy.contrib.gtp`), pycrate
//! (`pycrate_mobile.TS29281_GTPU`) and Wireshark's dissector (tshark).
//!
//! - Packets built by scapy and pycrate parse here to what the library itself reads from them
//!   (header, extension chain with the PDU Session Container's QFI/RQI/PPI, IEs, T-PDU).
//! - Every message type we emit (with extension chains) decodes in scapy and pycrate to what
//!   we read from our own bytes.
//! - The same packets, in a capture on UDP 2152, dissect in tshark as GTP with no malformed
//!   packet or error-level expert info, and tshark's message type, TEID, sequence number, QFI
//!   and IE values match; G-PDUs show the inner IPv4/ICMP packet.
//!
//! Needs `scripts/pyenv.sh` (scapy, pycrate) and tshark; `scripts/test.sh` installs both.

mod support;

use std::net::{IpAddr, Ipv4Addr};

use outpost_gtpu::*;
use serde_json::{Value, json};
use support::{Datagram, assert_well_formed, find_field, run_script};

/// The T-PDU of the G-PDUs: an IPv4 ICMP echo request from 10.45.0.2 carrying "outpost".
const PING: [u8; 35] = [
    0x45, 0x00, 0x00, 0x23, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x46, 0x70, 0x0a, 0x2d, 0x00, 0x02,
    0xc6, 0x33, 0x64, 0x07, 0x08, 0x00, 0x30, 0x9e, 0x00, 0x07, 0x00, 0x01, 0x6f, 0x75, 0x74, 0x70,
    0x6f, 0x73, 0x74,
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// What we read from a packet: the same shape `gtpu_vectors.py` prints.
fn summary(bytes: &[u8]) -> Value {
    let (repr, message) =
        Message::parse_packet(bytes).unwrap_or_else(|e| panic!("{e}: {}", hex(bytes)));
    let packet = Packet::new_checked(bytes).unwrap();
    let exts: Vec<Value> = packet
        .extension_headers()
        .map(|h| {
            let h = h.unwrap();
            match ExtensionHeaderRepr::parse(&h).unwrap() {
                ExtensionHeaderRepr::PduSessionContainer(PduSessionInfo::Downlink {
                    qfi,
                    rqi,
                    ppi,
                }) => {
                    json!({"t": 133, "pdu_type": 0, "qfi": qfi, "rqi": u8::from(rqi), "ppi": ppi})
                }
                ExtensionHeaderRepr::PduSessionContainer(PduSessionInfo::Uplink { qfi }) => {
                    json!({"t": 133, "pdu_type": 1, "qfi": qfi, "rqi": null, "ppi": null})
                }
                ExtensionHeaderRepr::UdpPort(port) => json!({"t": 64, "port": port}),
                ExtensionHeaderRepr::PdcpPduNumber(n) => json!({"t": 192, "pdcp": n}),
                _ => json!({"t": h.kind, "hex": hex(h.content)}),
            }
        })
        .collect();
    let body = match message {
        Message::GPdu(tpdu) => json!({"tpdu": hex(tpdu)}),
        Message::EchoResponse { recovery } => json!({"recovery": recovery}),
        Message::ErrorIndication {
            teid_data_i,
            peer_address,
        } => json!({"teid_data_i": teid_data_i, "peer": peer_address.to_string()}),
        Message::SupportedExtensionHeadersNotification {
            extension_header_types,
        } => json!({"types": extension_header_types}),
        Message::EchoRequest | Message::EndMarker => json!({}),
    };
    json!({
        "type": u8::from(repr.message_type),
        "teid": repr.teid,
        "seq": repr.sequence_number,
        "npdu": repr.n_pdu_number,
        "exts": exts,
        "body": body,
    })
}

#[test]
fn packets_built_by_scapy_and_pycrate_parse_to_what_they_mean() {
    let vectors = run_script("gtpu_vectors.py", &["generate"], None);
    let vectors = vectors.as_array().expect("a list of vectors");
    assert!(vectors.len() >= 15, "{vectors:?}");
    for v in vectors {
        let name = format!(
            "{}/{}",
            v["lib"].as_str().unwrap(),
            v["name"].as_str().unwrap()
        );
        let bytes = unhex(v["hex"].as_str().unwrap());
        assert_eq!(summary(&bytes), v["summary"], "{name}");
        // What we parsed emits again to the same octets (all these chains are canonical).
        let (repr, message) = Message::parse_packet(&bytes).unwrap();
        let mut out = vec![0u8; bytes.len()];
        let n = message.emit_packet(&repr, &mut out).unwrap();
        assert_eq!(hex(&out[..n]), hex(&bytes), "{name}");
    }
}

fn header(kind: MessageType, teid: u32) -> Repr<'static> {
    Repr::new(kind, teid, 0)
}

fn with_extensions(
    mut repr: Repr<'static>,
    exts: &[ExtensionHeaderRepr<'static>],
) -> Repr<'static> {
    for e in exts {
        repr.extension_headers.push(*e).unwrap();
    }
    repr
}

/// Every message type, with the extension chains a UPF meets.
fn our_packets() -> Vec<(&'static str, Vec<u8>)> {
    let dl = ExtensionHeaderRepr::PduSessionContainer(PduSessionInfo::Downlink {
        qfi: 5,
        rqi: true,
        ppi: Some(3),
    });
    let ul = ExtensionHeaderRepr::PduSessionContainer(PduSessionInfo::Uplink { qfi: 9 });
    let mut seq = header(MessageType::GPdu, 0x1234);
    seq.sequence_number = Some(0xbeef);
    seq.n_pdu_number = Some(7);
    let mut echo = header(MessageType::EchoRequest, 0);
    echo.sequence_number = Some(17);
    let mut err = with_extensions(
        header(MessageType::ErrorIndication, 0),
        &[ExtensionHeaderRepr::UdpPort(2152)],
    );
    err.sequence_number = Some(3);
    let mut err6 = header(MessageType::ErrorIndication, 0);
    err6.sequence_number = Some(4);
    let mut sehn = header(MessageType::SupportedExtensionHeadersNotification, 0);
    sehn.sequence_number = Some(5);
    let messages: Vec<(&str, Repr, Message)> = vec![
        (
            "gpdu",
            header(MessageType::GPdu, 0x1234),
            Message::GPdu(&PING),
        ),
        ("gpdu_sequence_and_npdu", seq, Message::GPdu(&PING)),
        (
            "gpdu_downlink_qfi_rqi_ppi",
            with_extensions(header(MessageType::GPdu, 0xdead_beef), &[dl]),
            Message::GPdu(&PING),
        ),
        (
            "gpdu_uplink_qfi",
            with_extensions(header(MessageType::GPdu, 1), &[ul]),
            Message::GPdu(&PING),
        ),
        (
            "gpdu_pdcp_then_pdu_session_container",
            with_extensions(
                header(MessageType::GPdu, 2),
                &[ExtensionHeaderRepr::PdcpPduNumber(0x1234), ul],
            ),
            Message::GPdu(&PING),
        ),
        ("echo_request", echo, Message::EchoRequest),
        ("echo_response", echo, Message::EchoResponse { recovery: 0 }),
        (
            "error_indication_udp_port",
            err,
            Message::ErrorIndication {
                teid_data_i: 0x0102_0304,
                peer_address: IpAddr::V4(Ipv4Addr::new(10, 45, 0, 1)),
            },
        ),
        (
            "error_indication_ipv6",
            err6,
            Message::ErrorIndication {
                teid_data_i: 0x0a0b_0c0d,
                peer_address: "2001:db8::1".parse().unwrap(),
            },
        ),
        (
            "end_marker",
            header(MessageType::EndMarker, 0x1234),
            Message::EndMarker,
        ),
        (
            "supported_extension_headers_notification",
            sehn,
            Message::SupportedExtensionHeadersNotification {
                extension_header_types: &[0x40, 0x85],
            },
        ),
    ];
    let mut out: Vec<(&str, Vec<u8>)> = messages
        .into_iter()
        .map(|(name, repr, message)| {
            let mut buf = vec![0u8; 256];
            let n = message.emit_packet(&repr, &mut buf).unwrap();
            buf.truncate(n);
            (name, buf)
        })
        .collect();
    // The UPF's fast path: a header written in front of a payload already in place.
    let info = PduSessionInfo::Downlink {
        qfi: 1,
        rqi: false,
        ppi: None,
    };
    let hlen = gpdu_header_len(Some(&info));
    let mut fast = vec![0u8; hlen + PING.len()];
    fast[hlen..].copy_from_slice(&PING);
    emit_gpdu_header(&mut fast, 0x0055_aa00, Some(&info), PING.len()).unwrap();
    out.push(("gpdu_fast_path_header", fast));
    out
}

/// Packets scapy 2.8.0 cannot decode, and why (they are checked against pycrate and tshark).
const SCAPY_CANNOT: &[(&str, &str)] = &[
    (
        "gpdu_pdcp_then_pdu_session_container",
        "scapy binds no layer after a PDCP PDU Number extension header",
    ),
    (
        "supported_extension_headers_notification",
        "scapy gives IE 141 a 2-octet length; TS 29.281 8.5 (pycrate, Wireshark) one octet",
    ),
];

/// Packets pycrate 0.8.1 misreads, and why: for them only the header and body are compared.
const PYCRATE_MISREADS_EXTENSIONS: &[(&str, &str)] = &[(
    "gpdu_pdcp_then_pdu_session_container",
    "pycrate decodes a chain of two extension headers as two copies of the last one",
)];

#[test]
fn every_packet_we_emit_decodes_in_scapy_and_pycrate() {
    let packets = our_packets();
    let input: Vec<Value> = packets
        .iter()
        .map(|(name, b)| json!({"name": name, "hex": hex(b)}))
        .collect();
    let decoded = run_script("gtpu_vectors.py", &["decode"], Some(&Value::Array(input)));
    let decoded = decoded.as_array().expect("one result per packet");
    assert_eq!(decoded.len(), packets.len());
    for ((name, bytes), d) in packets.iter().zip(decoded) {
        let ours = summary(bytes);
        for lib in ["scapy", "pycrate"] {
            if lib == "scapy" && SCAPY_CANNOT.iter().any(|(n, _)| n == name) {
                continue;
            }
            let r = &d[lib];
            assert!(r.get("error").is_none(), "{lib} cannot decode {name}: {r}");
            let mut theirs = r["summary"].clone();
            let mut ours = ours.clone();
            if lib == "pycrate" && PYCRATE_MISREADS_EXTENSIONS.iter().any(|(n, _)| n == name) {
                theirs["exts"] = Value::Null;
                ours["exts"] = Value::Null;
            }
            assert_eq!(theirs, ours, "{lib} reads {name} differently");
        }
    }
}

#[test]
fn every_packet_we_emit_dissects_cleanly_in_tshark() {
    let packets = our_packets();
    let (gnb, upf) = (Ipv4Addr::new(192, 168, 1, 5), Ipv4Addr::new(192, 168, 1, 1));
    let datagrams: Vec<Datagram> = packets
        .iter()
        .map(|(_, b)| Datagram {
            src: (upf, 2152),
            dst: (gnb, 2152),
            payload: b,
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gtpu.pcap");
    if let Some(keep) = std::env::var_os("OUTPOST_KEEP_PCAP") {
        support::write_pcap(std::path::Path::new(&keep), &datagrams);
    }
    support::write_pcap(&path, &datagrams);
    let frames = support::tshark_layers(&path);
    assert_eq!(frames.len(), packets.len());
    let num = |v: Option<&Value>| -> u64 {
        let s = v
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no field: {v:?}"));
        match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).unwrap(),
            None => s.parse().unwrap(),
        }
    };
    for ((name, bytes), layers) in packets.iter().zip(&frames) {
        let gtp = layers
            .get("gtp")
            .unwrap_or_else(|| panic!("{name}: not dissected as GTP: {layers:#}"));
        assert_well_formed(name, layers);
        let (repr, message) = Message::parse_packet(bytes).unwrap();
        assert_eq!(
            num(gtp.get("gtp.message")),
            u64::from(u8::from(repr.message_type)),
            "{name}"
        );
        assert_eq!(num(gtp.get("gtp.teid")), u64::from(repr.teid), "{name}");
        assert_eq!(num(gtp.get("gtp.length")), bytes.len() as u64 - 8, "{name}");
        if let Some(npdu) = repr.n_pdu_number {
            assert_eq!(
                num(find_field(gtp, "gtp.npdu_number")),
                u64::from(npdu),
                "{name}"
            );
        }
        if let Some(seq) = repr.sequence_number {
            assert_eq!(
                num(find_field(gtp, "gtp.seq_number")),
                u64::from(seq),
                "{name}"
            );
        }
        if let Some(info) = repr.extension_headers.pdu_session_info() {
            assert_eq!(
                num(find_field(gtp, "gtp.ext_hdr.pdu_ses_con.qos_flow_id")),
                u64::from(info.qfi()),
                "{name}"
            );
        }
        match message {
            Message::GPdu(_) => {
                // The inner packet is dissected: two IPv4 layers, ICMP inside.
                assert!(
                    layers.get("icmp").is_some(),
                    "{name}: no inner ICMP: {layers:#}"
                );
            }
            Message::EchoResponse { recovery } => {
                assert_eq!(
                    num(find_field(gtp, "gtp.recovery")),
                    u64::from(recovery),
                    "{name}"
                );
            }
            Message::ErrorIndication {
                teid_data_i,
                peer_address,
            } => {
                assert_eq!(
                    num(find_field(gtp, "gtp.teid_data")),
                    u64::from(teid_data_i),
                    "{name}"
                );
                let field = if peer_address.is_ipv4() {
                    "gtp.gsn_ipv4"
                } else {
                    "gtp.gsn_ipv6"
                };
                assert_eq!(
                    find_field(gtp, field).and_then(Value::as_str),
                    Some(peer_address.to_string().as_str()),
                    "{name}: {gtp:#}"
                );
            }
            Message::SupportedExtensionHeadersNotification {
                extension_header_types,
            } => {
                // tshark repeats the gtp.ext_hdr_type key; serde_json keeps the last one.
                assert_eq!(
                    num(find_field(gtp, "gtp.num_ext_hdr_types")),
                    extension_header_types.len() as u64,
                    "{name}: {gtp:#}"
                );
                assert_eq!(
                    num(find_field(gtp, "gtp.ext_hdr_type")),
                    u64::from(*extension_header_types.last().unwrap()),
                    "{name}: {gtp:#}"
                );
            }
            Message::EchoRequest | Message::EndMarker => {}
        }
    }
    let downlink = &frames[2]["gtp"];
    assert_eq!(
        num(find_field(downlink, "gtp.ext_hdr.pdu_ses_con.pdu_type")),
        0
    );
    assert_eq!(num(find_field(downlink, "gtp.ext_hdr.pdu_ses_cont.rqi")), 1);
    assert_eq!(num(find_field(downlink, "gtp.ext_hdr.pdu_ses_cont.ppi")), 3);
    let udp_port = &frames[7]["gtp"];
    assert_eq!(num(find_field(udp_port, "gtp.ext_hdr.udp_port")), 2152);
}
