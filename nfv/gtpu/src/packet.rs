//! The GTP-U header (TS 29.281 clause 5): mandatory part, optional fields and the extension
//! header chain.

use crate::{Error, Result};

mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const MESSAGE_TYPE: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const TEID: Range<usize> = 4..8;
    /// The mandatory part; the length field counts what follows it.
    pub const MANDATORY_LEN: usize = 8;
    pub const SEQUENCE_NUMBER: Range<usize> = 8..10;
    pub const N_PDU_NUMBER: usize = 10;
    pub const NEXT_EXTENSION_TYPE: usize = 11;
    /// The mandatory part plus the optional fields present when any of E, S or PN is set.
    pub const OPTIONAL_END: usize = 12;

    pub const VERSION_SHIFT: u8 = 5;
    pub const PT: u8 = 0x10;
    pub const E: u8 = 0x04;
    pub const S: u8 = 0x02;
    pub const PN: u8 = 0x01;
}

macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// Any other value.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

enum_with_unknown! {
    /// GTP-U message type (TS 29.281 clause 6.1).
    pub enum MessageType(u8) {
        /// Echo Request (1).
        EchoRequest = 1,
        /// Echo Response (2).
        EchoResponse = 2,
        /// Error Indication (26).
        ErrorIndication = 26,
        /// Supported Extension Headers Notification (31).
        SupportedExtensionHeadersNotification = 31,
        /// Tunnel Status (253).
        TunnelStatus = 253,
        /// End Marker (254).
        EndMarker = 254,
        /// G-PDU (255): a tunnelled user packet.
        GPdu = 255,
    }
}

/// Extension header types (TS 29.281 clause 5.2.1, figure 5.2.1-3).
pub mod extension_type {
    /// No more extension headers.
    pub const NONE: u8 = 0x00;
    /// Service Class Indicator.
    pub const SERVICE_CLASS_INDICATOR: u8 = 0x20;
    /// UDP Port (used in Error Indication).
    pub const UDP_PORT: u8 = 0x40;
    /// RAN Container.
    pub const RAN_CONTAINER: u8 = 0x81;
    /// Long PDCP PDU Number (type 0x82).
    pub const LONG_PDCP_PDU_NUMBER: u8 = 0x82;
    /// Xw RAN Container.
    pub const XW_RAN_CONTAINER: u8 = 0x83;
    /// NR RAN Container.
    pub const NR_RAN_CONTAINER: u8 = 0x84;
    /// PDU Session Container (TS 38.415).
    pub const PDU_SESSION_CONTAINER: u8 = 0x85;
    /// PDCP PDU Number.
    pub const PDCP_PDU_NUMBER: u8 = 0xc0;

    /// Whether the receiving endpoint must understand `kind` (bit 8 of the type set,
    /// TS 29.281 clause 5.2.1); otherwise an unknown header may be skipped.
    pub const fn comprehension_required(kind: u8) -> bool {
        kind & 0x80 != 0
    }
}

