//! Overlay MTU arithmetic and TCP MSS clamping.
//!
//! Every inner packet costs the outer IP header, a UDP header and WireGuard's 32 bytes, so the
//! overlay's inner MTU is smaller than the uplink's. TCP flows through the overlay should
//! advertise an MSS that fits: [`clamp_mss_ipv4`] rewrites the MSS option of a SYN in place and
//! patches the TCP checksum incrementally (RFC 1624).

use super::WIREGUARD_OVERHEAD;

/// Outer IP family of the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterFamily {
    /// 20-byte IPv4 header.
    V4,
    /// 40-byte IPv6 header.
    V6,
}

const UDP_HEADER: usize = 8;

/// Largest inner packet that fits in one outer packet of `outer_mtu` bytes (0 if none).
pub fn inner_mtu(outer_mtu: u16, family: OuterFamily) -> u16 {
    let ip = match family {
        OuterFamily::V4 => 20,
        OuterFamily::V6 => 40,
    };
    let overhead = u16::try_from(ip + UDP_HEADER + WIREGUARD_OVERHEAD).unwrap_or(u16::MAX);
    outer_mtu.saturating_sub(overhead)
}

/// TCP MSS for an inner IPv4 flow over a path with `inner_mtu` (20 IP + 20 TCP header bytes).
pub fn mss_for_ipv4(inner_mtu: u16) -> u16 {
    inner_mtu.saturating_sub(40)
}

/// TCP MSS for an inner IPv6 flow over a path with `inner_mtu` (40 IP + 20 TCP header bytes).
pub fn mss_for_ipv6(inner_mtu: u16) -> u16 {
    inner_mtu.saturating_sub(60)
}

/// What [`clamp_mss_ipv4`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MssClamp {
    /// Not an unfragmented IPv4 TCP SYN, or it carries no MSS option.
    NotApplicable,
    /// The MSS was already at or below the limit.
    Unchanged(u16),
    /// The MSS was lowered from `from` to `to` and the checksum fixed.
    Clamped {
        /// Original MSS.
        from: u16,
        /// New MSS.
        to: u16,
    },
}

/// Why a packet could not be examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MssError {
    /// The headers or options run past the end of the buffer.
    #[error("truncated or malformed IPv4/TCP packet")]
    Malformed,
}

/// Lowers the MSS option of an IPv4 TCP SYN (or SYN-ACK) to `max_mss`, fixing the checksum.
pub fn clamp_mss_ipv4(packet: &mut [u8], max_mss: u16) -> Result<MssClamp, MssError> {
    let first = *packet.first().ok_or(MssError::Malformed)?;
    if first >> 4 != 4 {
        return Ok(MssClamp::NotApplicable);
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || packet.len() < ihl {
        return Err(MssError::Malformed);
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if total < ihl || total > packet.len() {
        return Err(MssError::Malformed);
    }
    let frag = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff;
    if packet[9] != 6 || frag != 0 {
        return Ok(MssClamp::NotApplicable);
    }
    let tcp = packet.get_mut(ihl..total).ok_or(MssError::Malformed)?;
    if tcp.len() < 20 {
        return Err(MssError::Malformed);
    }
    let syn = tcp[13] & 0x02 != 0;
    if !syn {
        return Ok(MssClamp::NotApplicable);
    }
    let data_off = usize::from(tcp[12] >> 4) * 4;
    if data_off < 20 || data_off > tcp.len() {
        return Err(MssError::Malformed);
    }
    let mut i = 20;
    while i < data_off {
        match tcp[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*tcp.get(i + 1).ok_or(MssError::Malformed)?);
                if len < 2 || i + len > data_off {
                    return Err(MssError::Malformed);
                }
                if kind == 2 {
                    if len != 4 {
                        return Err(MssError::Malformed);
                    }
                    let old = u16::from_be_bytes([tcp[i + 2], tcp[i + 3]]);
                    if old <= max_mss {
                        return Ok(MssClamp::Unchanged(old));
                    }
                    tcp[i + 2..i + 4].copy_from_slice(&max_mss.to_be_bytes());
                    let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
                    let fixed = checksum_adjust(sum, old, max_mss);
                    tcp[16..18].copy_from_slice(&fixed.to_be_bytes());
                    return Ok(MssClamp::Clamped {
                        from: old,
                        to: max_mss,
                    });
                }
                i += len;
            }
        }
    }
    Ok(MssClamp::NotApplicable)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), in ones' complement arithmetic.
fn checksum_adjust(sum: u16, old: u16, new: u16) -> u16 {
    let mut acc = u32::from(!sum) + u32::from(!old) + u32::from(new);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // acc <= 0xffff after folding.
    !(u16::try_from(acc).unwrap_or(0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_mtu_subtracts_ip_udp_and_wireguard() {
        assert_eq!(inner_mtu(1500, OuterFamily::V4), 1440);
        assert_eq!(inner_mtu(1500, OuterFamily::V6), 1420);
        assert_eq!(inner_mtu(40, OuterFamily::V6), 0);
        assert_eq!(mss_for_ipv4(1440), 1400);
        assert_eq!(mss_for_ipv6(1420), 1360);
    }

    fn fold(words: &[u16]) -> u16 {
        let mut acc: u32 = words.iter().map(|w| u32::from(*w)).sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    proptest::proptest! {
        #[test]
        fn an_incrementally_updated_checksum_still_verifies(
            words in proptest::collection::vec(proptest::prelude::any::<u16>(), 1..32),
            at in 0usize..32,
            new in proptest::prelude::any::<u16>(),
        ) {
            let mut words = words;
            let at = at % words.len();
            let sum = !fold(&words);
            let old = words[at];
            words[at] = new;
            let updated = checksum_adjust(sum, old, new);
            // A valid checksum makes the ones'-complement sum of everything all ones.
            let mut all = words.clone();
            all.push(updated);
            proptest::prop_assert_eq!(fold(&all), 0xffff);
        }
    }
}
