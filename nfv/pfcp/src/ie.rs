//! Information elements: the generic TLV layer (TS 29.244 clause 8.1.1), the byte sink used to
//! emit them, and the trait the typed IE representations implement.

use crate::{Error, Result};

/// IE type values (TS 29.244 clause 8.1.2, table 8.1.2-1).
pub mod ie_type {
    /// Create PDR (grouped).
    pub const CREATE_PDR: u16 = 1;
    /// PDI (grouped).
    pub const PDI: u16 = 2;
    /// Create FAR (grouped).
    pub const CREATE_FAR: u16 = 3;
    /// Forwarding Parameters (grouped).
    pub const FORWARDING_PARAMETERS: u16 = 4;
    /// Duplicating Parameters (grouped).
    pub const DUPLICATING_PARAMETERS: u16 = 5;
    /// Create URR (grouped).
    pub const CREATE_URR: u16 = 6;
    /// Create QER (grouped).
    pub const CREATE_QER: u16 = 7;
    /// Created PDR (grouped).
    pub const CREATED_PDR: u16 = 8;
    /// Update PDR (grouped).
    pub const UPDATE_PDR: u16 = 9;
    /// Update FAR (grouped).
    pub const UPDATE_FAR: u16 = 10;
    /// Update Forwarding Parameters (grouped).
    pub const UPDATE_FORWARDING_PARAMETERS: u16 = 11;
    /// Update BAR in a Session Report Response (grouped).
    pub const UPDATE_BAR_SESSION_REPORT_RESPONSE: u16 = 12;
    /// Update URR (grouped).
    pub const UPDATE_URR: u16 = 13;
    /// Update QER (grouped).
    pub const UPDATE_QER: u16 = 14;
    /// Remove PDR (grouped).
    pub const REMOVE_PDR: u16 = 15;
    /// Remove FAR (grouped).
    pub const REMOVE_FAR: u16 = 16;
    /// Remove URR (grouped).
    pub const REMOVE_URR: u16 = 17;
    /// Remove QER (grouped).
    pub const REMOVE_QER: u16 = 18;
    /// Cause.
    pub const CAUSE: u16 = 19;
    /// Source Interface.
    pub const SOURCE_INTERFACE: u16 = 20;
    /// F-TEID.
    pub const F_TEID: u16 = 21;
    /// Network Instance.
    pub const NETWORK_INSTANCE: u16 = 22;
    /// SDF Filter.
    pub const SDF_FILTER: u16 = 23;
    /// Application ID.
    pub const APPLICATION_ID: u16 = 24;
    /// Gate Status.
    pub const GATE_STATUS: u16 = 25;
    /// MBR.
    pub const MBR: u16 = 26;
    /// GBR.
    pub const GBR: u16 = 27;
    /// QER Correlation ID.
    pub const QER_CORRELATION_ID: u16 = 28;
    /// Precedence.
    pub const PRECEDENCE: u16 = 29;
    /// Transport Level Marking.
    pub const TRANSPORT_LEVEL_MARKING: u16 = 30;
    /// Volume Threshold.
    pub const VOLUME_THRESHOLD: u16 = 31;
    /// Time Threshold.
    pub const TIME_THRESHOLD: u16 = 32;
    /// Reporting Triggers.
    pub const REPORTING_TRIGGERS: u16 = 37;
    /// Report Type.
    pub const REPORT_TYPE: u16 = 39;
    /// Offending IE.
    pub const OFFENDING_IE: u16 = 40;
    /// Destination Interface.
    pub const DESTINATION_INTERFACE: u16 = 42;
    /// UP Function Features.
    pub const UP_FUNCTION_FEATURES: u16 = 43;
    /// Apply Action.
    pub const APPLY_ACTION: u16 = 44;
    /// Downlink Data Notification Delay.
    pub const DOWNLINK_DATA_NOTIFICATION_DELAY: u16 = 46;
    /// DL Buffering Duration.
    pub const DL_BUFFERING_DURATION: u16 = 47;
    /// PFCPSMReq-Flags.
    pub const PFCPSMREQ_FLAGS: u16 = 49;
    /// PFCPSRRsp-Flags.
    pub const PFCPSRRSP_FLAGS: u16 = 50;
    /// PDR ID.
    pub const PDR_ID: u16 = 56;
    /// F-SEID.
    pub const F_SEID: u16 = 57;
    /// Node ID.
    pub const NODE_ID: u16 = 60;
    /// Measurement Method.
    pub const MEASUREMENT_METHOD: u16 = 62;
    /// Usage Report Trigger.
    pub const USAGE_REPORT_TRIGGER: u16 = 63;
    /// Measurement Period.
    pub const MEASUREMENT_PERIOD: u16 = 64;
    /// Volume Measurement.
    pub const VOLUME_MEASUREMENT: u16 = 66;
    /// Duration Measurement.
    pub const DURATION_MEASUREMENT: u16 = 67;
    /// Time of First Packet.
    pub const TIME_OF_FIRST_PACKET: u16 = 69;
    /// Time of Last Packet.
    pub const TIME_OF_LAST_PACKET: u16 = 70;
    /// Quota Holding Time.
    pub const QUOTA_HOLDING_TIME: u16 = 71;
    /// Volume Quota.
    pub const VOLUME_QUOTA: u16 = 73;
    /// Time Quota.
    pub const TIME_QUOTA: u16 = 74;
    /// Start Time.
    pub const START_TIME: u16 = 75;
    /// End Time.
    pub const END_TIME: u16 = 76;
    /// Query URR (grouped).
    pub const QUERY_URR: u16 = 77;
    /// Usage Report in a Session Modification Response (grouped).
    pub const USAGE_REPORT_SESSION_MODIFICATION_RESPONSE: u16 = 78;
    /// Usage Report in a Session Deletion Response (grouped).
    pub const USAGE_REPORT_SESSION_DELETION_RESPONSE: u16 = 79;
    /// Usage Report in a Session Report Request (grouped).
    pub const USAGE_REPORT_SESSION_REPORT_REQUEST: u16 = 80;
    /// URR ID.
    pub const URR_ID: u16 = 81;
    /// Downlink Data Report (grouped).
    pub const DOWNLINK_DATA_REPORT: u16 = 83;
    /// Outer Header Creation.
    pub const OUTER_HEADER_CREATION: u16 = 84;
    /// Create BAR (grouped).
    pub const CREATE_BAR: u16 = 85;
    /// Update BAR in a Session Modification Request (grouped).
    pub const UPDATE_BAR_SESSION_MODIFICATION_REQUEST: u16 = 86;
    /// Remove BAR (grouped).
    pub const REMOVE_BAR: u16 = 87;
    /// BAR ID.
    pub const BAR_ID: u16 = 88;
    /// CP Function Features.
    pub const CP_FUNCTION_FEATURES: u16 = 89;
    /// Usage Information.
    pub const USAGE_INFORMATION: u16 = 90;
    /// UE IP Address.
    pub const UE_IP_ADDRESS: u16 = 93;
    /// Outer Header Removal.
    pub const OUTER_HEADER_REMOVAL: u16 = 95;
    /// Recovery Time Stamp.
    pub const RECOVERY_TIME_STAMP: u16 = 96;
    /// Error Indication Report (grouped).
    pub const ERROR_INDICATION_REPORT: u16 = 99;
    /// UR-SEQN.
    pub const UR_SEQN: u16 = 104;
    /// FAR ID.
    pub const FAR_ID: u16 = 108;
    /// QER ID.
    pub const QER_ID: u16 = 109;
    /// PFCP Association Release Request (flags).
    pub const PFCP_ASSOCIATION_RELEASE_REQUEST: u16 = 111;
    /// Graceful Release Period.
    pub const GRACEFUL_RELEASE_PERIOD: u16 = 112;
    /// PDN Type.
    pub const PDN_TYPE: u16 = 113;
    /// Failed Rule ID.
    pub const FAILED_RULE_ID: u16 = 114;
    /// User Plane Inactivity Timer.
    pub const USER_PLANE_INACTIVITY_TIMER: u16 = 117;
    /// QFI.
    pub const QFI: u16 = 124;
    /// Suggested Buffering Packets Count.
    pub const SUGGESTED_BUFFERING_PACKETS_COUNT: u16 = 140;
    /// APN/DNN.
    pub const APN_DNN: u16 = 159;
    /// Bit set in the type of vendor-specific IEs, which carry an Enterprise ID.
    pub const ENTERPRISE_BIT: u16 = 0x8000;
}

