//! Typed representations of the non-grouped IEs (TS 29.244 clause 8.2).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::FlowDescription;
use crate::ie::{IeValue, Writer, need, take};
use crate::{Error, Result};

/// Seconds between the NTP epoch (1900), used by PFCP time stamps, and the Unix epoch.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

fn ipv4(value: &[u8], at: usize, ie: u16) -> Result<Ipv4Addr> {
    Ok(Ipv4Addr::from(take::<4>(value, at, ie)?))
}

fn ipv6(value: &[u8], at: usize, ie: u16) -> Result<Ipv6Addr> {
    Ok(Ipv6Addr::from(take::<16>(value, at, ie)?))
}

/// Cause (IE 19, clause 8.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cause(pub u8);

impl Cause {
    /// Request accepted (success).
    pub const REQUEST_ACCEPTED: Cause = Cause(1);
    /// More Usage Report to send.
    pub const MORE_USAGE_REPORT_TO_SEND: Cause = Cause(2);
    /// Request partially accepted.
    pub const REQUEST_PARTIALLY_ACCEPTED: Cause = Cause(3);
    /// Request rejected (reason not specified).
    pub const REQUEST_REJECTED: Cause = Cause(64);
    /// Session context not found.
    pub const SESSION_CONTEXT_NOT_FOUND: Cause = Cause(65);
    /// Mandatory IE missing.
    pub const MANDATORY_IE_MISSING: Cause = Cause(66);
    /// Conditional IE missing.
    pub const CONDITIONAL_IE_MISSING: Cause = Cause(67);
    /// Invalid length.
    pub const INVALID_LENGTH: Cause = Cause(68);
    /// Mandatory IE incorrect.
    pub const MANDATORY_IE_INCORRECT: Cause = Cause(69);
    /// Invalid Forwarding Policy.
    pub const INVALID_FORWARDING_POLICY: Cause = Cause(70);
    /// Invalid F-TEID allocation option.
    pub const INVALID_F_TEID_ALLOCATION_OPTION: Cause = Cause(71);
    /// No established PFCP Association.
    pub const NO_ESTABLISHED_PFCP_ASSOCIATION: Cause = Cause(72);
    /// Rule creation/modification Failure.
    pub const RULE_CREATION_MODIFICATION_FAILURE: Cause = Cause(73);
    /// PFCP entity in congestion.
    pub const PFCP_ENTITY_IN_CONGESTION: Cause = Cause(74);
    /// No resources available.
    pub const NO_RESOURCES_AVAILABLE: Cause = Cause(75);
    /// Service not supported.
    pub const SERVICE_NOT_SUPPORTED: Cause = Cause(76);
    /// System failure.
    pub const SYSTEM_FAILURE: Cause = Cause(77);
    /// Redirection Requested.
    pub const REDIRECTION_REQUESTED: Cause = Cause(78);
    /// All dynamic addresses are occupied.
    pub const ALL_DYNAMIC_ADDRESSES_ARE_OCCUPIED: Cause = Cause(79);

    /// Whether the cause is an acceptance (values 1 to 63).
    pub fn is_accepted(self) -> bool {
        (1..64).contains(&self.0)
    }
}

impl<'a> IeValue<'a> for Cause {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        Ok(Cause(u8::parse_value(value, ie)?))
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(self.0);
    }
}

/// Source Interface (IE 20) and Destination Interface (IE 42) values (4 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interface(pub u8);

impl Interface {
    /// Access (N3, towards the RAN).
    pub const ACCESS: Interface = Interface(0);
    /// Core (N9, towards another UPF).
    pub const CORE: Interface = Interface(1);
    /// SGi-LAN / N6-LAN (towards the data network).
    pub const SGI_LAN_N6_LAN: Interface = Interface(2);
    /// CP-function.
    pub const CP_FUNCTION: Interface = Interface(3);
    /// LI function (destination only).
    pub const LI_FUNCTION: Interface = Interface(4);
    /// 5G VN internal.
    pub const VN_INTERNAL_5G: Interface = Interface(5);
}

impl<'a> IeValue<'a> for Interface {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        Ok(Interface(u8::parse_value(value, ie)? & 0x0f))
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(self.0 & 0x0f);
    }
}

/// QFI (IE 124): a 6-bit QoS flow identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qfi(pub u8);

impl<'a> IeValue<'a> for Qfi {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        Ok(Qfi(u8::parse_value(value, ie)? & 0x3f))
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(self.0 & 0x3f);
    }
}

