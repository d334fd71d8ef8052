//! Traffic classification: DSCP, 5-tuple rules, TLS SNI and HTTP/1 Host.
//!
//! The parsers take arbitrary bytes (they read untrusted packets) and never panic: every read is
//! bounds-checked and anything unexpected yields `None`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::FlowKey;

/// What a classifier needs to know about a packet.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo<'a> {
    /// The flow's 5-tuple.
    pub key: FlowKey,
    /// DSCP (upper six bits of the IPv4 TOS / IPv6 traffic class).
    pub dscp: u8,
    /// Transport payload (after the TCP/UDP header); empty when unknown.
    pub payload: &'a [u8],
}

/// Parses an IPv4 or IPv6 packet into its 5-tuple, DSCP and transport payload.
///
/// Only TCP and UDP get ports and payload; other protocols get zero ports and an empty payload.
/// IPv6 extension headers are not walked (the next header must be TCP or UDP directly).
pub fn parse_ip(packet: &[u8]) -> Option<PacketInfo<'_>> {
    let version = packet.first()? >> 4;
    let (src, dst, proto, dscp, l4) = match version {
        4 => {
            let ihl = usize::from(packet.first()? & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
            let end = total.min(packet.len());
            let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
            let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
            let l4 = if frag == 0 {
                packet.get(ihl..end).unwrap_or(&[])
            } else {
                &[]
            };
            (
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                *packet.get(9)?,
                packet.get(1)? >> 2,
                l4,
            )
        }
        6 => {
            let tc = ((packet.first()? & 0x0f) << 4) | (packet.get(1)? >> 4);
            let plen = usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]));
            let src: [u8; 16] = packet.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = packet.get(24..40)?.try_into().ok()?;
            let end = (40 + plen).min(packet.len());
            (
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                *packet.get(6)?,
                tc >> 2,
                packet.get(40..end).unwrap_or(&[]),
            )
        }
        _ => return None,
    };
    let (src_port, dst_port, payload) = match proto {
        6 => {
            let sp = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            let dp = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
            let off = usize::from(l4.get(12)? >> 4) * 4;
            (sp, dp, l4.get(off..).unwrap_or(&[]))
        }
        17 => {
            let sp = u16::from_be_bytes([*l4.first()?, *l4.get(1)?]);
            let dp = u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]);
            (sp, dp, l4.get(8..).unwrap_or(&[]))
        }
        _ => (0, 0, &[][..]),
    };
    Some(PacketInfo {
        key: FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            proto,
        },
        dscp,
        payload,
    })
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn be24(b: &[u8], at: usize) -> Option<usize> {
    Some(
        (usize::from(*b.get(at)?) << 16)
            | (usize::from(*b.get(at + 1)?) << 8)
            | usize::from(*b.get(at + 2)?),
    )
}

/// Extracts the SNI host name from a TLS ClientHello at the start of a TCP payload.
///
/// Only the first TLS record is read, so a ClientHello split across segments yields `None`.
pub fn parse_tls_sni(payload: &[u8]) -> Option<&str> {
    // TLS record header: type 22 (handshake), version, length.
    if *payload.first()? != 22 {
        return None;
    }
    let rec_len = be16(payload, 3)?;
    let record = payload.get(5..5 + rec_len).or_else(|| payload.get(5..))?;
    // Handshake header: type 1 (ClientHello), 24-bit length.
    if *record.first()? != 1 {
        return None;
    }
    let hs_len = be24(record, 1)?;
    let hello = record.get(4..(4 + hs_len).min(record.len()))?;
    // client_version(2) random(32)
    let mut at = 34;
    let sid_len = usize::from(*hello.get(at)?);
    at += 1 + sid_len;
    let cs_len = be16(hello, at)?;
    at += 2 + cs_len;
    let cm_len = usize::from(*hello.get(at)?);
    at += 1 + cm_len;
    let ext_total = be16(hello, at)?;
    at += 2;
    let exts = hello.get(at..(at + ext_total).min(hello.len()))?;
    let mut i = 0;
    while i + 4 <= exts.len() {
        let ty = be16(exts, i)?;
        let len = be16(exts, i + 2)?;
        let body = exts.get(i + 4..i + 4 + len)?;
        if ty == 0 {
            // server_name_list: length(2), then entries: type(1) length(2) name.
            let list_len = be16(body, 0)?;
            let list = body.get(2..(2 + list_len).min(body.len()))?;
            let mut j = 0;
            while j + 3 <= list.len() {
                let name_type = *list.get(j)?;
                let name_len = be16(list, j + 1)?;
                let name = list.get(j + 3..j + 3 + name_len)?;
                if name_type == 0 {
                    return valid_host(name);
                }
                j += 3 + name_len;
            }
            return None;
        }
        i += 4 + len;
    }
    None
}