/// One IE as found in a buffer: type, Enterprise ID (vendor-specific IEs) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ie<'a> {
    /// IE type.
    pub ie_type: u16,
    /// Enterprise ID, present when the type has the enterprise bit set.
    pub enterprise_id: Option<u16>,
    /// The value (for grouped IEs, the embedded IEs).
    pub value: &'a [u8],
}

impl Ie<'_> {
    /// Whether this is a vendor-specific IE.
    pub fn is_vendor_specific(&self) -> bool {
        self.enterprise_id.is_some()
    }
}

/// Zero-copy iterator over a sequence of IEs; yields an error once, then stops.
#[derive(Debug, Clone)]
pub struct IeIter<'a> {
    data: &'a [u8],
}

impl<'a> IeIter<'a> {
    /// Iterates over the IEs in `data` (a message's payload or a grouped IE's value).
    pub fn new(data: &'a [u8]) -> Self {
        IeIter { data }
    }
}

impl<'a> Iterator for IeIter<'a> {
    type Item = Result<Ie<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let data = core::mem::take(&mut self.data);
        let Some([t0, t1, l0, l1]) = data.first_chunk::<4>().copied() else {
            let ie_type = match data {
                [t0, t1, ..] => u16::from_be_bytes([*t0, *t1]),
                _ => 0,
            };
            return Some(Err(Error::BadIeLength { ie: ie_type }));
        };
        let ie_type = u16::from_be_bytes([t0, t1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let Some(value) = data.get(4..4 + len) else {
            return Some(Err(Error::BadIeLength { ie: ie_type }));
        };
        let (enterprise_id, value) = if ie_type & ie_type::ENTERPRISE_BIT != 0 {
            match value {
                [e0, e1, rest @ ..] => (Some(u16::from_be_bytes([*e0, *e1])), rest),
                _ => return Some(Err(Error::BadIeLength { ie: ie_type })),
            }
        } else {
            (None, value)
        };
        self.data = &data[4 + len..];
        Some(Ok(Ie {
            ie_type,
            enterprise_id,
            value,
        }))
    }
}

/// The byte sink emit functions write into. Made with [`Writer::new`] it writes into a buffer
/// (never past its end: overflowing is remembered and reported by [`Writer::finish`]); made
/// with [`Writer::counter`] it only counts, which is how `buffer_len` is computed, so length
/// and content cannot disagree.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: Option<&'b mut [u8]>,
    pos: usize,
    error: Option<Error>,
}