/// Declares a flags IE: bit `8 * k + (b - 1)` of the integer is bit `b` of the value's octet
/// `k` (octet 5 of the IE is k = 0). Parsing reads up to `max` octets (more are ignored);
/// emitting writes the fewest octets, at least `min`, that hold every set bit.
macro_rules! flags_ie {
    (
        $(#[$meta:meta])*
        pub struct $name:ident($int:ty), min $min:expr, max $max:expr;
        $( $(#[$cmeta:meta])* $flag:ident = $bit:expr; )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub $int);

        impl $name {
            $( $(#[$cmeta])* pub const $flag: $name = $name(1 << $bit); )*
            /// Every bit an IE of this type can carry.
            pub const ALL: $name = $name(<$int>::MAX >> (<$int>::BITS as usize - 8 * $max));

            /// Whether every bit of `other` is set.
            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }
        }

        impl core::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl<'a> IeValue<'a> for $name {
            fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
                need(value, $min, ie)?;
                let mut v: $int = 0;
                for (i, b) in value.iter().take($max).enumerate() {
                    v |= <$int>::from(*b) << (8 * i);
                }
                Ok($name(v))
            }

            fn emit_value(&self, w: &mut Writer<'_>) {
                let v = self.0 & Self::ALL.0;
                let mut n: usize = $max;
                while n > $min && (v >> (8 * (n - 1))) & 0xff == 0 {
                    n -= 1;
                }
                for i in 0..n {
                    w.put_u8((v >> (8 * i)) as u8);
                }
            }
        }
    };
}

flags_ie! {
    /// Apply Action (IE 44, clause 8.2.26): one or two octets of flags.
    pub struct ApplyAction(u16), min 1, max 2;
    /// Drop.
    DROP = 0;
    /// Forward.
    FORW = 1;
    /// Buffer.
    BUFF = 2;
    /// Notify the CP function.
    NOCP = 3;
    /// Duplicate.
    DUPL = 4;
    /// IP multicast accept.
    IPMA = 5;
    /// IP multicast deny.
    IPMD = 6;
    /// Duplicate for redundant transmission.
    DFRT = 7;
    /// Eliminate duplicate packets for redundant transmission.
    EDRT = 8;
    /// Buffered downlink packet notification.
    BDPN = 9;
    /// Discarded downlink packet notification.
    DDPN = 10;
}

flags_ie! {
    /// Reporting Triggers (IE 37, clause 8.2.19).
    pub struct ReportingTriggers(u32), min 2, max 3;
    /// Periodic reporting.
    PERIO = 0;
    /// Volume threshold.
    VOLTH = 1;
    /// Time threshold.
    TIMTH = 2;
    /// Quota holding time.
    QUHTI = 3;
    /// Start of traffic.
    START = 4;
    /// Stop of traffic.
    STOPT = 5;
    /// Dropped DL traffic threshold.
    DROTH = 6;
    /// Linked usage reporting.
    LIUSA = 7;
    /// Volume quota.
    VOLQU = 8;
    /// Time quota.
    TIMQU = 9;
    /// Envelope closure.
    ENVCL = 10;
    /// MAC addresses reporting.
    MACAR = 11;
    /// Event threshold.
    EVETH = 12;
    /// Event quota.
    EVEQU = 13;
    /// IP multicast join/leave.
    IPMJL = 14;
    /// Quota validity time.
    QUVTI = 15;
    /// Report the end marker reception.
    REEMR = 16;
    /// User plane inactivity timer.
    UPINT = 17;
}

flags_ie! {
    /// Usage Report Trigger (IE 63, clause 8.2.41).
    pub struct UsageReportTrigger(u32), min 2, max 3;
    /// Periodic reporting.
    PERIO = 0;
    /// Volume threshold.
    VOLTH = 1;
    /// Time threshold.
    TIMTH = 2;
    /// Quota holding time.
    QUHTI = 3;
    /// Start of traffic.
    START = 4;
    /// Stop of traffic.
    STOPT = 5;
    /// Dropped DL traffic threshold.
    DROTH = 6;
    /// Immediate report.
    IMMER = 7;
    /// Volume quota.
    VOLQU = 8;
    /// Time quota.
    TIMQU = 9;
    /// Linked usage reporting.
    LIUSA = 10;
    /// Termination report.
    TERMR = 11;
    /// Monitoring time.
    MONIT = 12;
    /// Envelope closure.
    ENVCL = 13;
    /// MAC addresses reporting.
    MACAR = 14;
    /// Event threshold.
    EVETH = 15;
    /// Event quota.
    EVEQU = 16;
    /// Termination by UP function report.
    TEBUR = 17;
    /// IP multicast join/leave.
    IPMJL = 18;
    /// Quota validity time.
    QUVTI = 19;
    /// End marker reception report.
    EMRRE = 20;
    /// User plane inactivity timer.
    UPINT = 21;
}

flags_ie! {
    /// UP Function Features (IE 43, clause 8.2.25).
    pub struct UpFunctionFeatures(u64), min 2, max 8;
    /// Downlink data buffering in the CP function.
    BUCP = 0;
    /// Downlink data notification delay.
    DDND = 1;
    /// DL buffering duration.
    DLBD = 2;
    /// Traffic steering.
    TRST = 3;
    /// F-TEID allocation/release in the UP function.
    FTUP = 4;
    /// PFD management procedure.
    PFDM = 5;
    /// Header enrichment of uplink traffic.
    HEEU = 6;
    /// Traffic redirection enforcement.
    TREU = 7;
    /// Sending of end marker packets.
    EMPU = 8;
    /// PDI optimised signalling.
    PDIU = 9;
    /// UL/DL buffering control.
    UDBC = 10;
    /// Quota action.
    QUOAC = 11;
    /// Trace.
    TRACE = 12;
    /// Framed routing.
    FRRT = 13;
    /// PFD contents extension.
    PFDE = 14;
    /// Enhanced PFCP association release.
    EPFAR = 15;
    /// Deferred PDR activation/deactivation.
    DPDRA = 16;
    /// Activation/deactivation of pre-defined PDRs.
    ADPDP = 17;
    /// UE IP address allocation in the UP function.
    UEIP = 18;
    /// PFCP sessions successively controlled by different SMFs of an SMF set.
    SSET = 19;
    /// Number of packets in usage reports.
    MNOP = 20;
    /// IP multicast traffic.
    MTE = 21;
    /// PFCP messages bundling.
    BUNDL = 22;
    /// 5G VN group communication.
    GCOM = 23;
    /// Multiple PFCP associations to SMFs of an SMF set.
    MPAS = 24;
    /// Redundant transmission at transport layer.
    RTTL = 25;
    /// Quota validity time.
    VTIME = 26;
    /// Number of reports.
    NORP = 27;
    /// IPTV service.
    IPTV = 28;
    /// UE IPv6 prefix length other than /64.
    IP6PL = 29;
    /// Time sensitive communication.
    TSCU = 30;
    /// MPTCP proxy.
    MPTCP = 31;
}

flags_ie! {
    /// CP Function Features (IE 89, clause 8.2.58).
    pub struct CpFunctionFeatures(u16), min 1, max 2;
    /// Load control.
    LOAD = 0;
    /// Overload control.
    OVRL = 1;
    /// Enhanced PFCP association release.
    EPFAR = 2;
    /// SMF set.
    SSET = 3;
    /// PFCP messages bundling.
    BUNDL = 4;
    /// Multiple PFCP associations in an SMF set.
    MPAS = 5;
    /// Additional usage reports in the deletion response.
    ARDR = 6;
    /// UE IP address usage information.
    UIAUR = 7;
    /// PFCP session establishment/modification with partial success.
    PSUCC = 8;
}

flags_ie! {
    /// Measurement Method (IE 62, clause 8.2.40).
    pub struct MeasurementMethod(u8), min 1, max 1;
    /// Duration.
    DURAT = 0;
    /// Volume.
    VOLUM = 1;
    /// Event.
    EVENT = 2;
}

flags_ie! {
    /// Report Type (IE 39, clause 8.2.21).
    pub struct ReportType(u8), min 1, max 1;
    /// Downlink data report.
    DLDR = 0;
    /// Usage report.
    USAR = 1;
    /// Error indication report.
    ERIR = 2;
    /// User plane inactivity report.
    UPIR = 3;
    /// TSC management information report.
    TMIR = 4;
    /// Session report.
    SESR = 5;
    /// UP initiated session request.
    UISR = 6;
}

/// Node ID (IE 60, clause 8.2.38).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeId<'a> {
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address.
    Ipv6(Ipv6Addr),
    /// An FQDN, encoded as DNS labels (length-prefixed, no trailing zero; TS 23.003 19.4.2).
    Fqdn(&'a [u8]),
}

impl NodeId<'_> {
    /// The FQDN in dotted form (`None` for addresses or a malformed label list).
    pub fn fqdn(&self) -> Option<String> {
        let NodeId::Fqdn(mut labels) = *self else {
            return None;
        };
        let mut name = String::new();
        while let Some((&len, rest)) = labels.split_first() {
            let label = rest.get(..usize::from(len))?;
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(core::str::from_utf8(label).ok()?);
            labels = &rest[usize::from(len)..];
        }
        Some(name)
    }
}

/// Encodes a dotted name as the DNS labels a [`NodeId::Fqdn`] carries.
pub fn encode_fqdn(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out
}

impl<'a> IeValue<'a> for NodeId<'a> {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        match take::<1>(value, 0, ie)?[0] & 0x0f {
            0 => Ok(NodeId::Ipv4(ipv4(value, 1, ie)?)),
            1 => Ok(NodeId::Ipv6(ipv6(value, 1, ie)?)),
            2 => Ok(NodeId::Fqdn(&value[1..])),
            _ => Err(Error::BadIeValue { ie }),
        }
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        match self {
            NodeId::Ipv4(a) => {
                w.put_u8(0);
                w.put(&a.octets());
            }
            NodeId::Ipv6(a) => {
                w.put_u8(1);
                w.put(&a.octets());
            }
            NodeId::Fqdn(labels) => {
                w.put_u8(2);
                w.put(labels);
            }
        }
    }
}

