//! The PFCP message header (TS 29.244 clause 7.2.2).

use crate::ie::IeIter;
use crate::{Error, Result};

mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const MESSAGE_TYPE: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    /// The octets the length field does not count.
    pub const LENGTH_EXCLUDED: usize = 4;
    pub const SEID: Range<usize> = 4..12;
    /// Header length without SEID: 4 + sequence number (3) + spare/priority (1).
    pub const NODE_HEADER_LEN: usize = 8;
    /// Header length with SEID.
    pub const SESSION_HEADER_LEN: usize = 16;

    pub const VERSION_SHIFT: u8 = 5;
    pub const FO: u8 = 0x04;
    pub const MP: u8 = 0x02;
    pub const S: u8 = 0x01;
}

/// PFCP message types (TS 29.244 clause 7.3).
pub mod message_type {
    /// Heartbeat Request.
    pub const HEARTBEAT_REQUEST: u8 = 1;
    /// Heartbeat Response.
    pub const HEARTBEAT_RESPONSE: u8 = 2;
    /// PFD Management Request.
    pub const PFD_MANAGEMENT_REQUEST: u8 = 3;
    /// PFD Management Response.
    pub const PFD_MANAGEMENT_RESPONSE: u8 = 4;
    /// Association Setup Request.
    pub const ASSOCIATION_SETUP_REQUEST: u8 = 5;
    /// Association Setup Response.
    pub const ASSOCIATION_SETUP_RESPONSE: u8 = 6;
    /// Association Update Request.
    pub const ASSOCIATION_UPDATE_REQUEST: u8 = 7;
    /// Association Update Response.
    pub const ASSOCIATION_UPDATE_RESPONSE: u8 = 8;
    /// Association Release Request.
    pub const ASSOCIATION_RELEASE_REQUEST: u8 = 9;
    /// Association Release Response.
    pub const ASSOCIATION_RELEASE_RESPONSE: u8 = 10;
    /// Version Not Supported Response.
    pub const VERSION_NOT_SUPPORTED_RESPONSE: u8 = 11;
    /// Node Report Request.
    pub const NODE_REPORT_REQUEST: u8 = 12;
    /// Node Report Response.
    pub const NODE_REPORT_RESPONSE: u8 = 13;
    /// Session Set Deletion Request.
    pub const SESSION_SET_DELETION_REQUEST: u8 = 14;
    /// Session Set Deletion Response.
    pub const SESSION_SET_DELETION_RESPONSE: u8 = 15;
    /// Session Establishment Request.
    pub const SESSION_ESTABLISHMENT_REQUEST: u8 = 50;
    /// Session Establishment Response.
    pub const SESSION_ESTABLISHMENT_RESPONSE: u8 = 51;
    /// Session Modification Request.
    pub const SESSION_MODIFICATION_REQUEST: u8 = 52;
    /// Session Modification Response.
    pub const SESSION_MODIFICATION_RESPONSE: u8 = 53;
    /// Session Deletion Request.
    pub const SESSION_DELETION_REQUEST: u8 = 54;
    /// Session Deletion Response.
    pub const SESSION_DELETION_RESPONSE: u8 = 55;
    /// Session Report Request.
    pub const SESSION_REPORT_REQUEST: u8 = 56;
    /// Session Report Response.
    pub const SESSION_REPORT_RESPONSE: u8 = 57;

    /// Whether a message type belongs to the session-related messages (S flag set).
    pub const fn is_session_message(message_type: u8) -> bool {
        message_type >= 50
    }
}

