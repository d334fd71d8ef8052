//! GTP-U (3GPP TS 29.281) wire codec.
//!
//! Modelled on smoltcp's `wire` module: [`Packet`] is a zero-copy view over a buffer with field
//! getters and setters, [`Repr`] is the parsed header (with its extension header chain) that can
//! be emitted back, and [`Message`] is the body of the signalling messages (Echo, Error
//! Indication, End Marker, Supported Extension Headers Notification). Nothing here allocates and
//! the crate is `no_std`, so the same code runs inside wasm plugins.
//!
//! ```
//! use outpost_gtpu::{emit_gpdu_header, gpdu_header_len, Packet, PduSessionInfo};
//!
//! let ip_packet = [0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
//! let qfi = Some(PduSessionInfo::Downlink { qfi: 9, rqi: false, ppi: None });
//! let mut frame = [0u8; 64];
//! let header_len = gpdu_header_len(qfi.as_ref());
//! frame[header_len..header_len + ip_packet.len()].copy_from_slice(&ip_packet);
//! emit_gpdu_header(&mut frame, 0x1234, qfi.as_ref(), ip_packet.len()).unwrap();
//!
//! let packet = Packet::new_checked(&frame[..header_len + ip_packet.len()]).unwrap();
//! assert_eq!(packet.teid(), 0x1234);
//! assert_eq!(packet.pdu_session_info().unwrap().unwrap().qfi(), 9);
//! assert_eq!(packet.payload(), &ip_packet);
//! ```
#![no_std]

mod message;
mod packet;

pub use message::{Message, ie_type};
pub use packet::{
    ExtensionHeader, ExtensionHeaderIter, ExtensionHeaderRepr, ExtensionHeaders,
    MAX_EXTENSION_HEADERS, MessageType, Packet, PduSessionInfo, Repr, emit_gpdu_header,
    extension_type, gpdu_header_len,
};

use core::fmt;

/// What was wrong with a GTP-U packet (or with a buffer given to an emit function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the mandatory 8-octet header (or the optional 4 octets).
    Truncated,
    /// The version field is not 1.
    BadVersion(u8),
    /// The protocol type bit is 0 (GTP'), which is not GTP-U.
    BadProtocolType,
    /// The length field does not fit the buffer or the optional header fields.
    BadLength,
    /// An extension header has length 0 or runs past the end of the packet.
    BadExtensionLength {
        /// Type of the offending extension header.
        kind: u8,
    },
    /// A known extension header whose content is too short or malformed.
    BadExtensionHeader {
        /// Type of the offending extension header.
        kind: u8,
    },
    /// More extension headers than a [`Repr`] holds ([`MAX_EXTENSION_HEADERS`]).
    TooManyExtensionHeaders,
    /// A message type that has no [`Message`] representation.
    UnknownMessageType(u8),
    /// A mandatory information element is missing.
    MissingIe {
        /// Type of the missing IE.
        ie: u8,
    },
    /// An information element is truncated or has an invalid value.
    BadIe {
        /// Type of the offending IE.
        ie: u8,
    },
    /// A TV information element of unknown type (its length cannot be known).
    UnknownIe {
        /// Type of the unknown IE.
        ie: u8,
    },
    /// The buffer given to an emit function is too small.
    BufferTooSmall,
    /// The packet would not fit the 16-bit length field.
    TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "truncated GTP-U header"),
            Error::BadVersion(v) => write!(f, "GTP version {v} is not 1"),
            Error::BadProtocolType => write!(f, "protocol type GTP' is not GTP-U"),
            Error::BadLength => write!(f, "GTP-U length field inconsistent with the buffer"),
            Error::BadExtensionLength { kind } => {
                write!(f, "extension header {kind:#04x} has a bad length")
            }
            Error::BadExtensionHeader { kind } => {
                write!(f, "extension header {kind:#04x} is malformed")
            }
            Error::TooManyExtensionHeaders => write!(f, "too many extension headers"),
            Error::UnknownMessageType(t) => write!(f, "unknown GTP-U message type {t}"),
            Error::MissingIe { ie } => write!(f, "mandatory IE {ie} missing"),
            Error::BadIe { ie } => write!(f, "IE {ie} is malformed"),
            Error::UnknownIe { ie } => write!(f, "unknown TV IE {ie}"),
            Error::BufferTooSmall => write!(f, "buffer too small"),
            Error::TooLong => write!(f, "GTP-U packet too long for the length field"),
        }
    }
}

impl core::error::Error for Error {}

/// Result of the codec's fallible functions.
pub type Result<T> = core::result::Result<T, Error>;
