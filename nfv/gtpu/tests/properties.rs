//! Property tests: parse ∘ emit is the identity on headers with extension chains and on
//! messages, and no input makes the parsers panic.

use outpost_gtpu::{
    ExtensionHeaderRepr, ExtensionHeaders, MAX_EXTENSION_HEADERS, Message, MessageType, Packet,
    PduSessionInfo, Repr,
};
use proptest::prelude::*;
use std::net::IpAddr;

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn pdu_session_info() -> impl Strategy<Value = PduSessionInfo> {
    prop_oneof![
        (0u8..64, any::<bool>(), proptest::option::of(0u8..8))
            .prop_map(|(qfi, rqi, ppi)| PduSessionInfo::Downlink { qfi, rqi, ppi }),
        (0u8..64).prop_map(|qfi| PduSessionInfo::Uplink { qfi }),
    ]
}

fn extension_header() -> impl Strategy<Value = ExtensionHeaderRepr<'static>> {
    // Types with a typed representation are excluded from `Other`.
    let other_kind = any::<u8>().prop_filter("typed kinds", |k| {
        ![0x00, 0x20, 0x40, 0x82, 0x85, 0xc0].contains(k)
    });
    prop_oneof![
        pdu_session_info().prop_map(ExtensionHeaderRepr::PduSessionContainer),
        any::<u16>().prop_map(ExtensionHeaderRepr::UdpPort),
        any::<u16>().prop_map(ExtensionHeaderRepr::PdcpPduNumber),
        (0u32..1 << 18).prop_map(ExtensionHeaderRepr::LongPdcpPduNumber),
        any::<u8>().prop_map(ExtensionHeaderRepr::ServiceClassIndicator),
        (other_kind, 0usize..4).prop_flat_map(|(kind, units)| {
            proptest::collection::vec(any::<u8>(), units * 4 + 2).prop_map(move |content| {
                ExtensionHeaderRepr::Other {
                    kind,
                    content: leak(content),
                }
            })
        }),
    ]
}

fn header(payload_len: usize) -> impl Strategy<Value = Repr<'static>> {
    (
        any::<u8>(),
        any::<u32>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u8>()),
        proptest::collection::vec(extension_header(), 0..=MAX_EXTENSION_HEADERS),
    )
        .prop_map(move |(kind, teid, seq, npdu, exts)| {
            let mut extension_headers = ExtensionHeaders::new();
            for e in exts {
                extension_headers.push(e).unwrap();
            }
            Repr {
                message_type: MessageType::from(kind),
                teid,
                sequence_number: seq,
                n_pdu_number: npdu,
                extension_headers,
                payload_len,
            }
        })
}

fn message() -> impl Strategy<Value = Message<'static>> {
    let addr = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    prop_oneof![
        Just(Message::EchoRequest),
        any::<u8>().prop_map(|recovery| Message::EchoResponse { recovery }),
        (any::<u32>(), addr).prop_map(|(teid_data_i, peer_address)| Message::ErrorIndication {
            teid_data_i,
            peer_address
        }),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(|v| {
            Message::SupportedExtensionHeadersNotification {
                extension_header_types: leak(v),
            }
        }),
        Just(Message::EndMarker),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| Message::GPdu(leak(v))),
    ]
}

proptest! {
    #[test]
    fn header_parse_of_emit_is_the_identity(
        repr in (0usize..64).prop_flat_map(header)
    ) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        let packet = Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(packet.header_len(), repr.header_len());
        let parsed = Repr::parse(&packet).unwrap();
        prop_assert_eq!(parsed, repr);
    }

    #[test]
    fn message_parse_of_emit_is_the_identity(
        message in message(),
        header in header(0),
    ) {
        let mut buf = vec![0u8; 16 + 8 * 16 + 128];
        let n = message.emit_packet(&header, &mut buf).unwrap();
        let (repr, parsed) = Message::parse_packet(&buf[..n]).unwrap();
        prop_assert_eq!(parsed, message);
        prop_assert_eq!(repr.teid, header.teid);
        prop_assert_eq!(repr.extension_headers, header.extension_headers);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        exercise(&bytes);
    }

    #[test]
    fn damaged_packets_never_panic(
        message in message(),
        header in header(0),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bits in any::<u8>(),
        extra in 0usize..16,
    ) {
        let mut buf = vec![0u8; 16 + 8 * 16 + 128];
        let n = message.emit_packet(&header, &mut buf).unwrap();
        let mut bytes = buf[..n].to_vec();
        // Truncated.
        exercise(&bytes[..cut.index(n + 1)]);
        // Oversized: trailing octets after what the length field says.
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0xa5, extra));
        exercise(&longer);
        // One octet changed (length fields, next-type fields, IE types...).
        let i = flip.index(n);
        bytes[i] ^= bits;
        exercise(&bytes);
    }
}

/// Runs every parser and getter over `bytes`; only panics are failures.
fn exercise(bytes: &[u8]) {
    let _ = Message::parse_packet(bytes);
    if let Ok(packet) = Packet::new_checked(bytes) {
        let _ = (
            packet.teid(),
            packet.sequence_number(),
            packet.n_pdu_number(),
            packet.header_len(),
            packet.payload().len(),
            packet.pdu_session_info(),
        );
        for h in packet.extension_headers().flatten() {
            let _ = ExtensionHeaderRepr::parse(&h);
        }
        if let Ok(repr) = Repr::parse(&packet) {
            let _ = Message::parse(repr.message_type, packet.payload());
        }
    }
    for kind in [1u8, 2, 26, 31, 254, 255] {
        let _ = Message::parse(MessageType::from(kind), bytes);
    }
    let _ = PduSessionInfo::parse(bytes);
}