/// Extracts the Host header from an HTTP/1.x request at the start of a TCP payload (port and
/// surrounding whitespace removed).
pub fn parse_http_host(payload: &[u8]) -> Option<&str> {
    // Request line must look like "METHOD SP target SP HTTP/1.x".
    let line_end = find_crlf(payload)?;
    let line = payload.get(..line_end)?;
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next()?;
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let _target = parts.next()?;
    if !parts.next()?.starts_with(b"HTTP/1.") {
        return None;
    }
    let mut rest = payload.get(line_end + 2..)?;
    loop {
        let end = find_crlf(rest)?;
        if end == 0 {
            return None; // end of headers
        }
        let header = rest.get(..end)?;
        if let Some(colon) = header.iter().position(|b| *b == b':') {
            let (name, value) = header.split_at(colon);
            if name.eq_ignore_ascii_case(b"host") {
                let value = value.get(1..)?.trim_ascii();
                let host = match value.first() {
                    // IPv6 literal: keep the brackets' contents.
                    Some(b'[') => {
                        let close = value.iter().position(|b| *b == b']')?;
                        value.get(1..close)?
                    }
                    _ => match value.iter().position(|b| *b == b':') {
                        Some(p) => value.get(..p)?,
                        None => value,
                    },
                };
                return valid_host(host);
            }
        }
        rest = rest.get(end + 2..)?;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn valid_host(name: &[u8]) -> Option<&str> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    if !name
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
    {
        return None;
    }
    std::str::from_utf8(name).ok()
}

/// Whether `host` equals `domain` or is a subdomain of it (ASCII case-insensitive).
pub fn host_matches(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    if host.eq_ignore_ascii_case(domain) {
        return true;
    }
    host.len() > domain.len()
        && host
            .get(host.len() - domain.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(domain))
        && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.')
}

/// One way a rule can match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Match {
    /// Any of these DSCP values.
    Dscp(Vec<u8>),
    /// 5-tuple fields; `None` matches anything.
    Tuple {
        /// IP protocol.
        proto: Option<u8>,
        /// Destination port range.
        dst_ports: Option<RangeInclusive<u16>>,
        /// Source port range.
        src_ports: Option<RangeInclusive<u16>>,
    },
    /// TLS SNI equal to or under one of these domains.
    Sni(Vec<String>),
    /// HTTP Host equal to or under one of these domains.
    HttpHost(Vec<String>),
}

impl Match {
    /// Whether this matcher accepts the packet.
    pub fn matches(&self, p: &PacketInfo<'_>) -> bool {
        match self {
            Match::Dscp(values) => values.contains(&p.dscp),
            Match::Tuple {
                proto,
                dst_ports,
                src_ports,
            } => {
                proto.is_none_or(|x| x == p.key.proto)
                    && dst_ports
                        .as_ref()
                        .is_none_or(|r| r.contains(&p.key.dst_port))
                    && src_ports
                        .as_ref()
                        .is_none_or(|r| r.contains(&p.key.src_port))
            }
            Match::Sni(domains) => {
                p.key.proto == 6
                    && parse_tls_sni(p.payload)
                        .is_some_and(|h| domains.iter().any(|d| host_matches(h, d)))
            }
            Match::HttpHost(domains) => {
                p.key.proto == 6
                    && parse_http_host(p.payload)
                        .is_some_and(|h| domains.iter().any(|d| host_matches(h, d)))
            }
        }
    }
}

/// A rule: if `matcher` accepts, the packet is in `class`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Class name.
    pub class: String,
    /// Condition.
    pub matcher: Match,
}

/// Ordered rules with a default class; the first matching rule wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classifier {
    /// Rules, in order.
    pub rules: Vec<Rule>,
    /// Class for packets no rule matches.
    pub default_class: String,
}

