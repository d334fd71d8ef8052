//! Any bytes as a GTP-U packet: parsing never panics, and what parses emits to bytes that parse
//! back to the same header and message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_gtpu::{ExtensionHeaderRepr, Message, Packet, PduSessionInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok((repr, message)) = Message::parse_packet(data) {
        let mut buf = vec![0u8; repr.header_len() + message.buffer_len()];
        let n = message
            .emit_packet(&repr, &mut buf)
            .expect("a parsed packet emits");
        let (repr2, message2) = Message::parse_packet(&buf[..n]).expect("what we emit parses");
        assert_eq!(message2, message);
        // Skipped IEs (Private Extension) change the payload length, nothing else.
        assert_eq!(repr2.message_type, repr.message_type);
        assert_eq!(repr2.teid, repr.teid);
        assert_eq!(repr2.sequence_number, repr.sequence_number);
        assert_eq!(repr2.n_pdu_number, repr.n_pdu_number);
        assert_eq!(repr2.extension_headers, repr.extension_headers);
    }
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (packet.teid(), packet.header_len(), packet.payload().len());
        let _ = packet.pdu_session_info();
        for header in packet.extension_headers().flatten() {
            let _ = ExtensionHeaderRepr::parse(&header);
        }
    }
    let _ = PduSessionInfo::parse(data);
});