/// A zero-copy view of a GTP-U packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header, the optional fields and the whole extension header chain fit
    /// the buffer and the length field, so that no getter can panic.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        if data.len() < field::MANDATORY_LEN {
            return Err(Error::Truncated);
        }
        let total = self.total_len();
        if total > data.len() {
            return Err(Error::BadLength);
        }
        if self.has_optional_fields() && total < field::OPTIONAL_END {
            return Err(Error::BadLength);
        }
        let mut iter = self.extension_headers();
        for header in &mut iter {
            header?;
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The version field (1 for GTP-U).
    pub fn version(&self) -> u8 {
        self.flags() >> field::VERSION_SHIFT
    }

    /// The protocol type bit (true for GTP, false for GTP').
    pub fn protocol_type(&self) -> bool {
        self.flags() & field::PT != 0
    }

    /// The E flag: a next extension header type field is meaningful.
    pub fn extension_flag(&self) -> bool {
        self.flags() & field::E != 0
    }

    /// The S flag: the sequence number field is meaningful.
    pub fn sequence_flag(&self) -> bool {
        self.flags() & field::S != 0
    }

    /// The PN flag: the N-PDU number field is meaningful.
    pub fn n_pdu_flag(&self) -> bool {
        self.flags() & field::PN != 0
    }

    /// Whether the 4 optional octets (sequence number, N-PDU number, next type) are present.
    pub fn has_optional_fields(&self) -> bool {
        self.flags() & (field::E | field::S | field::PN) != 0
    }

    /// The message type.
    pub fn message_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::MESSAGE_TYPE])
    }

    /// The length field: octets after the mandatory 8-octet header.
    pub fn length(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::LENGTH.start], d[field::LENGTH.start + 1]])
    }

    /// Length of the whole packet according to the length field (8 + length).
    pub fn total_len(&self) -> usize {
        field::MANDATORY_LEN + usize::from(self.length())
    }

    /// The tunnel endpoint identifier.
    pub fn teid(&self) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[4], d[5], d[6], d[7]])
    }

    /// The sequence number, when the S flag is set.
    pub fn sequence_number(&self) -> Option<u16> {
        self.sequence_flag().then(|| {
            let d = self.buffer.as_ref();
            u16::from_be_bytes([
                d[field::SEQUENCE_NUMBER.start],
                d[field::SEQUENCE_NUMBER.start + 1],
            ])
        })
    }

    /// The N-PDU number, when the PN flag is set.
    pub fn n_pdu_number(&self) -> Option<u8> {
        self.n_pdu_flag()
            .then(|| self.buffer.as_ref()[field::N_PDU_NUMBER])
    }

    /// The type of the first extension header, when the E flag is set.
    pub fn next_extension_header_type(&self) -> Option<u8> {
        self.extension_flag()
            .then(|| self.buffer.as_ref()[field::NEXT_EXTENSION_TYPE])
    }

    /// Iterates over the extension header chain; stops after the first error.
    pub fn extension_headers(&self) -> ExtensionHeaderIter<'_> {
        ExtensionHeaderIter::over(self.buffer.as_ref())
    }

    /// Length of the header: mandatory part, optional fields and extension headers.
    pub fn header_len(&self) -> usize {
        let mut iter = self.extension_headers();
        for header in &mut iter {
            if header.is_err() {
                break;
            }
        }
        iter.offset
    }

    /// Range of the payload within the buffer (see [`Packet::payload`]).
    pub(crate) fn payload_range(&self) -> core::ops::Range<usize> {
        let end = self.total_len().min(self.buffer.as_ref().len());
        self.header_len().min(end)..end
    }

    /// The content after the header and its extensions (the T-PDU of a G-PDU, or the IEs).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }

    /// The PDU Session Container in the extension chain, if any (the QFI lookup of a UPF).
    pub fn pdu_session_info(&self) -> Option<Result<PduSessionInfo>> {
        for header in self.extension_headers() {
            match header {
                Ok(h) if h.kind == extension_type::PDU_SESSION_CONTAINER => {
                    return Some(PduSessionInfo::parse(h.content));
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_flag(&mut self, mask: u8, value: bool) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        if value {
            *b |= mask;
        } else {
            *b &= !mask;
        }
    }

    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::FLAGS];
        *b = (*b & 0x1f) | (version << field::VERSION_SHIFT);
    }

    /// Sets the protocol type bit.
    pub fn set_protocol_type(&mut self, value: bool) {
        self.set_flag(field::PT, value);
    }

    /// Sets the E flag.
    pub fn set_extension_flag(&mut self, value: bool) {
        self.set_flag(field::E, value);
    }

    /// Sets the S flag.
    pub fn set_sequence_flag(&mut self, value: bool) {
        self.set_flag(field::S, value);
    }

    /// Sets the PN flag.
    pub fn set_n_pdu_flag(&mut self, value: bool) {
        self.set_flag(field::PN, value);
    }

    /// Sets the message type.
    pub fn set_message_type(&mut self, value: MessageType) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value.into();
    }

    /// Sets the length field.
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the TEID.
    pub fn set_teid(&mut self, value: u32) {
        self.buffer.as_mut()[field::TEID].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the sequence number field (the S flag is left alone).
    pub fn set_sequence_number(&mut self, value: u16) {
        self.buffer.as_mut()[field::SEQUENCE_NUMBER].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the N-PDU number field (the PN flag is left alone).
    pub fn set_n_pdu_number(&mut self, value: u8) {
        self.buffer.as_mut()[field::N_PDU_NUMBER] = value;
    }

    /// Sets the next extension header type field (the E flag is left alone).
    pub fn set_next_extension_header_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_EXTENSION_TYPE] = value;
    }

    /// The content after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// One extension header as found in the chain: its type and its content (the octets between