/// F-SEID (IE 57, clause 8.2.37): a SEID and the address(es) of its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FSeid {
    /// Session endpoint identifier.
    pub seid: u64,
    /// IPv4 address (V4 flag).
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address (V6 flag).
    pub ipv6: Option<Ipv6Addr>,
}

impl<'a> IeValue<'a> for FSeid {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let flags = take::<1>(value, 0, ie)?[0];
        let seid = u64::from_be_bytes(take(value, 1, ie)?);
        let mut at = 9;
        let ipv4 = if flags & 0x02 != 0 {
            at += 4;
            Some(ipv4(value, at - 4, ie)?)
        } else {
            None
        };
        let ipv6 = if flags & 0x01 != 0 {
            Some(ipv6(value, at, ie)?)
        } else {
            None
        };
        Ok(FSeid { seid, ipv4, ipv6 })
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(u8::from(self.ipv4.is_some()) << 1 | u8::from(self.ipv6.is_some()));
        w.put_u64(self.seid);
        if let Some(a) = self.ipv4 {
            w.put(&a.octets());
        }
        if let Some(a) = self.ipv6 {
            w.put(&a.octets());
        }
    }
}

/// F-TEID (IE 21, clause 8.2.3): either an assigned TEID and address(es), or a request that
/// the UP function choose them (CH flag), possibly shared between PDRs with the same Choose ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FTeid {
    /// TEID and address(es) given.
    Assigned {
        /// Tunnel endpoint identifier.
        teid: u32,
        /// IPv4 address (V4 flag).
        ipv4: Option<Ipv4Addr>,
        /// IPv6 address (V6 flag).
        ipv6: Option<Ipv6Addr>,
    },
    /// CHOOSE: the UP function allocates the TEID and the address(es).
    Choose {
        /// Allocate an IPv4 address (V4 flag).
        ipv4: bool,
        /// Allocate an IPv6 address (V6 flag).
        ipv6: bool,
        /// Choose ID (CHID flag): PDRs with the same ID share one F-TEID.
        choose_id: Option<u8>,
    },
}

