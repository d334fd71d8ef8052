//! Network-function declarations: packet ports (`[ports.NAME]`) and host-owned tables
//! (`[tables.NAME]`), which network-function plugins are granted by name.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// What backs a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// An in-process queue pair (tests, benchmarks, chaining functions).
    Memory,
    /// A TAP device (created when missing).
    Tap,
    /// A real interface, through AF_PACKET rings.
    AfPacket,
    /// Packets replayed from a pcap file (input only).
    Pcap,
    /// An SD-WAN overlay uplink: IP packets sent through a WireGuard tunnel to a remote site.
    Overlay,
}

impl std::fmt::Display for PortKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortKind::Memory => "memory",
            PortKind::Tap => "tap",
            PortKind::AfPacket => "af-packet",
            PortKind::Pcap => "pcap",
            PortKind::Overlay => "overlay",
        })
    }
}

/// An IPv4 address with its prefix length (`10.0.1.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parses `A.B.C.D/N`.
    pub fn parse(text: &str) -> Result<Ipv4Cidr, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not `A.B.C.D/N`"))?;
        let address = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 address"))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{prefix}` is not a prefix length (0..=32)"))?;
        Ok(Ipv4Cidr { address, prefix })
    }

    /// Whether `ip` is on this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.address) & mask
    }
}

/// A packet port (`[ports.NAME]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PortSpec {
    /// Its name; plugins list granted ports by name, and see them by index in that order.
    pub name: String,
    /// What backs it.
    pub kind: PortKind,
    /// The interface (af-packet: must exist; tap: created when missing).
    pub interface: Option<String>,
    /// The pcap file (pcap ports).
    pub path: Option<PathBuf>,
    /// The port's own address on its link: the host answers ARP for it and resolves next hops,
    /// so plugins see and send IP packets. Without it, plugins see the link's frames as they are.
    pub address: Option<Ipv4Cidr>,
    /// Next hop for destinations off the port's subnet.
    pub gateway: Option<Ipv4Addr>,
    /// Packets a memory port queues in each direction.
    pub capacity: usize,
    /// The tunnel of an overlay port.
    pub overlay: Option<OverlaySpec>,
}

/// The WireGuard tunnel behind an overlay port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlaySpec {
    /// The local address its datagrams leave from (the uplink's address).
    pub local: std::net::SocketAddr,
    /// The remote site's overlay endpoint over this uplink.
    pub peer: std::net::SocketAddr,
    /// The remote site's WireGuard public key (base64 of 32 bytes).
    pub peer_public_key: String,
    /// This site's private key (a file holding base64 of 32 bytes, owner-only); without it the
    /// host generates one in its data directory and shows the public key in its status.
    pub private_key_file: Option<PathBuf>,
    /// The `[sdwan.uplinks]` entry whose probes judge this path, if any.
    pub uplink: Option<String>,
    /// That uplink's egress cap (Mbit/s), which the port enforces with its shaper.
    pub rate_mbps: Option<u32>,
}

/// What a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Exact-match map of bytes to bytes.
    Exact,
    /// Longest-prefix match over IPv4 / IPv6 prefixes.
    Lpm,
    /// Packet and byte counters by key.
    Counters,
}

impl std::fmt::Display for TableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TableKind::Exact => "exact",
            TableKind::Lpm => "lpm",
            TableKind::Counters => "counters",
        })
    }
}

/// A host-owned table (`[tables.NAME]`): it outlives every version of the plugins using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Its name.
    pub name: String,
    /// What it holds.
    pub kind: TableKind,
    /// Most entries; a put beyond it is refused.
    pub max_entries: u64,
    /// Longest key, bytes.
    pub max_key: u32,
    /// Longest value, bytes.
    pub max_value: u32,
}

/// A network function's grants: its ports (in index order), tables, and control socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NfGrant {
    /// Ports by name; the plugin sees port `i` as the i-th.
    pub ports: Vec<String>,
    /// Tables the plugin may open.
    pub tables: Vec<String>,
    /// The UDP address its control channel listens on (e.g. PFCP on `0.0.0.0:8805`).
    pub control: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain_their_subnet() {
        let c = Ipv4Cidr::parse("10.0.1.1/24").unwrap();
        assert!(c.contains("10.0.1.200".parse().unwrap()));
        assert!(!c.contains("10.0.2.1".parse().unwrap()));
        assert!(
            Ipv4Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(Ipv4Addr::BROADCAST)
        );
        assert!(Ipv4Cidr::parse("10.0.1.1").is_err());
        assert!(Ipv4Cidr::parse("10.0.1.1/33").is_err());
    }
}