/// the length octet and the next-type octet, padding included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionHeader<'a> {
    /// The extension header type (from the previous next-type field).
    pub kind: u8,
    /// The content, `4 * length - 2` octets.
    pub content: &'a [u8],
}

/// Iterator over an extension header chain; yields an error once, then stops.
#[derive(Debug, Clone)]
pub struct ExtensionHeaderIter<'a> {
    data: &'a [u8],
    offset: usize,
    next: u8,
}

impl<'a> ExtensionHeaderIter<'a> {
    /// The chain of the packet in `data` (which holds at least the 8-octet header).
    fn over(data: &'a [u8]) -> Self {
        let packet = Packet::new_unchecked(data);
        let end = packet.total_len().min(data.len());
        let offset = if packet.has_optional_fields() {
            field::OPTIONAL_END
        } else {
            field::MANDATORY_LEN
        };
        let next = packet
            .next_extension_header_type()
            .unwrap_or(extension_type::NONE);
        ExtensionHeaderIter {
            data: &data[..end],
            offset,
            next,
        }
    }
}

impl<'a> Iterator for ExtensionHeaderIter<'a> {
    type Item = Result<ExtensionHeader<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == extension_type::NONE {
            return None;
        }
        let kind = self.next;
        // After an error the chain is abandoned.
        self.next = extension_type::NONE;
        let Some(&units) = self.data.get(self.offset) else {
            return Some(Err(Error::BadExtensionLength { kind }));
        };
        let len = usize::from(units) * 4;
        if len == 0 || self.offset + len > self.data.len() {
            return Some(Err(Error::BadExtensionLength { kind }));
        }
        let content = &self.data[self.offset + 1..self.offset + len - 1];
        self.next = self.data[self.offset + len - 1];
        self.offset += len;
        Some(Ok(ExtensionHeader { kind, content }))
    }
}

/// The PDU Session Container content (TS 38.415 clause 5.5.2), as far as a UPF needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PduSessionInfo {
    /// DL PDU SESSION INFORMATION (PDU type 0).
    Downlink {
        /// QoS flow identifier (6 bits).
        qfi: u8,
        /// Reflective QoS indication.
        rqi: bool,
        /// Paging policy indicator (3 bits), present when the PPP flag is set.
        ppi: Option<u8>,
    },
    /// UL PDU SESSION INFORMATION (PDU type 1).
    Uplink {
        /// QoS flow identifier (6 bits).
        qfi: u8,
    },
}

impl PduSessionInfo {
    /// PDU type value of DL PDU SESSION INFORMATION.
    pub const PDU_TYPE_DOWNLINK: u8 = 0;
    /// PDU type value of UL PDU SESSION INFORMATION.
    pub const PDU_TYPE_UPLINK: u8 = 1;

    /// The QoS flow identifier.
    pub fn qfi(&self) -> u8 {
        match *self {
            PduSessionInfo::Downlink { qfi, .. } | PduSessionInfo::Uplink { qfi } => qfi,
        }
    }

    /// Parses the extension header content (padding included). The optional QMP/SNP/delay
    /// fields are checked for length and skipped.
    pub fn parse(content: &[u8]) -> Result<PduSessionInfo> {
        let bad = Error::BadExtensionHeader {
            kind: extension_type::PDU_SESSION_CONTAINER,
        };
        if content.len() < 2 {
            return Err(bad);
        }
        let (b0, b1) = (content[0], content[1]);
        let qfi = b1 & 0x3f;
        match b0 >> 4 {
            Self::PDU_TYPE_DOWNLINK => {
                let ppp = b1 & 0x80 != 0;
                let needed = 2
                    + usize::from(ppp)
                    + if b0 & 0x08 != 0 { 8 } else { 0 }
                    + if b0 & 0x04 != 0 { 3 } else { 0 }
                    + if b0 & 0x02 != 0 { 4 } else { 0 };
                if content.len() < needed {
                    return Err(bad);
                }
                Ok(PduSessionInfo::Downlink {
                    qfi,
                    rqi: b1 & 0x40 != 0,
                    ppi: ppp.then(|| content[2] >> 5),
                })
            }
            Self::PDU_TYPE_UPLINK => {
                let needed = 2
                    + if b0 & 0x08 != 0 { 24 } else { 0 }
                    + if b0 & 0x04 != 0 { 4 } else { 0 }
                    + if b0 & 0x02 != 0 { 4 } else { 0 }
                    + if b0 & 0x01 != 0 { 3 } else { 0 }
                    + if b1 & 0x80 != 0 { 4 } else { 0 };
                if content.len() < needed {
                    return Err(bad);
                }
                Ok(PduSessionInfo::Uplink { qfi })
            }
            _ => Err(bad),
        }
    }