impl<'b> Writer<'b> {
    /// A writer into `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Writer {
            buf: Some(buf),
            pos: 0,
            error: None,
        }
    }

    /// A writer that only counts octets.
    pub fn counter() -> Writer<'static> {
        Writer {
            buf: None,
            pos: 0,
            error: None,
        }
    }

    /// Octets written (or counted) so far.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The number of octets written, or the first error (buffer too small, length overflow).
    pub fn finish(self) -> Result<usize> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.pos),
        }
    }

    fn fail(&mut self, error: Error) {
        self.error.get_or_insert(error);
    }

    /// Appends octets.
    pub fn put(&mut self, bytes: &[u8]) {
        if let Some(buf) = self.buf.as_deref_mut() {
            match buf.get_mut(self.pos..self.pos + bytes.len()) {
                Some(dst) => dst.copy_from_slice(bytes),
                None => self.fail(Error::BufferTooSmall),
            }
        }
        self.pos += bytes.len();
    }

    /// Appends one octet.
    pub fn put_u8(&mut self, value: u8) {
        self.put(&[value]);
    }

    /// Appends a big-endian u16.
    pub fn put_u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub fn put_u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    /// Appends a big-endian u64.
    pub fn put_u64(&mut self, value: u64) {
        self.put(&value.to_be_bytes());
    }

    fn patch_u16(&mut self, at: usize, value: u16) {
        if let Some(dst) = self.buf.as_deref_mut().and_then(|b| b.get_mut(at..at + 2)) {
            dst.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Appends a whole IE: type, length and the value `value` emits.
    pub fn ie<'a, V: IeValue<'a>>(&mut self, ie_type: u16, value: &V) {
        let start = self.pos;
        self.put_u16(ie_type);
        self.put_u16(0);
        value.emit_value(self);
        match u16::try_from(self.pos - start - 4) {
            Ok(len) => self.patch_u16(start + 2, len),
            Err(_) => self.fail(Error::TooLong),
        }
    }
}

/// A typed IE value: parsed from and emitted to the octets after the IE's type and length.
pub trait IeValue<'a>: Sized {
    /// Parses the value of an IE of type `ie_type` (used to name the IE in errors). Octets
    /// beyond what the type defines are ignored, as the specification allows IEs to grow.
    fn parse_value(value: &'a [u8], ie_type: u16) -> Result<Self>;

    /// Writes the value.
    fn emit_value(&self, w: &mut Writer<'_>);

    /// Length of the value this emits.
    fn value_len(&self) -> usize {
        let mut w = Writer::counter();
        self.emit_value(&mut w);
        w.len()
    }
}

/// Checks that an IE value holds at least `n` octets.
pub(crate) fn need(value: &[u8], n: usize, ie: u16) -> Result<()> {
    if value.len() < n {
        Err(Error::BadIeLength { ie })
    } else {
        Ok(())
    }
}

/// Reads `N` octets at `at`, or fails naming the IE.
pub(crate) fn take<const N: usize>(value: &[u8], at: usize, ie: u16) -> Result<[u8; N]> {
    value
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::BadIeLength { ie })
}

impl<'a> IeValue<'a> for u8 {
    fn parse_value(value: &'a [u8], ie_type: u16) -> Result<Self> {
        Ok(take::<1>(value, 0, ie_type)?[0])
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u8(*self);
    }
}

impl<'a> IeValue<'a> for u16 {
    fn parse_value(value: &'a [u8], ie_type: u16) -> Result<Self> {
        Ok(u16::from_be_bytes(take(value, 0, ie_type)?))
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u16(*self);
    }
}

impl<'a> IeValue<'a> for u32 {
    fn parse_value(value: &'a [u8], ie_type: u16) -> Result<Self> {
        Ok(u32::from_be_bytes(take(value, 0, ie_type)?))
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put_u32(*self);
    }
}

impl<'a> IeValue<'a> for &'a [u8] {
    fn parse_value(value: &'a [u8], _ie_type: u16) -> Result<Self> {
        Ok(value)
    }
    fn emit_value(&self, w: &mut Writer<'_>) {
        w.put(self);
    }
}