impl<'a> IeValue<'a> for FTeid {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let flags = take::<1>(value, 0, ie)?[0];
        let (v4, v6, ch, chid) = (
            flags & 0x01 != 0,
            flags & 0x02 != 0,
            flags & 0x04 != 0,
            flags & 0x08 != 0,
        );
        if ch {
            return Ok(FTeid::Choose {
                ipv4: v4,
                ipv6: v6,
                choose_id: if chid {
                    Some(take::<1>(value, 1, ie)?[0])
                } else {
                    None
                },
            });
        }
        let teid = u32::from_be_bytes(take(value, 1, ie)?);
        let mut at = 5;
        let ipv4 = if v4 {
            at += 4;
            Some(ipv4(value, at - 4, ie)?)
        } else {
            None
        };
        let ipv6 = if v6 { Some(ipv6(value, at, ie)?) } else { None };
        Ok(FTeid::Assigned { teid, ipv4, ipv6 })
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        match *self {
            FTeid::Assigned { teid, ipv4, ipv6 } => {
                w.put_u8(u8::from(ipv4.is_some()) | u8::from(ipv6.is_some()) << 1);
                w.put_u32(teid);
                if let Some(a) = ipv4 {
                    w.put(&a.octets());
                }
                if let Some(a) = ipv6 {
                    w.put(&a.octets());
                }
            }
            FTeid::Choose {
                ipv4,
                ipv6,
                choose_id,
            } => {
                w.put_u8(
                    u8::from(ipv4)
                        | u8::from(ipv6) << 1
                        | 0x04
                        | u8::from(choose_id.is_some()) << 3,
                );
                if let Some(id) = choose_id {
                    w.put_u8(id);
                }
            }
        }
    }
}

/// UE IP Address (IE 93, clause 8.2.62).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UeIpAddress {
    /// IPv4 address (V4 flag).
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address or prefix (V6 flag).
    pub ipv6: Option<Ipv6Addr>,
    /// S/D flag: the address is a destination address (downlink PDRs), else a source address.
    pub destination: bool,
    /// IPv6 prefix delegation bits (IPv6D flag).
    pub ipv6_prefix_delegation_bits: Option<u8>,
    /// CHV4: the UP function allocates an IPv4 address.
    pub choose_ipv4: bool,
    /// CHV6: the UP function allocates an IPv6 prefix.
    pub choose_ipv6: bool,
    /// IPv6 prefix length (IP6PL flag).
    pub ipv6_prefix_length: Option<u8>,
}

impl<'a> IeValue<'a> for UeIpAddress {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let flags = take::<1>(value, 0, ie)?[0];
        let mut at = 1;
        let mut field = |present: bool, len: usize| {
            let here = at;
            if present {
                at += len;
            }
            present.then_some(here)
        };
        let v4_at = field(flags & 0x02 != 0, 4);
        let v6_at = field(flags & 0x01 != 0, 16);
        let deleg_at = field(flags & 0x08 != 0, 1);
        let plen_at = field(flags & 0x40 != 0, 1);
        Ok(UeIpAddress {
            ipv4: v4_at.map(|at| ipv4(value, at, ie)).transpose()?,
            ipv6: v6_at.map(|at| ipv6(value, at, ie)).transpose()?,
            destination: flags & 0x04 != 0,
            ipv6_prefix_delegation_bits: deleg_at
                .map(|at| take::<1>(value, at, ie).map(|b| b[0]))
                .transpose()?,
            choose_ipv4: flags & 0x10 != 0,
            choose_ipv6: flags & 0x20 != 0,
            ipv6_prefix_length: plen_at
                .map(|at| take::<1>(value, at, ie).map(|b| b[0]))
                .transpose()?,
        })
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(
            u8::from(self.ipv6.is_some())
                | u8::from(self.ipv4.is_some()) << 1
                | u8::from(self.destination) << 2
                | u8::from(self.ipv6_prefix_delegation_bits.is_some()) << 3
                | u8::from(self.choose_ipv4) << 4
                | u8::from(self.choose_ipv6) << 5
                | u8::from(self.ipv6_prefix_length.is_some()) << 6,
        );
        if let Some(a) = self.ipv4 {
            w.put(&a.octets());
        }
        if let Some(a) = self.ipv6 {
            w.put(&a.octets());
        }
        if let Some(b) = self.ipv6_prefix_delegation_bits {
            w.put_u8(b);
        }
        if let Some(b) = self.ipv6_prefix_length {
            w.put_u8(b);
        }
    }
}

/// SDF Filter (IE 23, clause 8.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SdfFilter<'a> {
    /// Flow description, an IPFilterRule (FD flag); see [`SdfFilter::flow`].
    pub flow_description: Option<&'a [u8]>,
    /// ToS / traffic class and mask (TTC flag).
    pub tos_traffic_class: Option<u16>,
    /// Security parameter index (SPI flag).
    pub security_parameter_index: Option<u32>,
    /// IPv6 flow label, 20 bits (FL flag).
    pub flow_label: Option<u32>,
    /// SDF filter ID (BID flag).
    pub sdf_filter_id: Option<u32>,
}