impl Classifier {
    /// Class of a packet.
    pub fn classify(&self, p: &PacketInfo<'_>) -> &str {
        self.rules
            .iter()
            .find(|r| r.matcher.matches(p))
            .map_or(self.default_class.as_str(), |r| r.class.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal but well-formed TLS 1.2 ClientHello carrying `host` in the SNI extension.
    pub(crate) fn client_hello(host: &str) -> Vec<u8> {
        let name = host.as_bytes();
        let mut sni = Vec::new();
        sni.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        let mut exts = Vec::new();
        // An unrelated extension first (supported_groups).
        exts.extend_from_slice(&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]);
        exts.extend_from_slice(&[0x00, 0x00]);
        exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni);
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[7u8; 32]);
        hello.push(0); // session id
        hello.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        hello.extend_from_slice(&[0x01, 0x00]); // null compression
        hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        hello.extend_from_slice(&exts);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn the_sni_of_a_client_hello_is_found() {
        let hello = client_hello("video.example.com");
        assert_eq!(parse_tls_sni(&hello), Some("video.example.com"));
        assert_eq!(parse_tls_sni(&hello[..hello.len() - 3]), None);
    }

    #[test]
    fn the_http_host_is_found_without_its_port() {
        let req = b"GET /x HTTP/1.1\r\nUser-Agent: t\r\nHOST:  Example.org:8080 \r\n\r\n";
        assert_eq!(parse_http_host(req), Some("Example.org"));
        assert_eq!(parse_http_host(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse_http_host(b"\x16\x03\x01garbage"), None);
    }

    #[test]
    fn domains_match_themselves_and_subdomains_only() {
        assert!(host_matches("a.example.com", "example.com"));
        assert!(host_matches("EXAMPLE.com", "example.com"));
        assert!(!host_matches("badexample.com", "example.com"));
    }

    #[test]
    fn rules_classify_by_dscp_ports_and_sni() {
        let c = Classifier {
            rules: vec![
                Rule {
                    class: "voice".into(),
                    matcher: Match::Dscp(vec![46]),
                },
                Rule {
                    class: "video".into(),
                    matcher: Match::Sni(vec!["video.example.com".into()]),
                },
                Rule {
                    class: "dns".into(),
                    matcher: Match::Tuple {
                        proto: Some(17),
                        dst_ports: Some(53..=53),
                        src_ports: None,
                    },
                },
            ],
            default_class: "bulk".into(),
        };
        let key = |proto, dport| FlowKey {
            src: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
            src_port: 5555,
            dst_port: dport,
            proto,
        };
        let hello = client_hello("cdn.video.example.com");
        let p = |proto, dport, dscp, payload| PacketInfo {
            key: key(proto, dport),
            dscp,
            payload,
        };
        assert_eq!(c.classify(&p(17, 5004, 46, &[])), "voice");
        assert_eq!(c.classify(&p(6, 443, 0, &hello)), "video");
        assert_eq!(c.classify(&p(17, 53, 0, &[])), "dns");
        assert_eq!(c.classify(&p(6, 80, 0, &[])), "bulk");
    }

    #[test]
    fn an_ipv4_udp_packet_parses_into_its_five_tuple() {
        let mut pkt = vec![
            0x45, 0xb8, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        pkt.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
        let info = parse_ip(&pkt).expect("parses");
        assert_eq!(info.dscp, 46);
        assert_eq!(info.key.proto, 17);
        assert_eq!((info.key.src_port, info.key.dst_port), (5000, 53));
        assert_eq!(info.payload, &[1, 2, 3, 4]);
    }

    proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_tls_sni(&bytes);
            let _ = parse_http_host(&bytes);
            let _ = parse_ip(&bytes);
        }

        #[test]
        fn parsers_never_panic_on_mutated_client_hellos(
            cut in 0usize..200,
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..8),
        ) {
            let mut hello = client_hello("a.example.net");
            for (at, v) in flips {
                if let Some(b) = hello.get_mut(at) {
                    *b = v;
                }
            }
            hello.truncate(cut.min(hello.len()));
            let _ = parse_tls_sni(&hello);
        }

        #[test]
        fn parsers_never_panic_on_mutated_http_requests(
            flips in proptest::collection::vec((0usize..60, any::<u8>()), 0..8),
            cut in 0usize..60,
        ) {
            let mut req = b"GET / HTTP/1.1\r\nHost: [::1]:80\r\nX: y\r\n\r\n".to_vec();
            for (at, v) in flips {
                if let Some(b) = req.get_mut(at) {
                    *b = v;
                }
            }
            req.truncate(cut.min(req.len()));
            let _ = parse_http_host(&req);
        }
    }
}
