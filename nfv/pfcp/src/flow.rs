//! The IPFilterRule subset that SDF filter flow descriptions use (TS 29.244 clause 8.2.5,
//! TS 29.212 clause 5.4.2, RFC 6733 clause 4.3):
//!
//! `permit out <proto> from <src> [<ports>] to <dst> [<ports>]`
//!
//! where `<proto>` is `ip` or a number (`tcp`, `udp`, `icmp` accepted too), an address is
//! `any`, `assigned` (the UE's address) or `a.b.c.d[/len]` / IPv6 `addr[/len]`, and ports are
//! a comma-separated list of `port` or `low-high`. Options after the destination are rejected.

use alloc::vec::Vec;
use core::fmt;
use core::net::IpAddr;

use crate::{Error, Result};

/// `permit` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Matching packets are let through.
    Permit,
    /// Matching packets are dropped.
    Deny,
}

/// `in` or `out`: 29.244 flow descriptions use `out` (the rule is written for downlink, from
/// the network to the UE, and applied swapped to uplink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `in`.
    In,
    /// `out`.
    Out,
}

/// The address part of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// `any`.
    Any,
    /// `assigned`: the UE's own address.
    Assigned,
    /// An address with a prefix length (32/128 when none is written).
    Prefix {
        /// Address.
        address: IpAddr,
        /// Prefix length.
        len: u8,
    },
}

impl Address {
    /// Whether `ip` matches, `ue` being the address `assigned` stands for.
    pub fn contains(&self, ip: IpAddr, ue: Option<IpAddr>) -> bool {
        match *self {
            Address::Any => true,
            Address::Assigned => ue == Some(ip),
            Address::Prefix { address, len } => match (address, ip) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                    u32::from(a) & mask == u32::from(b) & mask
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                    u128::from(a) & mask == u128::from(b) & mask
                }
                _ => false,
            },
        }
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port.
    pub end: u16,
}

impl PortRange {
    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

/// One side of a rule: an address and the ports (empty: any port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Address.
    pub address: Address,
    /// Port ranges; empty means any port.
    pub ports: Vec<PortRange>,
}

impl Endpoint {
    /// Whether a packet's address and port (if the protocol has ports) match.
    pub fn matches(&self, ip: IpAddr, port: Option<u16>, ue: Option<IpAddr>) -> bool {
        self.address.contains(ip, ue)
            && (self.ports.is_empty()
                || port.is_some_and(|p| self.ports.iter().any(|r| r.contains(p))))
    }
}

/// A parsed flow description.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowDescription {
    /// `permit` or `deny`.
    pub action: Action,
    /// `in` or `out`.
    pub direction: Direction,
    /// IP protocol number; `None` for `ip` (any).
    pub protocol: Option<u8>,
    /// `from` side.
    pub source: Endpoint,
    /// `to` side.
    pub destination: Endpoint,
}

fn bad<T>() -> Result<T> {
    Err(Error::BadFlowDescription)
}

fn parse_address(token: &str) -> Result<Address> {
    match token {
        "any" => return Ok(Address::Any),
        "assigned" => return Ok(Address::Assigned),
        _ => {}
    }
    let (addr, len) = match token.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (token, None),
    };
    let address: IpAddr = addr.parse().map_err(|_| Error::BadFlowDescription)?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().map_err(|_| Error::BadFlowDescription)?,
        None => max,
    };
    if len > max {
        return bad();
    }
    Ok(Address::Prefix { address, len })
}

fn parse_ports(token: &str) -> Result<Vec<PortRange>> {
    token
        .split(',')
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let start = a.parse::<u16>().map_err(|_| Error::BadFlowDescription)?;
            let end = b.parse::<u16>().map_err(|_| Error::BadFlowDescription)?;
            if start > end {
                return bad();
            }
            Ok(PortRange { start, end })
        })
        .collect()
}

fn is_ports(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
        && token
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
}