impl SdfFilter<'_> {
    /// Parses the flow description as an IPFilterRule.
    pub fn flow(&self) -> Option<Result<FlowDescription>> {
        self.flow_description.map(FlowDescription::parse)
    }
}

impl<'a> IeValue<'a> for SdfFilter<'a> {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let flags = take::<2>(value, 0, ie)?[0];
        let mut at = 2;
        let flow_description = if flags & 0x01 != 0 {
            let len = usize::from(u16::from_be_bytes(take(value, at, ie)?));
            let fd = value
                .get(at + 2..at + 2 + len)
                .ok_or(Error::BadIeLength { ie })?;
            at += 2 + len;
            Some(fd)
        } else {
            None
        };
        let tos_traffic_class = if flags & 0x02 != 0 {
            at += 2;
            Some(u16::from_be_bytes(take(value, at - 2, ie)?))
        } else {
            None
        };
        let security_parameter_index = if flags & 0x04 != 0 {
            at += 4;
            Some(u32::from_be_bytes(take(value, at - 4, ie)?))
        } else {
            None
        };
        let flow_label = if flags & 0x08 != 0 {
            at += 3;
            let [a, b, c] = take::<3>(value, at - 3, ie)?;
            Some(u32::from_be_bytes([0, a, b, c]))
        } else {
            None
        };
        let sdf_filter_id = if flags & 0x10 != 0 {
            Some(u32::from_be_bytes(take(value, at, ie)?))
        } else {
            None
        };
        Ok(SdfFilter {
            flow_description,
            tos_traffic_class,
            security_parameter_index,
            flow_label,
            sdf_filter_id,
        })
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(
            u8::from(self.flow_description.is_some())
                | u8::from(self.tos_traffic_class.is_some()) << 1
                | u8::from(self.security_parameter_index.is_some()) << 2
                | u8::from(self.flow_label.is_some()) << 3
                | u8::from(self.sdf_filter_id.is_some()) << 4,
        );
        w.put_u8(0);
        if let Some(fd) = self.flow_description {
            match u16::try_from(fd.len()) {
                Ok(len) => w.put_u16(len),
                Err(_) => w.put_u16(u16::MAX),
            }
            w.put(fd);
        }
        if let Some(v) = self.tos_traffic_class {
            w.put_u16(v);
        }
        if let Some(v) = self.security_parameter_index {
            w.put_u32(v);
        }
        if let Some(v) = self.flow_label {
            w.put(&v.to_be_bytes()[1..]);
        }
        if let Some(v) = self.sdf_filter_id {
            w.put_u32(v);
        }
    }
}

/// Gate Status (IE 25, clause 8.2.7): uplink and downlink gates (0 open, 1 closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GateStatus {
    /// UL gate (2 bits).
    pub uplink: u8,
    /// DL gate (2 bits).
    pub downlink: u8,
}

impl GateStatus {
    /// Gate value: open.
    pub const OPEN: u8 = 0;
    /// Gate value: closed.
    pub const CLOSED: u8 = 1;
    /// Both gates open.
    pub const BOTH_OPEN: GateStatus = GateStatus {
        uplink: 0,
        downlink: 0,
    };

    /// Whether the uplink gate lets traffic through (only 0 is open).
    pub fn uplink_open(&self) -> bool {
        self.uplink == Self::OPEN
    }

    /// Whether the downlink gate lets traffic through.
    pub fn downlink_open(&self) -> bool {
        self.downlink == Self::OPEN
    }
}

impl<'a> IeValue<'a> for GateStatus {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let b = u8::parse_value(value, ie)?;
        Ok(GateStatus {
            uplink: (b >> 2) & 0x03,
            downlink: b & 0x03,
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8((self.uplink & 0x03) << 2 | (self.downlink & 0x03));
    }
}

/// MBR (IE 26) or GBR (IE 27): 40-bit uplink and downlink bit rates in kbps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bitrate {
    /// Uplink, kbps (40 bits).
    pub uplink: u64,
    /// Downlink, kbps (40 bits).
    pub downlink: u64,
}

impl<'a> IeValue<'a> for Bitrate {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let [a, b, c, d, e, f, g, h, i, j] = take::<10>(value, 0, ie)?;
        Ok(Bitrate {
            uplink: u64::from_be_bytes([0, 0, 0, a, b, c, d, e]),
            downlink: u64::from_be_bytes([0, 0, 0, f, g, h, i, j]),
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put(&self.uplink.to_be_bytes()[3..]);
        w.put(&self.downlink.to_be_bytes()[3..]);
    }
}

/// Reads the optional 8-octet values behind a flags octet, in flag-bit order.
fn volumes<const N: usize>(value: &[u8], ie: u16) -> Result<[Option<u64>; N]> {
    let flags = take::<1>(value, 0, ie)?[0];
    let mut out = [None; N];
    let mut at = 1;
    for (bit, slot) in out.iter_mut().enumerate() {
        if flags & (1 << bit) != 0 {
            *slot = Some(u64::from_be_bytes(take(value, at, ie)?));
            at += 8;
        }
    }
    Ok(out)
}

fn emit_volumes(values: &[Option<u64>], w: &mut Writer<'_>) {
    let flags = values
        .iter()
        .enumerate()
        .fold(0u8, |f, (bit, v)| f | u8::from(v.is_some()) << bit);
    w.put_u8(flags);
    for v in values.iter().flatten() {
        w.put_u64(*v);
    }
}

/// Volume Threshold (IE 31) or Volume Quota (IE 73): octets, total/uplink/downlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Volume {
    /// Total volume (TOVOL flag).
    pub total: Option<u64>,
    /// Uplink volume (ULVOL flag).
    pub uplink: Option<u64>,
    /// Downlink volume (DLVOL flag).
    pub downlink: Option<u64>,
}