    /// Length of the content this emits (before padding).
    fn content_len(&self) -> usize {
        match self {
            PduSessionInfo::Downlink { ppi: Some(_), .. } => 3,
            _ => 2,
        }
    }

    /// Writes the content (unpadded) into `out`, which holds at least `content_len` octets.
    fn emit(&self, out: &mut [u8]) {
        match *self {
            PduSessionInfo::Downlink { qfi, rqi, ppi } => {
                out[0] = Self::PDU_TYPE_DOWNLINK << 4;
                out[1] = (qfi & 0x3f)
                    | if rqi { 0x40 } else { 0 }
                    | if ppi.is_some() { 0x80 } else { 0 };
                if let Some(ppi) = ppi {
                    out[2] = (ppi & 0x07) << 5;
                }
            }
            PduSessionInfo::Uplink { qfi } => {
                out[0] = Self::PDU_TYPE_UPLINK << 4;
                out[1] = qfi & 0x3f;
            }
        }
    }
}

fn two(c: &[u8]) -> Option<[u8; 2]> {
    c.first_chunk::<2>().copied()
}

/// A parsed extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionHeaderRepr<'a> {
    /// PDU Session Container (0x85).
    PduSessionContainer(PduSessionInfo),
    /// UDP Port (0x40): the source port of the triggering message.
    UdpPort(u16),
    /// PDCP PDU Number (0xC0).
    PdcpPduNumber(u16),
    /// Long PDCP PDU Number (0x82), 18 bits.
    LongPdcpPduNumber(u32),
    /// Service Class Indicator (0x20).
    ServiceClassIndicator(u8),
    /// Any other extension header, content kept as is (its length must be `4n - 2`).
    Other {
        /// Extension header type.
        kind: u8,
        /// Content between the length octet and the next-type octet.
        content: &'a [u8],
    },
}