impl FlowDescription {
    /// Parses a flow description (the bytes of an SDF filter's FD field).
    pub fn parse(text: &[u8]) -> Result<FlowDescription> {
        let text = core::str::from_utf8(text).map_err(|_| Error::BadFlowDescription)?;
        let mut tokens = text.split_ascii_whitespace().peekable();
        let action = match tokens.next() {
            Some("permit") => Action::Permit,
            Some("deny") => Action::Deny,
            _ => return bad(),
        };
        let direction = match tokens.next() {
            Some("in") => Direction::In,
            Some("out") => Direction::Out,
            _ => return bad(),
        };
        let protocol = match tokens.next() {
            Some("ip") => None,
            Some("icmp") => Some(1),
            Some("tcp") => Some(6),
            Some("udp") => Some(17),
            Some(n) => Some(n.parse::<u8>().map_err(|_| Error::BadFlowDescription)?),
            None => return bad(),
        };
        let mut endpoint = |keyword: &str| -> Result<Endpoint> {
            if tokens.next() != Some(keyword) {
                return bad();
            }
            let address = parse_address(tokens.next().ok_or(Error::BadFlowDescription)?)?;
            let ports = match tokens.peek() {
                Some(t) if is_ports(t) => parse_ports(tokens.next().unwrap_or_default())?,
                _ => Vec::new(),
            };
            Ok(Endpoint { address, ports })
        };
        let source = endpoint("from")?;
        let destination = endpoint("to")?;
        if tokens.next().is_some() {
            return bad();
        }
        Ok(FlowDescription {
            action,
            direction,
            protocol,
            source,
            destination,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Any => f.write_str("any"),
            Address::Assigned => f.write_str("assigned"),
            Address::Prefix { address, len } => write!(f, "{address}/{len}"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        for (i, r) in self.ports.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { "," })?;
            if r.start == r.end {
                write!(f, "{}", r.start)?;
            } else {
                write!(f, "{}-{}", r.start, r.end)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for FlowDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Permit => "permit",
            Action::Deny => "deny",
        };
        let direction = match self.direction {
            Direction::In => "in",
            Direction::Out => "out",
        };
        write!(f, "{action} {direction} ")?;
        match self.protocol {
            None => f.write_str("ip")?,
            Some(p) => write!(f, "{p}")?,
        }
        write!(f, " from {} to {}", self.source, self.destination)
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use core::net::Ipv4Addr;

    use super::*;

    #[test]
    fn any_to_assigned_is_parsed() {
        let f = FlowDescription::parse(b"permit out ip from any to assigned").unwrap();
        assert_eq!(f.action, Action::Permit);
        assert_eq!(f.direction, Direction::Out);
        assert_eq!(f.protocol, None);
        assert_eq!(f.source.address, Address::Any);
        assert_eq!(f.destination.address, Address::Assigned);
    }

    #[test]
    fn prefixes_protocol_and_ports_are_parsed() {
        let f = FlowDescription::parse(
            b"permit out 17 from 198.51.100.0/24 53,5353-5354 to 10.45.0.0/16 1024-65535",
        )
        .unwrap();
        assert_eq!(f.protocol, Some(17));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(f.source.matches(ip("198.51.100.7"), Some(5354), None));
        assert!(!f.source.matches(ip("198.51.101.7"), Some(53), None));
        assert!(!f.source.matches(ip("198.51.100.7"), Some(80), None));
        assert!(f.destination.matches(ip("10.45.3.4"), Some(40000), None));
        assert_eq!(
            f.to_string(),
            "permit out 17 from 198.51.100.0/24 53,5353-5354 to 10.45.0.0/16 1024-65535"
        );
    }

    #[test]
    fn ipv6_prefix_and_assigned_match() {
        let f =
            FlowDescription::parse(b"permit out tcp from 2001:db8::/32 443 to assigned").unwrap();
        let ue = IpAddr::V6("2001:db8:ff::1".parse().unwrap());
        assert!(
            f.source
                .matches("2001:db8:1::2".parse().unwrap(), Some(443), Some(ue))
        );
        assert!(f.destination.matches(ue, None, Some(ue)));
        assert!(
            !f.destination
                .matches(IpAddr::V4(Ipv4Addr::LOCALHOST), None, Some(ue))
        );
    }

    #[test]
    fn options_and_garbage_are_rejected() {
        for text in [
            &b"permit out ip from any to assigned frag"[..],
            b"allow out ip from any to any",
            b"permit out ip from any",
            b"permit out ip from 10.0.0.0/33 to any",
            b"permit out ip from any 90-80 to any",
            b"permit out 300 from any to any",
            b"\xff",
        ] {
            assert_eq!(
                FlowDescription::parse(text),
                Err(Error::BadFlowDescription),
                "{text:?}"
            );
        }
    }
}