impl<'a> IeValue<'a> for Volume {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let [total, uplink, downlink] = volumes::<3>(value, ie)?;
        Ok(Volume {
            total,
            uplink,
            downlink,
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        emit_volumes(&[self.total, self.uplink, self.downlink], w);
    }
}

/// Volume Measurement (IE 66, clause 8.2.44): octets and packets counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct VolumeMeasurement {
    /// Total volume (TOVOL flag).
    pub total_volume: Option<u64>,
    /// Uplink volume (ULVOL flag).
    pub uplink_volume: Option<u64>,
    /// Downlink volume (DLVOL flag).
    pub downlink_volume: Option<u64>,
    /// Total number of packets (TONOP flag).
    pub total_packets: Option<u64>,
    /// Uplink number of packets (ULNOP flag).
    pub uplink_packets: Option<u64>,
    /// Downlink number of packets (DLNOP flag).
    pub downlink_packets: Option<u64>,
}

impl<'a> IeValue<'a> for VolumeMeasurement {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let [tv, uv, dv, tp, up, dp] = volumes::<6>(value, ie)?;
        Ok(VolumeMeasurement {
            total_volume: tv,
            uplink_volume: uv,
            downlink_volume: dv,
            total_packets: tp,
            uplink_packets: up,
            downlink_packets: dp,
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        emit_volumes(
            &[
                self.total_volume,
                self.uplink_volume,
                self.downlink_volume,
                self.total_packets,
                self.uplink_packets,
                self.downlink_packets,
            ],
            w,
        );
    }
}

/// Outer Header Creation (IE 84, clause 8.2.56). `description` holds the two description
/// octets (octet 5 in the low byte); the other fields are present as the description says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OuterHeaderCreation {
    /// Outer header creation description (see the associated constants).
    pub description: u16,
    /// TEID (GTP-U descriptions).
    pub teid: Option<u32>,
    /// IPv4 address (the IPv4 descriptions).
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address (the IPv6 descriptions).
    pub ipv6: Option<Ipv6Addr>,
    /// UDP port (UDP/IP descriptions).
    pub port: Option<u16>,
    /// C-TAG (3 octets).
    pub c_tag: Option<[u8; 3]>,
    /// S-TAG (3 octets).
    pub s_tag: Option<[u8; 3]>,
}

impl OuterHeaderCreation {
    /// GTP-U/UDP/IPv4.
    pub const GTPU_UDP_IPV4: u16 = 0x0001;
    /// GTP-U/UDP/IPv6.
    pub const GTPU_UDP_IPV6: u16 = 0x0002;
    /// UDP/IPv4.
    pub const UDP_IPV4: u16 = 0x0004;
    /// UDP/IPv6.
    pub const UDP_IPV6: u16 = 0x0008;
    /// IPv4.
    pub const IPV4: u16 = 0x0010;
    /// IPv6.
    pub const IPV6: u16 = 0x0020;
    /// C-TAG.
    pub const C_TAG: u16 = 0x0040;
    /// S-TAG.
    pub const S_TAG: u16 = 0x0080;
    /// N19 indication.
    pub const N19: u16 = 0x0100;
    /// N6 indication.
    pub const N6: u16 = 0x0200;

    const HAS_TEID: u16 = Self::GTPU_UDP_IPV4 | Self::GTPU_UDP_IPV6;
    const HAS_IPV4: u16 = Self::GTPU_UDP_IPV4 | Self::UDP_IPV4 | Self::IPV4;
    const HAS_IPV6: u16 = Self::GTPU_UDP_IPV6 | Self::UDP_IPV6 | Self::IPV6;
    const HAS_PORT: u16 = Self::UDP_IPV4 | Self::UDP_IPV6;

    /// GTP-U/UDP/IPv4 towards `teid`@`address`.
    pub fn gtpu_ipv4(teid: u32, address: Ipv4Addr) -> Self {
        OuterHeaderCreation {
            description: Self::GTPU_UDP_IPV4,
            teid: Some(teid),
            ipv4: Some(address),
            ..Default::default()
        }
    }

    /// GTP-U/UDP/IPv6 towards `teid`@`address`.
    pub fn gtpu_ipv6(teid: u32, address: Ipv6Addr) -> Self {
        OuterHeaderCreation {
            description: Self::GTPU_UDP_IPV6,
            teid: Some(teid),
            ipv6: Some(address),
            ..Default::default()
        }
    }
}