impl<'a> ExtensionHeaderRepr<'a> {
    /// Parses one extension header from the chain.
    pub fn parse(header: &ExtensionHeader<'a>) -> Result<ExtensionHeaderRepr<'a>> {
        let c = header.content;
        let bad = Error::BadExtensionHeader { kind: header.kind };
        Ok(match header.kind {
            extension_type::PDU_SESSION_CONTAINER => {
                ExtensionHeaderRepr::PduSessionContainer(PduSessionInfo::parse(c)?)
            }
            extension_type::UDP_PORT => {
                ExtensionHeaderRepr::UdpPort(u16::from_be_bytes(two(c).ok_or(bad)?))
            }
            extension_type::PDCP_PDU_NUMBER => {
                ExtensionHeaderRepr::PdcpPduNumber(u16::from_be_bytes(two(c).ok_or(bad)?))
            }
            extension_type::LONG_PDCP_PDU_NUMBER => {
                if c.len() < 3 {
                    return Err(bad);
                }
                ExtensionHeaderRepr::LongPdcpPduNumber(u32::from_be_bytes([
                    0,
                    c[0] & 0x03,
                    c[1],
                    c[2],
                ]))
            }
            extension_type::SERVICE_CLASS_INDICATOR => {
                ExtensionHeaderRepr::ServiceClassIndicator(*c.first().ok_or(bad)?)
            }
            kind => ExtensionHeaderRepr::Other { kind, content: c },
        })
    }

    /// The extension header type.
    pub fn kind(&self) -> u8 {
        match self {
            ExtensionHeaderRepr::PduSessionContainer(_) => extension_type::PDU_SESSION_CONTAINER,
            ExtensionHeaderRepr::UdpPort(_) => extension_type::UDP_PORT,
            ExtensionHeaderRepr::PdcpPduNumber(_) => extension_type::PDCP_PDU_NUMBER,
            ExtensionHeaderRepr::LongPdcpPduNumber(_) => extension_type::LONG_PDCP_PDU_NUMBER,
            ExtensionHeaderRepr::ServiceClassIndicator(_) => {
                extension_type::SERVICE_CLASS_INDICATOR
            }
            ExtensionHeaderRepr::Other { kind, .. } => *kind,
        }
    }

    fn content_len(&self) -> usize {
        match self {
            ExtensionHeaderRepr::PduSessionContainer(p) => p.content_len(),
            ExtensionHeaderRepr::UdpPort(_)
            | ExtensionHeaderRepr::PdcpPduNumber(_)
            | ExtensionHeaderRepr::ServiceClassIndicator(_) => 2,
            ExtensionHeaderRepr::LongPdcpPduNumber(_) => 6,
            ExtensionHeaderRepr::Other { content, .. } => content.len(),
        }
    }

    /// Octets this extension header takes in the chain (length, content, padding, next type).
    pub fn buffer_len(&self) -> usize {
        (self.content_len() + 2).div_ceil(4) * 4
    }

    /// Writes the header into `out` (exactly `buffer_len()` octets) with the given next type.
    fn emit(&self, out: &mut [u8], next: u8) {
        let len = out.len();
        out.fill(0);
        out[0] = (len / 4) as u8;
        out[len - 1] = next;
        let content = &mut out[1..len - 1];
        match *self {
            ExtensionHeaderRepr::PduSessionContainer(p) => p.emit(content),
            ExtensionHeaderRepr::UdpPort(v) | ExtensionHeaderRepr::PdcpPduNumber(v) => {
                content[..2].copy_from_slice(&v.to_be_bytes())
            }
            ExtensionHeaderRepr::LongPdcpPduNumber(v) => {
                content[..3].copy_from_slice(&(v & 0x3_ffff).to_be_bytes()[1..])
            }
            ExtensionHeaderRepr::ServiceClassIndicator(v) => content[0] = v,
            ExtensionHeaderRepr::Other { content: c, .. } => content[..c.len()].copy_from_slice(c),
        }
    }
}

/// Most extension headers a [`Repr`] holds; the zero-copy [`Packet`] view has no limit.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// A fixed-capacity list of parsed extension headers (no allocation).
#[derive(Debug, Clone, Copy)]
pub struct ExtensionHeaders<'a> {
    items: [ExtensionHeaderRepr<'a>; MAX_EXTENSION_HEADERS],
    len: usize,
}

impl<'a> ExtensionHeaders<'a> {
    /// An empty chain.
    pub const fn new() -> Self {
        ExtensionHeaders {
            items: [ExtensionHeaderRepr::Other {
                kind: 0,
                content: &[],
            }; MAX_EXTENSION_HEADERS],
            len: 0,
        }
    }

    /// Appends a header; fails when the list is full.
    pub fn push(&mut self, header: ExtensionHeaderRepr<'a>) -> Result<()> {
        if self.len == MAX_EXTENSION_HEADERS {
            return Err(Error::TooManyExtensionHeaders);
        }
        self.items[self.len] = header;
        self.len += 1;
        Ok(())
    }

    /// The headers, in chain order.
    pub fn as_slice(&self) -> &[ExtensionHeaderRepr<'a>] {
        &self.items[..self.len]
    }

    /// Whether the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The PDU Session Container, if any.
    pub fn pdu_session_info(&self) -> Option<PduSessionInfo> {
        self.as_slice().iter().find_map(|h| match h {
            ExtensionHeaderRepr::PduSessionContainer(p) => Some(*p),
            _ => None,
        })
    }

