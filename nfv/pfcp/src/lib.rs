//! PFCP (3GPP TS 29.244) wire codec.
//!
//! Modelled on smoltcp's `wire` module:
//! - [`Packet`] is a zero-copy view of the PFCP header (version, S/MP/FO flags, message type,
//!   length, SEID, 24-bit sequence number, priority) and [`IeIter`] walks the TLV information
//!   elements behind it without copying;
//! - typed IE representations ([`NodeId`], [`FTeid`], [`CreatePdr`], ...) borrow variable-length
//!   fields from the buffer and parse/emit symmetrically;
//! - [`Message`] is a parsed message: header fields plus a typed [`Body`]
//!   ([`SessionEstablishmentRequest`], ...). `Message::parse` then `Message::emit` is the
//!   identity on the representation.
//!
//! Unknown IEs (and vendor-specific IEs, with the enterprise bit set) are skipped, as the
//! specification asks; a missing mandatory IE is [`Error::MissingIe`], from which a UPF builds
//! its answer with [`Error::cause`] and [`Error::offending_ie`].
//!
//! ```
//! use outpost_pfcp::{Body, Cause, HeartbeatResponse, Message, Packet};
//!
//! // A Heartbeat Request as sent by an SMF (Recovery Time Stamp 0xe5a1b2c3).
//! let request = [0x20, 0x01, 0x00, 0x0c, 0x00, 0x00, 0x2a, 0x00,
//!                0x00, 0x60, 0x00, 0x04, 0xe5, 0xa1, 0xb2, 0xc3];
//! let message = Message::parse(&request).unwrap();
//! let Body::HeartbeatRequest(hb) = &message.body else { panic!() };
//! assert_eq!(hb.recovery_time_stamp, 0xe5a1_b2c3);
//!
//! let response = Message::node(
//!     message.sequence_number,
//!     Body::HeartbeatResponse(HeartbeatResponse { recovery_time_stamp: 0xe5a1_0000 }),
//! );
//! let bytes = response.to_vec().unwrap();
//! assert_eq!(Packet::new_checked(&bytes[..]).unwrap().sequence_number(), 42);
//!
//! // A request missing a mandatory IE is answered with its cause and offending IE.
//! let empty = [0x20, 0x01, 0x00, 0x04, 0x00, 0x00, 0x2b, 0x00];
//! let err = Message::parse(&empty).unwrap_err();
//! assert_eq!(err.cause(), Some(Cause::MANDATORY_IE_MISSING));
//! assert_eq!(err.offending_ie(), Some(96));
//! ```
#![no_std]

extern crate alloc;

mod flow;
mod grouped;
mod header;
mod ie;
mod message;
mod types;

pub use flow::{Action, Address, Direction, Endpoint, FlowDescription, PortRange};
pub use grouped::{
    CreateBar, CreateFar, CreatePdr, CreateQer, CreateUrr, CreatedPdr, DownlinkDataReport,
    ErrorIndicationReport, ForwardingParameters, Pdi, QueryUrr, RemoveBar, RemoveFar, RemovePdr,
    RemoveQer, RemoveUrr, UpdateBar, UpdateBarReportResponse, UpdateFar,
    UpdateForwardingParameters, UpdatePdr, UpdateQer, UpdateUrr, UsageReport,
};
pub use header::{Header, Packet, message_type};
pub use ie::{Ie, IeIter, IeValue, Writer, ie_type};
pub use message::{
    AssociationReleaseRequest, AssociationReleaseResponse, AssociationSetupRequest,
    AssociationSetupResponse, AssociationUpdateRequest, AssociationUpdateResponse, Body,
    HeartbeatRequest, HeartbeatResponse, Message, SessionDeletionRequest, SessionDeletionResponse,
    SessionEstablishmentRequest, SessionEstablishmentResponse, SessionModificationRequest,
    SessionModificationResponse, SessionReportRequest, SessionReportResponse,
};
pub use types::{
    ApplyAction, Bitrate, Cause, CpFunctionFeatures, FSeid, FTeid, FailedRuleId, GateStatus,
    Interface, MeasurementMethod, NTP_UNIX_OFFSET, NodeId, OuterHeaderCreation, OuterHeaderRemoval,
    Qfi, ReportType, ReportingTriggers, SdfFilter, UeIpAddress, UpFunctionFeatures,
    UsageReportTrigger, Volume, VolumeMeasurement, encode_fqdn,
};

use core::fmt;

/// What was wrong with a PFCP message (or with a buffer given to an emit function).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header.
    Truncated,
    /// The version field is not 1.
    BadVersion(u8),
    /// The message length field does not fit the buffer or the header.
    BadLength,
    /// An IE runs past its container, or its value is too short for its type.
    BadIeLength {
        /// Type of the offending IE.
        ie: u16,
    },
    /// An IE value is invalid (e.g. an unknown Node ID type).
    BadIeValue {
        /// Type of the offending IE.
        ie: u16,
    },
    /// A mandatory IE is missing.
    MissingIe {
        /// Type of the missing IE.
        ie: u16,
        /// Type of the grouped IE it is missing from, or 0 at message level.
        parent: u16,
    },
    /// A message type this crate has no representation for.
    UnknownMessageType(u8),
    /// The buffer given to an emit function is too small.
    BufferTooSmall,
    /// A message or IE would not fit its 16-bit length field.
    TooLong,
    /// An SDF filter flow description that is not a supported IPFilterRule.
    BadFlowDescription,
}

impl Error {
    /// The Cause a PFCP entity answers this error with (TS 29.244 clause 7.6), if any.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            Error::MissingIe { .. } => Some(Cause::MANDATORY_IE_MISSING),
            Error::BadIeLength { .. } | Error::BadIeValue { .. } | Error::BadFlowDescription => {
                Some(Cause::MANDATORY_IE_INCORRECT)
            }
            Error::BadLength => Some(Cause::INVALID_LENGTH),
            _ => None,
        }
    }

    /// The IE type to put in the Offending IE of the answer, if any.
    pub fn offending_ie(&self) -> Option<u16> {
        match *self {
            Error::MissingIe { ie, .. } | Error::BadIeLength { ie } | Error::BadIeValue { ie } => {
                Some(ie)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => write!(f, "truncated PFCP header"),
            Error::BadVersion(v) => write!(f, "PFCP version {v} is not 1"),
            Error::BadLength => write!(f, "PFCP length field inconsistent with the buffer"),
            Error::BadIeLength { ie } => write!(f, "IE {ie} has a bad length"),
            Error::BadIeValue { ie } => write!(f, "IE {ie} has an invalid value"),
            Error::MissingIe { ie, parent: 0 } => write!(f, "mandatory IE {ie} missing"),
            Error::MissingIe { ie, parent } => {
                write!(f, "mandatory IE {ie} missing in grouped IE {parent}")
            }
            Error::UnknownMessageType(t) => write!(f, "unknown PFCP message type {t}"),
            Error::BufferTooSmall => write!(f, "buffer too small"),
            Error::TooLong => write!(f, "PFCP message or IE too long for its length field"),
            Error::BadFlowDescription => write!(f, "unsupported flow description"),
        }
    }
}

impl core::error::Error for Error {}

/// Result of the codec's fallible functions.
pub type Result<T> = core::result::Result<T, Error>;