impl<'a> IeValue<'a> for OuterHeaderCreation {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let [d0, d1] = take::<2>(value, 0, ie)?;
        let description = u16::from_le_bytes([d0, d1]);
        let mut at = 2;
        let mut next = |mask: u16, len: usize| {
            let here = at;
            if description & mask != 0 {
                at += len;
                Some(here)
            } else {
                None
            }
        };
        let teid_at = next(Self::HAS_TEID, 4);
        let v4_at = next(Self::HAS_IPV4, 4);
        let v6_at = next(Self::HAS_IPV6, 16);
        let port_at = next(Self::HAS_PORT, 2);
        let c_at = next(Self::C_TAG, 3);
        let s_at = next(Self::S_TAG, 3);
        Ok(OuterHeaderCreation {
            description,
            teid: teid_at
                .map(|at| take(value, at, ie).map(u32::from_be_bytes))
                .transpose()?,
            ipv4: v4_at.map(|at| ipv4(value, at, ie)).transpose()?,
            ipv6: v6_at.map(|at| ipv6(value, at, ie)).transpose()?,
            port: port_at
                .map(|at| take(value, at, ie).map(u16::from_be_bytes))
                .transpose()?,
            c_tag: c_at.map(|at| take::<3>(value, at, ie)).transpose()?,
            s_tag: s_at.map(|at| take::<3>(value, at, ie)).transpose()?,
        })
    }

    fn emit_value(&self, w: &mut Writer<'_>) {
        let d = self.description;
        w.put(&d.to_le_bytes());
        if d & Self::HAS_TEID != 0 {
            w.put_u32(self.teid.unwrap_or(0));
        }
        if d & Self::HAS_IPV4 != 0 {
            w.put(&self.ipv4.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
        }
        if d & Self::HAS_IPV6 != 0 {
            w.put(&self.ipv6.unwrap_or(Ipv6Addr::UNSPECIFIED).octets());
        }
        if d & Self::HAS_PORT != 0 {
            w.put_u16(self.port.unwrap_or(0));
        }
        if d & Self::C_TAG != 0 {
            w.put(&self.c_tag.unwrap_or_default());
        }
        if d & Self::S_TAG != 0 {
            w.put(&self.s_tag.unwrap_or_default());
        }
    }
}

/// Outer Header Removal (IE 95, clause 8.2.64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OuterHeaderRemoval {
    /// Outer header removal description (see the associated constants).
    pub description: u8,
    /// GTP-U extension header deletion flags (bit 1: PDU Session Container).
    pub gtpu_extension_header_deletion: Option<u8>,
}

impl OuterHeaderRemoval {
    /// GTP-U/UDP/IPv4.
    pub const GTPU_UDP_IPV4: u8 = 0;
    /// GTP-U/UDP/IPv6.
    pub const GTPU_UDP_IPV6: u8 = 1;
    /// UDP/IPv4.
    pub const UDP_IPV4: u8 = 2;
    /// UDP/IPv6.
    pub const UDP_IPV6: u8 = 3;
    /// IPv4.
    pub const IPV4: u8 = 4;
    /// IPv6.
    pub const IPV6: u8 = 5;
    /// GTP-U/UDP/IP (either version).
    pub const GTPU_UDP_IP: u8 = 6;
    /// VLAN S-TAG.
    pub const VLAN_S_TAG: u8 = 7;
    /// S-TAG and C-TAG.
    pub const S_TAG_AND_C_TAG: u8 = 8;
}

impl<'a> IeValue<'a> for OuterHeaderRemoval {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        Ok(OuterHeaderRemoval {
            description: take::<1>(value, 0, ie)?[0],
            gtpu_extension_header_deletion: value.get(1).copied(),
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(self.description);
        if let Some(b) = self.gtpu_extension_header_deletion {
            w.put_u8(b);
        }
    }
}

/// Failed Rule ID (IE 114, clause 8.2.80): the rule a UP function could not install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailedRuleId {
    /// A PDR.
    Pdr(u16),
    /// A FAR.
    Far(u32),
    /// A QER.
    Qer(u32),
    /// A URR.
    Urr(u32),
    /// A BAR.
    Bar(u8),
}