/// A zero-copy view of a PFCP message: header fields and the IEs behind them.
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

    /// Checks that the header fits the buffer and that the length field is consistent with
    /// both (octets after the message, e.g. a piggybacked one, are allowed).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < field::NODE_HEADER_LEN || len < self.header_len() {
            return Err(Error::Truncated);
        }
        let total = self.total_len();
        if total > len || total < self.header_len() {
            return Err(Error::BadLength);
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

    /// The version field (1).
    pub fn version(&self) -> u8 {
        self.flags() >> field::VERSION_SHIFT
    }

    /// The FO flag: another message follows this one in the datagram.
    pub fn follow_on(&self) -> bool {
        self.flags() & field::FO != 0
    }

    /// The MP flag: the message priority field is present.
    pub fn mp_flag(&self) -> bool {
        self.flags() & field::MP != 0
    }

    /// The S flag: the SEID field is present.
    pub fn s_flag(&self) -> bool {
        self.flags() & field::S != 0
    }

    /// The message type.
    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref()[field::MESSAGE_TYPE]
    }

    /// The length field: octets after the first 4.
    pub fn length(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::LENGTH.start], d[field::LENGTH.start + 1]])
    }

    /// Length of the whole message according to the length field (4 + length).
    pub fn total_len(&self) -> usize {
        field::LENGTH_EXCLUDED + usize::from(self.length())
    }

    /// Length of the header: 8, or 16 with a SEID.
    pub fn header_len(&self) -> usize {
        if self.s_flag() {
            field::SESSION_HEADER_LEN
        } else {
            field::NODE_HEADER_LEN
        }
    }

    /// The SEID, when the S flag is set.
    pub fn seid(&self) -> Option<u64> {
        self.s_flag().then(|| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.buffer.as_ref()[field::SEID]);
            u64::from_be_bytes(b)
        })
    }

    /// The 24-bit sequence number.
    pub fn sequence_number(&self) -> u32 {
        let o = self.header_len() - 4;
        let d = self.buffer.as_ref();
        u32::from_be_bytes([0, d[o], d[o + 1], d[o + 2]])
    }

    /// The message priority (4 bits), when the MP flag is set.
    pub fn message_priority(&self) -> Option<u8> {
        self.mp_flag()
            .then(|| self.buffer.as_ref()[self.header_len() - 1] >> 4)
    }

    /// The IEs of the message (after the header, up to the length field).
    pub fn payload(&self) -> &[u8] {
        let d = self.buffer.as_ref();
        let end = self.total_len().min(d.len());
        &d[self.header_len().min(end)..end]
    }

    /// Iterates over the top-level IEs.
    pub fn ies(&self) -> IeIter<'_> {
        IeIter::new(self.payload())
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

    /// Sets the FO flag.
    pub fn set_follow_on(&mut self, value: bool) {
        self.set_flag(field::FO, value);
    }

    /// Sets the MP flag.
    pub fn set_mp_flag(&mut self, value: bool) {
        self.set_flag(field::MP, value);
    }

    /// Sets the S flag (this moves every field after it).
    pub fn set_s_flag(&mut self, value: bool) {
        self.set_flag(field::S, value);
    }

    /// Sets the message type.
    pub fn set_message_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::MESSAGE_TYPE] = value;
    }

    /// Sets the length field.
    pub fn set_length(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the SEID field (the S flag must be set).
    pub fn set_seid(&mut self, value: u64) {
        self.buffer.as_mut()[field::SEID].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the 24-bit sequence number.
    pub fn set_sequence_number(&mut self, value: u32) {
        let o = self.header_len() - 4;
        self.buffer.as_mut()[o..o + 3].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// Sets the octet after the sequence number: priority in the upper 4 bits, or spare.
    pub fn set_message_priority(&mut self, value: Option<u8>) {
        let o = self.header_len() - 1;
        self.buffer.as_mut()[o] = value.map_or(0, |p| p << 4);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed header fields of a PFCP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Message type.
    pub message_type: u8,
    /// SEID (S flag).
    pub seid: Option<u64>,
    /// 24-bit sequence number.
    pub sequence_number: u32,
    /// Message priority (MP flag), 4 bits.
    pub priority: Option<u8>,
}

impl Header {
    /// Parses a checked packet's header (version 1).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Header> {
        packet.check_len()?;
        if packet.version() != 1 {
            return Err(Error::BadVersion(packet.version()));
        }
        Ok(Header {
            message_type: packet.message_type(),
            seid: packet.seid(),
            sequence_number: packet.sequence_number(),
            priority: packet.message_priority(),
        })
    }

    /// Length of the header this emits.
    pub fn buffer_len(&self) -> usize {
        if self.seid.is_some() {
            field::SESSION_HEADER_LEN
        } else {
            field::NODE_HEADER_LEN
        }
    }

    /// Writes the header for a message whose IEs take `payload_len` octets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        payload_len: usize,
    ) -> Result<()> {
        let length = self.buffer_len() - field::LENGTH_EXCLUDED + payload_len;
        let length = u16::try_from(length).map_err(|_| Error::TooLong)?;
        if packet.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::BufferTooSmall);
        }
        packet.buffer.as_mut()[field::FLAGS] = 1 << field::VERSION_SHIFT;
        packet.set_mp_flag(self.priority.is_some());
        packet.set_s_flag(self.seid.is_some());
        packet.set_message_type(self.message_type);
        packet.set_length(length);
        if let Some(seid) = self.seid {
            packet.set_seid(seid);
        }
        packet.set_sequence_number(self.sequence_number & 0x00ff_ffff);
        packet.set_message_priority(self.priority.map(|p| p & 0x0f));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Session Deletion Request header from an SMF: S flag, MP flag with priority 5,
    /// SEID 0x0102030405060708, sequence 0x00abcd, no IEs.
    static SESSION_DELETION_REQUEST: [u8; 16] = [
        0x23, 0x36, 0x00, 0x0c, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x00, 0xab, 0xcd,
        0x50,
    ];

    #[test]
    fn session_header_fields_are_read() {
        let p = Packet::new_checked(&SESSION_DELETION_REQUEST[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert!(p.s_flag() && p.mp_flag() && !p.follow_on());
        assert_eq!(p.message_type(), message_type::SESSION_DELETION_REQUEST);
        assert_eq!(p.seid(), Some(0x0102_0304_0506_0708));
        assert_eq!(p.sequence_number(), 0xabcd);
        assert_eq!(p.message_priority(), Some(5));
        assert!(p.payload().is_empty());
    }

    #[test]
    fn header_round_trips() {
        let p = Packet::new_checked(&SESSION_DELETION_REQUEST[..]).unwrap();
        let header = Header::parse(&p).unwrap();
        let mut out = [0u8; 16];
        header
            .emit(&mut Packet::new_unchecked(&mut out[..]), 0)
            .unwrap();
        assert_eq!(out, SESSION_DELETION_REQUEST);
    }

    #[test]
    fn truncated_header_is_an_error() {
        assert_eq!(
            Packet::new_checked(&SESSION_DELETION_REQUEST[..12]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&SESSION_DELETION_REQUEST[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn length_past_the_buffer_is_an_error() {
        let mut bytes = SESSION_DELETION_REQUEST;
        bytes[3] = 0x0d;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
        bytes[3] = 0x0b;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            Error::BadLength
        );
    }

    #[test]
    fn version_2_is_rejected() {
        let mut bytes = SESSION_DELETION_REQUEST;
        bytes[0] = 0x43;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Header::parse(&p).unwrap_err(), Error::BadVersion(2));
    }
}