    fn buffer_len(&self) -> usize {
        self.as_slice().iter().map(|h| h.buffer_len()).sum()
    }
}

impl Default for ExtensionHeaders<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for ExtensionHeaders<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ExtensionHeaders<'_> {}

/// A parsed GTP-U header: the fields of the mandatory and optional parts, the extension chain
/// and the length of what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Message type.
    pub message_type: MessageType,
    /// Tunnel endpoint identifier.
    pub teid: u32,
    /// Sequence number (S flag).
    pub sequence_number: Option<u16>,
    /// N-PDU number (PN flag).
    pub n_pdu_number: Option<u8>,
    /// Extension headers (E flag when not empty).
    pub extension_headers: ExtensionHeaders<'a>,
    /// Octets after the header and its extensions (T-PDU or IEs).
    pub payload_len: usize,
}

impl<'a> Repr<'a> {
    /// A header without optional fields.
    pub const fn new(message_type: MessageType, teid: u32, payload_len: usize) -> Self {
        Repr {
            message_type,
            teid,
            sequence_number: None,
            n_pdu_number: None,
            extension_headers: ExtensionHeaders::new(),
            payload_len,
        }
    }

    /// Parses a checked packet: version 1, PT 1, extension chain of at most
    /// [`MAX_EXTENSION_HEADERS`] well-formed headers.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if packet.version() != 1 {
            return Err(Error::BadVersion(packet.version()));
        }
        if !packet.protocol_type() {
            return Err(Error::BadProtocolType);
        }
        let mut extension_headers = ExtensionHeaders::new();
        let buffer: &'a T = packet.buffer;
        for header in ExtensionHeaderIter::over(buffer.as_ref()) {
            let header = header?;
            extension_headers.push(ExtensionHeaderRepr::parse(&header)?)?;
        }
        Ok(Repr {
            message_type: packet.message_type(),
            teid: packet.teid(),
            sequence_number: packet.sequence_number(),
            n_pdu_number: packet.n_pdu_number(),
            extension_headers,
            payload_len: packet.payload().len(),
        })
    }

    fn has_optional_fields(&self) -> bool {
        self.sequence_number.is_some()
            || self.n_pdu_number.is_some()
            || !self.extension_headers.is_empty()
    }

    /// Length of the header this emits (mandatory part, optional fields, extensions).
    pub fn header_len(&self) -> usize {
        if self.has_optional_fields() {
            field::OPTIONAL_END + self.extension_headers.buffer_len()
        } else {
            field::MANDATORY_LEN
        }
    }

    /// Length of the whole packet: header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header into the first `header_len()` octets of the packet's buffer; the
    /// length field covers `payload_len` octets after it, which the caller fills in.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let header_len = self.header_len();
        let length = header_len - field::MANDATORY_LEN + self.payload_len;
        let length = u16::try_from(length).map_err(|_| Error::TooLong)?;
        if packet.buffer.as_ref().len() < header_len {
            return Err(Error::BufferTooSmall);
        }
        // The length octet counts 4-octet units.
        if self
            .extension_headers
            .as_slice()
            .iter()
            .any(|h| h.buffer_len() > 4 * usize::from(u8::MAX))
        {
            return Err(Error::TooLong);
        }
        let buf = packet.buffer.as_mut();
        let mut flags = (1 << field::VERSION_SHIFT) | field::PT;
        if !self.extension_headers.is_empty() {
            flags |= field::E;
        }
        if self.sequence_number.is_some() {
            flags |= field::S;
        }
        if self.n_pdu_number.is_some() {
            flags |= field::PN;
        }
        buf[field::FLAGS] = flags;
        buf[field::MESSAGE_TYPE] = self.message_type.into();
        buf[field::LENGTH].copy_from_slice(&length.to_be_bytes());
        buf[field::TEID].copy_from_slice(&self.teid.to_be_bytes());
        if self.has_optional_fields() {
            buf[field::SEQUENCE_NUMBER]
                .copy_from_slice(&self.sequence_number.unwrap_or(0).to_be_bytes());
            buf[field::N_PDU_NUMBER] = self.n_pdu_number.unwrap_or(0);
            let headers = self.extension_headers.as_slice();
            buf[field::NEXT_EXTENSION_TYPE] =
                headers.first().map_or(extension_type::NONE, |h| h.kind());
            let mut offset = field::OPTIONAL_END;
            for (i, header) in headers.iter().enumerate() {
                let next = headers
                    .get(i + 1)
                    .map_or(extension_type::NONE, |h| h.kind());
                let len = header.buffer_len();
                header.emit(&mut buf[offset..offset + len], next);
                offset += len;
            }
        }
        Ok(())
    }
}

