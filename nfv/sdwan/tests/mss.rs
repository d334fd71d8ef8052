//! TCP MSS clamping on a hand-built IPv4 SYN, checked against an independent checksum.

use outpost_sdwan::overlay::mtu::{MssClamp, OuterFamily, clamp_mss_ipv4, inner_mtu, mss_for_ipv4};
use proptest::prelude::*;

/// Plain ones'-complement sum over the pseudo-header and the whole segment, written from
/// RFC 793 independently of the crate's incremental update.
fn tcp_checksum(packet: &[u8]) -> u16 {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let segment = &packet[ihl..total];
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&packet[12..20]); // src, dst
    bytes.push(0);
    bytes.push(6);
    bytes.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    bytes.extend_from_slice(segment);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 + TCP SYN with options MSS, NOP, window scale, SACK-permitted, NOP, NOP; 3 bytes data.
fn syn(mss: u16, flags: u8) -> Vec<u8> {
    let options = [2, 4, (mss >> 8) as u8, mss as u8, 1, 3, 3, 7, 4, 2, 1, 1];
    let tcp_len = 20 + options.len() + 3;
    let total = (20 + tcp_len) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[192, 168, 1, 10]);
    p.extend_from_slice(&[203, 0, 113, 7]);
    p.extend_from_slice(&51_000u16.to_be_bytes());
    p.extend_from_slice(&443u16.to_be_bytes());
    p.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // seq
    p.extend_from_slice(&0u32.to_be_bytes()); // ack
    p.push((((20 + options.len()) / 4) << 4) as u8);
    p.push(flags);
    p.extend_from_slice(&64_240u16.to_be_bytes()); // window
    p.extend_from_slice(&[0, 0]); // checksum
    p.extend_from_slice(&[0, 0]); // urgent
    p.extend_from_slice(&options);
    p.extend_from_slice(b"abc");
    let sum = tcp_checksum(&p);
    p[36..38].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(tcp_checksum(&p), 0, "fixture checksum verifies");
    p
}

#[test]
fn a_syn_mss_is_clamped_to_the_overlay_and_the_checksum_stays_valid() {
    let limit = mss_for_ipv4(inner_mtu(1500, OuterFamily::V4));
    assert_eq!(limit, 1400);
    let mut p = syn(1460, 0x02);
    let original = p.clone();
    assert_eq!(
        clamp_mss_ipv4(&mut p, limit),
        Ok(MssClamp::Clamped {
            from: 1460,
            to: 1400
        })
    );
    assert_eq!(u16::from_be_bytes([p[42], p[43]]), 1400);
    assert_eq!(
        tcp_checksum(&p),
        0,
        "checksum must verify after the rewrite"
    );
    // Nothing else changed.
    let diff: Vec<usize> = (0..p.len()).filter(|i| p[*i] != original[*i]).collect();
    assert!(
        diff.iter()
            .all(|i| (36..38).contains(i) || (42..44).contains(i)),
        "{diff:?}"
    );
}

#[test]
fn a_syn_ack_is_clamped_too_but_small_mss_and_non_syn_segments_are_left_alone() {
    let mut p = syn(8960, 0x12);
    assert_eq!(
        clamp_mss_ipv4(&mut p, 1360),
        Ok(MssClamp::Clamped {
            from: 8960,
            to: 1360
        })
    );
    assert_eq!(tcp_checksum(&p), 0);

    let mut small = syn(1200, 0x02);
    let before = small.clone();
    assert_eq!(
        clamp_mss_ipv4(&mut small, 1400),
        Ok(MssClamp::Unchanged(1200))
    );
    assert_eq!(small, before);

    let mut ack = syn(1460, 0x10);
    let before = ack.clone();
    assert_eq!(clamp_mss_ipv4(&mut ack, 1400), Ok(MssClamp::NotApplicable));
    assert_eq!(ack, before);
}

#[test]
fn truncated_packets_are_refused_without_change() {
    let p = syn(1460, 0x02);
    for cut in [0, 5, 19, 30, 41] {
        let mut short = p[..cut].to_vec();
        let before = short.clone();
        assert!(clamp_mss_ipv4(&mut short, 1400).is_err(), "cut at {cut}");
        assert_eq!(short, before);
    }
}

proptest! {
    #[test]
    fn clamping_arbitrary_bytes_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = clamp_mss_ipv4(&mut bytes, 1400);
    }

    #[test]
    fn clamping_mutated_syns_never_panics(flips in proptest::collection::vec((0usize..60, any::<u8>()), 1..6)) {
        let mut p = syn(1460, 0x02);
        for (at, v) in flips {
            if let Some(b) = p.get_mut(at) {
                *b = v;
            }
        }
        let _ = clamp_mss_ipv4(&mut p, 1400);
    }
}