impl<'a> IeValue<'a> for FailedRuleId {
    fn parse_value(value: &'a [u8], ie: u16) -> Result<Self> {
        let id32 = || take(value, 1, ie).map(u32::from_be_bytes);
        Ok(match take::<1>(value, 0, ie)?[0] & 0x1f {
            0 => FailedRuleId::Pdr(u16::from_be_bytes(take(value, 1, ie)?)),
            1 => FailedRuleId::Far(id32()?),
            2 => FailedRuleId::Qer(id32()?),
            3 => FailedRuleId::Urr(id32()?),
            4 => FailedRuleId::Bar(take::<1>(value, 1, ie)?[0]),
            _ => return Err(Error::BadIeValue { ie }),
        })
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        match *self {
            FailedRuleId::Pdr(id) => {
                w.put_u8(0);
                w.put_u16(id);
            }
            FailedRuleId::Far(id) => {
                w.put_u8(1);
                w.put_u32(id);
            }
            FailedRuleId::Qer(id) => {
                w.put_u8(2);
                w.put_u32(id);
            }
            FailedRuleId::Urr(id) => {
                w.put_u8(3);
                w.put_u32(id);
            }
            FailedRuleId::Bar(id) => {
                w.put_u8(4);
                w.put_u8(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a, T: IeValue<'a>>(value: &'a [u8]) -> Result<T> {
        T::parse_value(value, 999)
    }

    fn emit<'a, T: IeValue<'a>>(v: &T) -> Vec<u8> {
        let mut buf = alloc::vec![0u8; v.value_len()];
        let mut w = Writer::new(&mut buf);
        v.emit_value(&mut w);
        w.finish().unwrap();
        buf
    }

    #[test]
    fn f_teid_choose_with_choose_id_is_read() {
        // CH, CHID, V4: "choose an IPv4 F-TEID, shared by choose ID 7".
        let v: FTeid = parse(&[0x0d, 0x07]).unwrap();
        assert_eq!(
            v,
            FTeid::Choose {
                ipv4: true,
                ipv6: false,
                choose_id: Some(7)
            }
        );
        assert_eq!(emit(&v), [0x0d, 0x07]);
    }

    #[test]
    fn f_teid_with_both_addresses_round_trips() {
        let bytes = [
            0x03, 0x00, 0x00, 0x00, 0x2a, 10, 0, 0, 1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 1,
        ];
        let v: FTeid = parse(&bytes).unwrap();
        assert_eq!(
            v,
            FTeid::Assigned {
                teid: 42,
                ipv4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                ipv6: Some("2001:db8::1".parse().unwrap())
            }
        );
        assert_eq!(emit(&v), bytes);
    }

    #[test]
    fn f_teid_missing_its_address_is_a_bad_length() {
        assert_eq!(
            parse::<FTeid>(&[0x01, 0, 0, 0, 1, 10, 0]),
            Err(Error::BadIeLength { ie: 999 })
        );
    }

    #[test]
    fn node_id_fqdn_reads_as_a_dotted_name() {
        let bytes = b"\x02\x03upf\x04edge\x03lan";
        let v: NodeId = parse(bytes).unwrap();
        assert_eq!(v.fqdn().as_deref(), Some("upf.edge.lan"));
        assert_eq!(encode_fqdn("upf.edge.lan"), &bytes[1..]);
    }

    #[test]
    fn node_id_of_unknown_type_is_an_invalid_value() {
        assert_eq!(
            parse::<NodeId>(&[0x03, 1, 2, 3, 4]),
            Err(Error::BadIeValue { ie: 999 })
        );
    }

    #[test]
    fn apply_action_accepts_one_and_two_octets() {
        assert_eq!(parse::<ApplyAction>(&[0x02]).unwrap(), ApplyAction::FORW);
        let two = parse::<ApplyAction>(&[0x0c, 0x02]).unwrap();
        assert_eq!(
            two,
            ApplyAction::BUFF | ApplyAction::NOCP | ApplyAction::BDPN
        );
        assert_eq!(emit(&two), [0x0c, 0x02]);
        assert_eq!(emit(&ApplyAction::DROP), [0x01]);
    }

    #[test]
    fn mbr_is_two_40_bit_rates() {
        let bytes = [0, 0, 0x01, 0x86, 0xa0, 0, 0, 0x03, 0x0d, 0x40];
        let v: Bitrate = parse(&bytes).unwrap();
        assert_eq!((v.uplink, v.downlink), (100_000, 200_000));
        assert_eq!(emit(&v), bytes);
    }

    #[test]
    fn volume_threshold_keeps_only_flagged_values() {
        let bytes = [0x05, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x08, 0];
        let v: Volume = parse(&bytes).unwrap();
        assert_eq!(v.total, Some(0x1000));
        assert_eq!(v.uplink, None);
        assert_eq!(v.downlink, Some(0x800));
        assert_eq!(emit(&v), bytes);
    }

    #[test]
    fn outer_header_creation_gtpu_ipv4_is_ten_octets() {
        let v = OuterHeaderCreation::gtpu_ipv4(0x1234_5678, Ipv4Addr::new(192, 168, 1, 5));
        let bytes = emit(&v);
        assert_eq!(bytes, [0x01, 0x00, 0x12, 0x34, 0x56, 0x78, 192, 168, 1, 5]);
        assert_eq!(parse::<OuterHeaderCreation>(&bytes).unwrap(), v);
    }

    #[test]
    fn ue_ip_address_destination_v4_round_trips() {
        let bytes = [0x06, 10, 45, 0, 2];
        let v: UeIpAddress = parse(&bytes).unwrap();
        assert_eq!(v.ipv4, Some(Ipv4Addr::new(10, 45, 0, 2)));
        assert!(v.destination);
        assert_eq!(emit(&v), bytes);
    }

    #[test]
    fn sdf_filter_with_every_field_round_trips() {
        let fd = b"permit out ip from any to assigned";
        let v = SdfFilter {
            flow_description: Some(fd),
            tos_traffic_class: Some(0x2cfc),
            security_parameter_index: Some(7),
            flow_label: Some(0x12345),
            sdf_filter_id: Some(9),
        };
        let bytes = emit(&v);
        assert_eq!(&bytes[..4], &[0x1f, 0x00, 0x00, fd.len() as u8]);
        assert_eq!(parse::<SdfFilter>(&bytes).unwrap(), v);
        assert_eq!(
            parse::<SdfFilter>(&bytes[..20]),
            Err(Error::BadIeLength { ie: 999 })
        );
    }

    #[test]
    fn reporting_triggers_emit_the_shortest_form() {
        let v = ReportingTriggers::VOLTH | ReportingTriggers::PERIO;
        assert_eq!(emit(&v), [0x03, 0x00]);
        let v = ReportingTriggers::UPINT;
        assert_eq!(emit(&v), [0x00, 0x00, 0x02]);
        assert_eq!(
            parse::<ReportingTriggers>(&[0x01]),
            Err(Error::BadIeLength { ie: 999 })
        );
    }

    #[test]
    fn gate_status_reads_both_gates() {
        let v: GateStatus = parse(&[0x04]).unwrap();
        assert!(!v.uplink_open());
        assert!(v.downlink_open());
    }

    #[test]
    fn failed_rule_id_names_the_rule() {
        assert_eq!(
            parse::<FailedRuleId>(&[0x00, 0x00, 0x05]).unwrap(),
            FailedRuleId::Pdr(5)
        );
        assert_eq!(
            parse::<FailedRuleId>(&[0x09, 0x00]),
            Err(Error::BadIeValue { ie: 999 })
        );
    }
}