/// Header length of a G-PDU emitted by [`emit_gpdu_header`]: 8 octets, or 16/20 with a PDU
/// Session Container.
pub fn gpdu_header_len(pdu_session: Option<&PduSessionInfo>) -> usize {
    match pdu_session {
        None => field::MANDATORY_LEN,
        Some(p) => field::OPTIONAL_END + ExtensionHeaderRepr::PduSessionContainer(*p).buffer_len(),
    }
}

/// Writes a G-PDU header for `teid` (with a PDU Session Container when `pdu_session` is given)
/// into the first [`gpdu_header_len`] octets of `buf`, for a T-PDU of `payload_len` octets that
/// the caller places right after it. Returns the header length.
pub fn emit_gpdu_header(
    buf: &mut [u8],
    teid: u32,
    pdu_session: Option<&PduSessionInfo>,
    payload_len: usize,
) -> Result<usize> {
    let mut repr = Repr::new(MessageType::GPdu, teid, payload_len);
    if let Some(p) = pdu_session {
        repr.extension_headers
            .push(ExtensionHeaderRepr::PduSessionContainer(*p))?;
    }
    repr.emit(&mut Packet::new_unchecked(&mut *buf))?;
    Ok(repr.header_len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An uplink G-PDU as a gNB sends it on N3 (built with scapy 2.8.0): E flag, PDU Session
    /// Container UL with QFI 9, then an IPv4 ICMP echo request from 10.45.0.2 carrying
    /// "outpost".
    static UPLINK_GPDU: [u8; 51] = [
        0x34, 0xff, 0x00, 0x2b, 0x00, 0x00, 0x00, 0x01, // flags E, G-PDU, len 43, TEID 1
        0x00, 0x00, 0x00, 0x85, // seq 0, N-PDU 0, next = PDU Session Container
        0x01, 0x10, 0x09, 0x00, // len 1, UL, QFI 9, no next
        0x45, 0x00, 0x00, 0x23, 0x00, 0x01, 0x00, 0x00, 0x40, 0x01, 0x46, 0x70, 0x0a, 0x2d, 0x00,
        0x02, 0xc6, 0x33, 0x64, 0x07, 0x08, 0x00, 0x30, 0x9e, 0x00, 0x07, 0x00, 0x01, 0x6f, 0x75,
        0x74, 0x70, 0x6f, 0x73, 0x74,
    ];

    /// An Echo Request with sequence number 0x1234 (the S flag is mandatory for Echo).
    static ECHO_REQUEST: [u8; 12] = [
        0x32, 0x01, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x00,
    ];

    #[test]
    fn uplink_gpdu_fields_are_read() {
        let p = Packet::new_checked(&UPLINK_GPDU[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert!(p.protocol_type());
        assert_eq!(p.message_type(), MessageType::GPdu);
        assert_eq!(p.length(), 43);
        assert_eq!(p.teid(), 1);
        assert_eq!(p.sequence_number(), None);
        assert_eq!(p.next_extension_header_type(), Some(0x85));
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.payload(), &UPLINK_GPDU[16..]);
        assert_eq!(
            p.pdu_session_info(),
            Some(Ok(PduSessionInfo::Uplink { qfi: 9 }))
        );
    }

    #[test]
    fn uplink_gpdu_header_round_trips() {
        let p = Packet::new_checked(&UPLINK_GPDU[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 35);
        let mut out = [0u8; 51];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        out[16..].copy_from_slice(&UPLINK_GPDU[16..]);
        assert_eq!(out, UPLINK_GPDU);
    }

    #[test]
    fn echo_request_has_a_sequence_number() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.message_type(), MessageType::EchoRequest);
        assert_eq!(p.sequence_number(), Some(0x1234));
        assert_eq!(p.header_len(), 12);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn truncated_header_is_an_error() {
        assert_eq!(
            Packet::new_checked(&ECHO_REQUEST[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn length_past_the_buffer_is_an_error() {
        assert_eq!(
            Packet::new_checked(&UPLINK_GPDU[..50]).unwrap_err(),
            Error::BadLength
        );
    }

    #[test]
    fn optional_fields_beyond_the_length_are_an_error() {
        let mut bytes = ECHO_REQUEST;
        bytes[3] = 2;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
    }

    #[test]
    fn zero_length_extension_header_is_an_error() {
        let mut bytes = UPLINK_GPDU;
        bytes[12] = 0;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadExtensionLength { kind: 0x85 }
        );
    }

    #[test]
    fn extension_chain_running_past_the_end_is_an_error() {
        let mut bytes = UPLINK_GPDU;
        bytes[12] = 10;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadExtensionLength { kind: 0x85 }
        );
        // A next-type that points past the end of the packet.
        let mut bytes = ECHO_REQUEST;
        bytes[0] |= 0x04;
        bytes[11] = 0x40;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadExtensionLength { kind: 0x40 }
        );
    }

    #[test]
    fn trailing_bytes_after_the_length_are_not_payload() {
        let mut bytes = [0u8; 56];
        bytes[..51].copy_from_slice(&UPLINK_GPDU);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload(), &UPLINK_GPDU[16..]);
    }

    #[test]
    fn gtp_prime_and_version_2_are_rejected() {
        let mut bytes = ECHO_REQUEST;
        bytes[0] = 0x22;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::BadProtocolType);
        bytes[0] = 0x52;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::BadVersion(2));
    }

    #[test]
    fn gpdu_header_with_downlink_qfi_and_ppi_is_20_octets() {
        let info = PduSessionInfo::Downlink {
            qfi: 5,
            rqi: true,
            ppi: Some(3),
        };
        let mut buf = [0u8; 40];
        assert_eq!(gpdu_header_len(Some(&info)), 20);
        let n = emit_gpdu_header(&mut buf, 0xdead_beef, Some(&info), 20).unwrap();
        assert_eq!(n, 20);
        assert_eq!(
            &buf[..20],
            &[
                0x34, 0xff, 0x00, 0x20, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0x85, 0x02, 0x00, 0xc5,
                0x60, 0x00, 0x00, 0x00, 0x00
            ]
        );
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.pdu_session_info(), Some(Ok(info)));
    }

    #[test]
    fn gpdu_header_without_qfi_is_8_octets() {
        let mut buf = [0u8; 8];
        assert_eq!(emit_gpdu_header(&mut buf, 7, None, 100).unwrap(), 8);
        assert_eq!(buf, [0x30, 0xff, 0x00, 0x64, 0, 0, 0, 7]);
    }

    #[test]
    fn too_many_extension_headers_do_not_fit_a_repr() {
        // 9 UDP Port headers chained.
        let mut bytes = [0u8; 12 + 9 * 4];
        bytes[..12].copy_from_slice(&[0x34, 0xff, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0x40]);
        for i in 0..9 {
            let o = 12 + i * 4;
            bytes[o] = 1;
            bytes[o + 3] = if i == 8 { 0 } else { 0x40 };
        }
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.extension_headers().count(), 9);
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::TooManyExtensionHeaders);
    }

    #[test]
    fn short_extension_content_is_an_error_not_a_panic() {
        for kind in [0x40, 0xc0, 0x20, 0x82, 0x85] {
            let header = ExtensionHeader { kind, content: &[] };
            assert_eq!(
                ExtensionHeaderRepr::parse(&header),
                Err(Error::BadExtensionHeader { kind })
            );
        }
    }

    #[test]
    fn oversized_extension_header_is_too_long() {
        let content = [0u8; 1100];
        let mut repr = Repr::new(MessageType::GPdu, 1, 0);
        repr.extension_headers
            .push(ExtensionHeaderRepr::Other {
                kind: 0x81,
                content: &content,
            })
            .unwrap();
        let mut buf = [0u8; 1200];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::TooLong)
        );
    }

    #[test]
    fn comprehension_required_follows_the_two_top_bits() {
        assert!(!extension_type::comprehension_required(0x40));
        assert!(extension_type::comprehension_required(0x85));
        assert!(extension_type::comprehension_required(0xc0));
        assert!(!extension_type::comprehension_required(0x20));
    }
}