/// Declares a struct made of IEs (a grouped IE or a message body) with its [`IeValue`]
/// implementation. Each field is `mandatory`, `optional`, `multiple` (any number) or
/// `one_or_more`; fields are emitted in declaration order; unknown IEs are skipped on parse; the
/// first occurrence of a single-valued IE wins.
macro_rules! ie_group {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(<$lt:lifetime>)? {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $kind:ident $ty:ty = $ie:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name $(<$lt>)? {
            $(
                $(#[$fmeta])*
                pub $field: ie_group!(@ty $kind $ty),
            )*
        }

        impl<'a> $crate::ie::IeValue<'a> for $name $(<$lt>)? {
            #[allow(unused_variables)]
            fn parse_value(value: &'a [u8], parent: u16) -> $crate::Result<Self> {
                $( let mut $field: ie_group!(@slot $kind $ty) = Default::default(); )*
                for ie in $crate::ie::IeIter::new(value) {
                    let ie = ie?;
                    $(
                        if ie.ie_type == $ie {
                            let v = <$ty as $crate::ie::IeValue<'a>>::parse_value(ie.value, $ie)?;
                            ie_group!(@store $kind $field v);
                            continue;
                        }
                    )*
                }
                Ok($name {
                    $( $field: ie_group!(@take $kind $field $ie, parent), )*
                })
            }

            #[allow(unused_variables)]
            fn emit_value(&self, w: &mut $crate::ie::Writer<'_>) {
                $( ie_group!(@emit $kind w, $ie, &self.$field); )*
            }
        }
    };

    (@ty mandatory $ty:ty) => { $ty };
    (@ty optional $ty:ty) => { Option<$ty> };
    (@ty multiple $ty:ty) => { alloc::vec::Vec<$ty> };
    (@ty one_or_more $ty:ty) => { alloc::vec::Vec<$ty> };

    (@slot mandatory $ty:ty) => { Option<$ty> };
    (@slot optional $ty:ty) => { Option<$ty> };
    (@slot multiple $ty:ty) => { alloc::vec::Vec<$ty> };
    (@slot one_or_more $ty:ty) => { alloc::vec::Vec<$ty> };

    (@store mandatory $field:ident $v:ident) => { if $field.is_none() { $field = Some($v); } };
    (@store optional $field:ident $v:ident) => { if $field.is_none() { $field = Some($v); } };
    (@store multiple $field:ident $v:ident) => { $field.push($v) };
    (@store one_or_more $field:ident $v:ident) => { $field.push($v) };

    (@take mandatory $field:ident $ie:expr, $parent:ident) => {
        $field.ok_or($crate::Error::MissingIe { ie: $ie, parent: $parent })?
    };
    (@take optional $field:ident $ie:expr, $parent:ident) => { $field };
    (@take multiple $field:ident $ie:expr, $parent:ident) => { $field };
    (@take one_or_more $field:ident $ie:expr, $parent:ident) => {{
        if $field.is_empty() {
            return Err($crate::Error::MissingIe { ie: $ie, parent: $parent });
        }
        $field
    }};

    (@emit mandatory $w:ident, $ie:expr, $v:expr) => { $w.ie($ie, $v) };
    (@emit optional $w:ident, $ie:expr, $v:expr) => { if let Some(v) = $v { $w.ie($ie, v) } };
    (@emit multiple $w:ident, $ie:expr, $v:expr) => { for v in $v { $w.ie($ie, v) } };
    (@emit one_or_more $w:ident, $ie:expr, $v:expr) => { for v in $v { $w.ie($ie, v) } };
}

pub(crate) use ie_group;

#[cfg(test)]
mod tests {
    use super::*;

    /// A Node ID (IPv4 10.0.0.1), an unknown IE 0x0fff, a vendor-specific IE of enterprise
    /// 10415 and a Recovery Time Stamp, as a CP function might send them.
    static IES: [u8; 31] = [
        0x00, 0x3c, 0x00, 0x05, 0x00, 0x0a, 0x00, 0x00, 0x01, // Node ID
        0x0f, 0xff, 0x00, 0x01, 0xaa, // unknown
        0x80, 0x01, 0x00, 0x04, 0x28, 0xaf, 0xbe, 0xef, // vendor IE 1, enterprise 10415
        0x00, 0x60, 0x00, 0x04, 0xe5, 0xa1, 0xb2, 0xc3, // Recovery Time Stamp
        0x00, // one stray octet
    ];

    #[test]
    fn iterator_yields_every_ie_then_the_truncation() {
        let ies: alloc::vec::Vec<_> = IeIter::new(&IES).collect();
        assert_eq!(ies.len(), 5);
        let vendor = ies[2].unwrap();
        assert_eq!(vendor.ie_type, 0x8001);
        assert_eq!(vendor.enterprise_id, Some(10415));
        assert_eq!(vendor.value, &[0xbe, 0xef]);
        assert_eq!(ies[3].unwrap().ie_type, ie_type::RECOVERY_TIME_STAMP);
        assert_eq!(ies[4], Err(Error::BadIeLength { ie: 0 }));
    }

    #[test]
    fn ie_running_past_its_container_is_an_error() {
        let mut it = IeIter::new(&IES[..8]);
        assert_eq!(it.next(), Some(Err(Error::BadIeLength { ie: 60 })));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn vendor_ie_without_enterprise_id_is_an_error() {
        let mut it = IeIter::new(&[0x80, 0x01, 0x00, 0x01, 0x00]);
        assert_eq!(it.next(), Some(Err(Error::BadIeLength { ie: 0x8001 })));
    }

    #[test]
    fn writer_reports_a_short_buffer_instead_of_panicking() {
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        w.ie(ie_type::RECOVERY_TIME_STAMP, &0x0102_0304u32);
        assert_eq!(w.len(), 8);
        assert_eq!(w.finish(), Err(Error::BufferTooSmall));
    }
}
