//! IPv4 / UDP / GTP-U headers on the data path: reading the fields the UPF needs (through
//! smoltcp's `wire` views) and writing the outer headers of what it sends.

use alloc::vec::Vec;
use core::net::Ipv4Addr;

use outpost_gtpu::{Message, MessageType, PduSessionInfo, Repr, emit_gpdu_header, gpdu_header_len};
use smoltcp::wire::{IpProtocol, Ipv4Packet, TcpPacket, UdpPacket};

/// The GTP-U UDP port.
pub const GTPU_PORT: u16 = 2152;
/// IPv4 and UDP header lengths of what we emit (no options).
pub const OUTER_LEN: usize = 28;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
/// TTL of the packets we originate.
const TTL: u8 = 64;

/// The IPv4 header fields the UPF looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Info {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    pub header_len: usize,
    /// The total length field (the packet may be followed by link padding).
    pub total_len: usize,
    /// More fragments follow, or this is not the first fragment.
    pub fragment: bool,
    /// Fragment offset 0 (the transport header is here).
    pub first_fragment: bool,
}

/// Reads an IPv4 header: version 4, header and total length consistent with the buffer.
pub(crate) fn ipv4(bytes: &[u8]) -> Option<Ipv4Info> {
    let p = Ipv4Packet::new_checked(bytes).ok()?;
    let header_len = usize::from(p.header_len());
    if p.version() != 4 || header_len < IPV4_LEN {
        return None;
    }
    Some(Ipv4Info {
        src: p.src_addr(),
        dst: p.dst_addr(),
        protocol: p.next_header().into(),
        tos: bytes[1],
        header_len,
        total_len: usize::from(p.total_len()),
        fragment: p.more_frags() || p.frag_offset() != 0,
        first_fragment: p.frag_offset() == 0,
    })
}

/// Source and destination ports of a TCP, UDP or SCTP packet (first fragment only).
pub(crate) fn ports(bytes: &[u8], ip: &Ipv4Info) -> Option<(u16, u16)> {
    if !ip.first_fragment {
        return None;
    }
    let l4 = bytes.get(ip.header_len..ip.total_len)?;
    match IpProtocol::from(ip.protocol) {
        IpProtocol::Udp => {
            let u = UdpPacket::new_checked(l4).ok()?;
            Some((u.src_port(), u.dst_port()))
        }
        IpProtocol::Tcp => {
            let t = TcpPacket::new_checked(l4).ok()?;
            Some((t.src_port(), t.dst_port()))
        }
        // SCTP (no smoltcp view): the common header starts with both ports.
        IpProtocol::Unknown(132) => {
            let p = l4.get(..4)?;
            Some((
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ))
        }
        _ => None,
    }
}

/// The UDP header of an IPv4 packet: (source port, destination port, payload).
pub(crate) fn udp<'a>(bytes: &'a [u8], ip: &Ipv4Info) -> Option<(u16, u16, &'a [u8])> {
    if ip.protocol != u8::from(IpProtocol::Udp) {
        return None;
    }
    let segment = bytes.get(ip.header_len..ip.total_len)?;
    let u = UdpPacket::new_checked(segment).ok()?;
    let len = usize::from(u.len());
    let payload = segment.get(UDP_LEN..len)?;
    Some((u.src_port(), u.dst_port(), payload))
}

/// Appends IPv4 (no options, DF, TTL 64, checksum filled) and UDP (checksum 0, which IPv4
/// allows) headers for a UDP payload of `payload_len` octets. False when the datagram would
/// not fit the IPv4 length field.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_outer(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    src_port: u16,
    dst_port: u16,
    payload_len: usize,
) -> bool {
    let Ok(total) = u16::try_from(OUTER_LEN + payload_len) else {
        return false;
    };
    let start = out.len();
    out.resize(start + OUTER_LEN, 0);
    let (ip, udp) = out[start..].split_at_mut(IPV4_LEN);
    let mut p = Ipv4Packet::new_unchecked(ip);
    p.set_version(4);
    p.set_header_len(IPV4_LEN as u8);
    p.set_dscp(tos >> 2);
    p.set_ecn(tos & 0x03);
    p.set_total_len(total);
    p.set_ident(0);
    p.clear_flags();
    p.set_dont_frag(true);
    p.set_frag_offset(0);
    p.set_hop_limit(TTL);
    p.set_next_header(IpProtocol::Udp);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.fill_checksum();
    let mut u = UdpPacket::new_unchecked(udp);
    u.set_src_port(src_port);
    u.set_dst_port(dst_port);
    u.set_len((UDP_LEN + payload_len) as u16);
    u.set_checksum(0);
    true
}

/// Appends a G-PDU carrying `inner` to `teid`@`dst` from `src` (GTP-U port to port), with a
/// PDU Session Container when `qfi` is (downlink, QFI). False when it would not fit.
pub(crate) fn push_gpdu(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    teid: u32,
    qfi: Option<(bool, u8)>,
    inner: &[u8],
) -> bool {
    let info = qfi.map(|(downlink, qfi)| {
        if downlink {
            PduSessionInfo::Downlink {
                qfi,
                rqi: false,
                ppi: None,
            }
        } else {
            PduSessionInfo::Uplink { qfi }
        }
    });
    let gtp_len = gpdu_header_len(info.as_ref());
    let start = out.len();
    if !push_outer(
        out,
        src,
        dst,
        tos,
        GTPU_PORT,
        GTPU_PORT,
        gtp_len + inner.len(),
    ) {
        return false;
    }
    let at = out.len();
    out.resize(at + gtp_len, 0);
    if emit_gpdu_header(&mut out[at..], teid, info.as_ref(), inner.len()).is_err() {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(inner);
    true
}

/// Appends a GTP-U signalling message (`header` gives TEID, sequence number and extension
/// headers) in IPv4/UDP from `src`:2152 to `dst`:`dst_port`.
pub(crate) fn push_gtpu_message(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    dst_port: u16,
    header: &Repr<'_>,
    message: &Message<'_>,
) -> bool {
    let mut header = *header;
    header.message_type = message.message_type();
    header.payload_len = message.buffer_len();
    let len = header.buffer_len();
    let start = out.len();
    if !push_outer(out, src, dst, 0, GTPU_PORT, dst_port, len) {
        return false;
    }
    let at = out.len();
    out.resize(at + len, 0);
    if message.emit_packet(&header, &mut out[at..]).is_err() {
        out.truncate(start);
        return false;
    }
    true
}

/// An End Marker to `teid`@`dst`, from `src`.
pub(crate) fn end_marker(src: Ipv4Addr, dst: Ipv4Addr, teid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(OUTER_LEN + 8);
    let header = Repr::new(MessageType::EndMarker, teid, 0);
    push_gtpu_message(&mut out, src, dst, GTPU_PORT, &header, &Message::EndMarker);
    out
}
