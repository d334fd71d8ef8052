//! Any bytes as a PFCP message: parsing never panics, and what parses emits to bytes that parse
//! back to the same message (and emit to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_pfcp::{Body, FlowDescription, IeIter, Message, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let bytes = message.to_vec().expect("a parsed message emits");
        let again = Message::parse(&bytes).expect("what we emit parses");
        assert_eq!(again, message);
        assert_eq!(again.to_vec().expect("emits again"), bytes);
    }
    if let Ok(packet) = Packet::new_checked(data) {
        let _ = (
            packet.seid(),
            packet.sequence_number(),
            packet.message_priority(),
        );
        let _ = packet.ies().count();
    }
    // The same bytes as the IEs of every message type.
    if let Some((&kind, ies)) = data.split_first() {
        let _ = Body::parse(kind, ies);
    }
    let _ = IeIter::new(data).count();
    let _ = FlowDescription::parse(data);
});
