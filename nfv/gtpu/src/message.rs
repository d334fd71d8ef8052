//! GTP-U messages (TS 29.281 clause 7) and their information elements (clause 8).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{Error, MessageType, Packet, Repr, Result};

/// Information element types used by GTP-U (TS 29.281 clause 8.1).
pub mod ie_type {
    /// Recovery (TV, 1 octet; always 0 in GTP-U).
    pub const RECOVERY: u8 = 14;
    /// Tunnel Endpoint Identifier Data I (TV, 4 octets).
    pub const TEID_DATA_I: u8 = 16;
    /// GTP-U Peer Address (TLV, IPv4 or IPv6).
    pub const GTPU_PEER_ADDRESS: u8 = 133;
    /// Extension Header Type List (type, 1-octet count, types).
    pub const EXTENSION_HEADER_TYPE_LIST: u8 = 141;
    /// Private Extension (TLV).
    pub const PRIVATE_EXTENSION: u8 = 255;
}

/// The body of a GTP-U message: the IEs of the signalling messages, or the T-PDU of a G-PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Echo Request (no IEs besides an optional Private Extension).
    EchoRequest,
    /// Echo Response with its Recovery IE (restart counter, 0 in GTP-U).
    EchoResponse {
        /// The Recovery IE's restart counter.
        recovery: u8,
    },
    /// Error Indication: the TEID and address of the tunnel that had no context.
    ErrorIndication {
        /// Tunnel Endpoint Identifier Data I.
        teid_data_i: u32,
        /// GTP-U Peer Address.
        peer_address: IpAddr,
    },
    /// Supported Extension Headers Notification.
    SupportedExtensionHeadersNotification {
        /// The supported extension header types.
        extension_header_types: &'a [u8],
    },
    /// End Marker (no IEs).
    EndMarker,
    /// G-PDU: the T-PDU (user packet).
    GPdu(&'a [u8]),
}

/// An IE as found in a message body.
struct Ie<'a> {
    kind: u8,
    value: &'a [u8],
}

/// Walks the IEs of a body; TV IEs of unknown type stop it with an error, since their length
/// cannot be known.
fn ies(mut data: &[u8]) -> impl Iterator<Item = Result<Ie<'_>>> {
    core::iter::from_fn(move || {
        let (&kind, rest) = data.split_first()?;
        let (len_len, len) = match kind {
            ie_type::RECOVERY => (0, 1),
            ie_type::TEID_DATA_I => (0, 4),
            ie_type::EXTENSION_HEADER_TYPE_LIST => match rest.first() {
                Some(&n) => (1, usize::from(n)),
                None => (1, usize::MAX),
            },
            k if k < 128 => {
                data = &[];
                return Some(Err(Error::UnknownIe { ie: k }));
            }
            _ => match rest {
                [a, b, ..] => (2, usize::from(u16::from_be_bytes([*a, *b]))),
                _ => (2, usize::MAX),
            },
        };
        if len == usize::MAX || rest.len() < len_len + len {
            data = &[];
            return Some(Err(Error::BadIe { ie: kind }));
        }
        let value = &rest[len_len..len_len + len];
        data = &rest[len_len + len..];
        Some(Ok(Ie { kind, value }))
    })
}

impl<'a> Message<'a> {
    /// Parses the body (`Packet::payload`) of a message of the given type. Unknown TLV IEs and
    /// Private Extensions are skipped; a missing mandatory IE is an error.
    pub fn parse(message_type: MessageType, body: &'a [u8]) -> Result<Message<'a>> {
        let mut recovery = None;
        let mut teid = None;
        let mut peer = None;
        let mut list = None;
        if message_type != MessageType::GPdu {
            for ie in ies(body) {
                let ie = ie?;
                match ie.kind {
                    ie_type::RECOVERY => recovery = recovery.or(Some(ie.value[0])),
                    ie_type::TEID_DATA_I => {
                        let v = ie.value;
                        teid = teid.or(Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])));
                    }
                    ie_type::GTPU_PEER_ADDRESS if peer.is_none() => {
                        peer = Some(match *ie.value {
                            [a, b, c, d] => IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
                            _ => match <[u8; 16]>::try_from(ie.value) {
                                Ok(octets) => IpAddr::V6(Ipv6Addr::from(octets)),
                                Err(_) => return Err(Error::BadIe { ie: ie.kind }),
                            },
                        })
                    }
                    ie_type::EXTENSION_HEADER_TYPE_LIST => list = list.or(Some(ie.value)),
                    _ => {}
                }
            }
        }
        Ok(match message_type {
            MessageType::EchoRequest => Message::EchoRequest,
            MessageType::EchoResponse => Message::EchoResponse {
                recovery: recovery.ok_or(Error::MissingIe {
                    ie: ie_type::RECOVERY,
                })?,
            },
            MessageType::ErrorIndication => Message::ErrorIndication {
                teid_data_i: teid.ok_or(Error::MissingIe {
                    ie: ie_type::TEID_DATA_I,
                })?,
                peer_address: peer.ok_or(Error::MissingIe {
                    ie: ie_type::GTPU_PEER_ADDRESS,
                })?,
            },
            MessageType::SupportedExtensionHeadersNotification => {
                Message::SupportedExtensionHeadersNotification {
                    extension_header_types: list.ok_or(Error::MissingIe {
                        ie: ie_type::EXTENSION_HEADER_TYPE_LIST,
                    })?,
                }
            }
            MessageType::EndMarker => Message::EndMarker,
            MessageType::GPdu => Message::GPdu(body),
            other => return Err(Error::UnknownMessageType(other.into())),
        })
    }

    /// Parses a whole packet: header and body.
    pub fn parse_packet(bytes: &'a [u8]) -> Result<(Repr<'a>, Message<'a>)> {
        let packet = Packet::new_checked(bytes)?;
        let repr = Repr::parse(&packet)?;
        let body = Packet::new_unchecked(bytes).payload_range();
        let message = Message::parse(repr.message_type, &bytes[body])?;
        Ok((repr, message))
    }

    /// The message type of this body.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::EchoRequest => MessageType::EchoRequest,
            Message::EchoResponse { .. } => MessageType::EchoResponse,
            Message::ErrorIndication { .. } => MessageType::ErrorIndication,
            Message::SupportedExtensionHeadersNotification { .. } => {
                MessageType::SupportedExtensionHeadersNotification
            }
            Message::EndMarker => MessageType::EndMarker,
            Message::GPdu(_) => MessageType::GPdu,
        }
    }

    /// Length of the body this emits.
    pub fn buffer_len(&self) -> usize {
        match self {
            Message::EchoRequest | Message::EndMarker => 0,
            Message::EchoResponse { .. } => 2,
            Message::ErrorIndication { peer_address, .. } => {
                5 + 3 + if peer_address.is_ipv4() { 4 } else { 16 }
            }
            Message::SupportedExtensionHeadersNotification {
                extension_header_types,
            } => 2 + extension_header_types.len(),
            Message::GPdu(payload) => payload.len(),
        }
    }

    /// Writes the body into `buf` (at least `buffer_len()` octets); returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(Error::BufferTooSmall);
        }
        match *self {
            Message::EchoRequest | Message::EndMarker => {}
            Message::EchoResponse { recovery } => {
                buf[..2].copy_from_slice(&[ie_type::RECOVERY, recovery]);
            }
            Message::ErrorIndication {
                teid_data_i,
                peer_address,
            } => {
                buf[0] = ie_type::TEID_DATA_I;
                buf[1..5].copy_from_slice(&teid_data_i.to_be_bytes());
                buf[5] = ie_type::GTPU_PEER_ADDRESS;
                match peer_address {
                    IpAddr::V4(a) => {
                        buf[6..8].copy_from_slice(&4u16.to_be_bytes());
                        buf[8..12].copy_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        buf[6..8].copy_from_slice(&16u16.to_be_bytes());
                        buf[8..24].copy_from_slice(&a.octets());
                    }
                }
            }
            Message::SupportedExtensionHeadersNotification {
                extension_header_types,
            } => {
                let n = u8::try_from(extension_header_types.len()).map_err(|_| Error::TooLong)?;
                buf[0] = ie_type::EXTENSION_HEADER_TYPE_LIST;
                buf[1] = n;
                buf[2..len].copy_from_slice(extension_header_types);
            }
            Message::GPdu(payload) => buf[..len].copy_from_slice(payload),
        }
        Ok(len)
    }

    /// Writes a whole packet: `header` (its message type and payload length are taken from
    /// this message) followed by the body. Returns the packet length.
    pub fn emit_packet(&self, header: &Repr<'_>, buf: &mut [u8]) -> Result<usize> {
        let mut header = *header;
        header.message_type = self.message_type();
        header.payload_len = self.buffer_len();
        let total = header.buffer_len();
        if buf.len() < total {
            return Err(Error::BufferTooSmall);
        }
        header.emit(&mut Packet::new_unchecked(&mut *buf))?;
        self.emit(&mut buf[header.header_len()..total])?;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Echo Response from a UPF: S flag, sequence 0x1234, Recovery 0.
    static ECHO_RESPONSE: [u8; 14] = [
        0x32, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x00, 0x0e, 0x00,
    ];

    /// Error Indication for TEID 0x01020304 from 10.45.0.1, with the UDP Port extension header
    /// (port 2152) the specification asks for.
    static ERROR_INDICATION: [u8; 32] = [
        0x36, 0x1a, 0x00, 0x18, 0x00, 0x00, 0x00, 0x00, // E and S, type 26, length 24, TEID 0
        0x00, 0x05, 0x00, 0x40, // seq 5, next UDP Port
        0x01, 0x08, 0x68, 0x00, // UDP Port 2152, no next
        0x10, 0x01, 0x02, 0x03, 0x04, // TEID Data I
        0x85, 0x00, 0x04, 0x0a, 0x2d, 0x00, 0x01, // GTP-U Peer Address
        0xff, 0x00, 0x01, 0x00, // Private Extension, skipped
    ];

    #[test]
    fn echo_response_is_parsed() {
        let (repr, message) = Message::parse_packet(&ECHO_RESPONSE).unwrap();
        assert_eq!(repr.sequence_number, Some(0x1234));
        assert_eq!(message, Message::EchoResponse { recovery: 0 });
        let mut out = [0u8; 14];
        assert_eq!(message.emit_packet(&repr, &mut out).unwrap(), 14);
        assert_eq!(out, ECHO_RESPONSE);
    }

    #[test]
    fn error_indication_is_parsed_and_private_extension_skipped() {
        let (repr, message) = Message::parse_packet(&ERROR_INDICATION).unwrap();
        assert_eq!(
            repr.extension_headers.as_slice(),
            &[crate::ExtensionHeaderRepr::UdpPort(2152)]
        );
        assert_eq!(
            message,
            Message::ErrorIndication {
                teid_data_i: 0x0102_0304,
                peer_address: IpAddr::V4(Ipv4Addr::new(10, 45, 0, 1)),
            }
        );
    }

    #[test]
    fn echo_response_without_recovery_is_missing_an_ie() {
        let mut bytes = ECHO_RESPONSE;
        bytes[3] = 4;
        assert_eq!(
            Message::parse_packet(&bytes[..12]).unwrap_err(),
            Error::MissingIe { ie: 14 }
        );
    }

    #[test]
    fn truncated_ie_is_an_error() {
        assert_eq!(
            Message::parse(MessageType::ErrorIndication, &ERROR_INDICATION[16..25]).unwrap_err(),
            Error::BadIe { ie: 133 }
        );
    }

    #[test]
    fn unknown_tv_ie_is_an_error() {
        assert_eq!(
            Message::parse(MessageType::EchoRequest, &[0x07, 0x00]).unwrap_err(),
            Error::UnknownIe { ie: 7 }
        );
    }

    #[test]
    fn peer_address_of_odd_length_is_an_error() {
        let body = [0x10, 0, 0, 0, 1, 0x85, 0x00, 0x03, 1, 2, 3];
        assert_eq!(
            Message::parse(MessageType::ErrorIndication, &body).unwrap_err(),
            Error::BadIe { ie: 133 }
        );
    }

    #[test]
    fn supported_extension_headers_notification_round_trips() {
        let message = Message::SupportedExtensionHeadersNotification {
            extension_header_types: &[0x40, 0x85],
        };
        let mut header = Repr::new(MessageType::SupportedExtensionHeadersNotification, 0, 0);
        header.sequence_number = Some(1);
        let mut buf = [0u8; 32];
        let n = message.emit_packet(&header, &mut buf).unwrap();
        assert_eq!(&buf[12..n], &[141, 2, 0x40, 0x85]);
        let (_, parsed) = Message::parse_packet(&buf[..n]).unwrap();
        assert_eq!(parsed, message);
    }

    #[test]
    fn unknown_message_type_is_an_error() {
        let bytes = [0x30, 0x05, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Message::parse_packet(&bytes).unwrap_err(),
            Error::UnknownMessageType(5)
        );
    }
}
