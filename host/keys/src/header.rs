//! The encrypted-object header: parse and emit.
//!
//! ```text
//! offset        len  field                                   authenticated by
//! 0             4    magic "OPKE"                            segments + header tag
//! 4             1    format version (1)                      segments + header tag
//! 5             1    key id length k (1..=64)                segments + header tag
//! 6             4    segment size S, u32 big-endian          segments + header tag
//! 10            7    nonce prefix (random)                   segments + header tag
//! 17            k    key id (ASCII [A-Za-z0-9_-])            segments + header tag
//! 17+k          1    wrapping algorithm id (1 = AES-256-KWP) header tag only
//! 18+k          4    KEK version, u32 big-endian             header tag only
//! 22+k          2    wrapped key length w, u16 big-endian    header tag only
//! 24+k          w    wrapped data key (opaque)               header tag only
//! 24+k+w        16   header tag                              -
//! ```
//!
//! Bytes `0..17+k` (the *stable* part) are the associated data of every segment, so rotating
//! the KEK and rewrapping the data key never invalidates a segment. The header tag is an
//! AES-256-GCM tag over the empty message with the whole header before it as associated data,
//! under the data key and a nonce outside the STREAM nonce space; rewrapping recomputes it.

use std::io::Read;

use crate::{KeysError, WrapAlgorithm, WrappedKey};

/// The four magic bytes every encrypted object starts with.
pub const MAGIC: [u8; 4] = *b"OPKE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the random nonce prefix (STREAM with a 96-bit nonce: 7 + 4 counter + 1 flag).
pub const NONCE_PREFIX_LEN: usize = 7;
/// Length of an AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Largest allowed segment size (16 MiB).
pub const MAX_SEGMENT_SIZE: u32 = 1 << 24;
/// Longest allowed key id.
pub const MAX_KEY_ID_LEN: usize = 64;

const FIXED_PREFIX: usize = 17;

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per segment (every segment but the last is exactly this long).
    pub segment_size: u32,
    /// Random per-object nonce prefix.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
    /// The id of the KEK that wrapped the data key.
    pub key_id: String,
    /// The wrapped data key, with its algorithm and KEK version.
    pub wrapped: WrappedKey,
    /// Authentication tag over the whole header.
    pub tag: [u8; TAG_LEN],
}

/// Checks a key id is 1..=64 characters of `[A-Za-z0-9_-]`.
pub fn validate_key_id(key_id: &str) -> Result<(), KeysError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeysError::InvalidKeyId {
            key_id: key_id.to_owned(),
        })
    }
}

/// Checks a segment size is within 1..=16 MiB.
pub fn validate_segment_size(size: u32) -> Result<(), KeysError> {
    if (1..=MAX_SEGMENT_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(KeysError::InvalidSegmentSize { size })
    }
}

fn malformed(reason: impl Into<String>) -> KeysError {
    KeysError::MalformedHeader {
        reason: reason.into(),
    }
}

impl Header {
    /// Length of the stable (segment-authenticated) part.
    pub fn stable_len(&self) -> usize {
        FIXED_PREFIX + self.key_id.len()
    }

    /// Total emitted length.
    pub fn buffer_len(&self) -> usize {
        self.stable_len() + 7 + self.wrapped.bytes.len() + TAG_LEN
    }

    /// Emits the header bytes.
    pub fn emit(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out.extend_from_slice(self.key_id.as_bytes());
        out.push(self.wrapped.algorithm.id());
        out.extend_from_slice(&self.wrapped.version.to_be_bytes());
        out.extend_from_slice(&(self.wrapped.bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.wrapped.bytes);
        out.extend_from_slice(&self.tag);
        out
    }

    /// The stable part of the emitted header: the associated data of every segment.
    pub fn stable_bytes(&self) -> Vec<u8> {
        let mut b = self.emit();
        b.truncate(self.stable_len());
        b
    }

    /// The header bytes covered by the header tag (everything but the tag).
    pub fn tagged_bytes(&self) -> Vec<u8> {
        let mut b = self.emit();
        b.truncate(b.len() - TAG_LEN);
        b
    }

    /// Parses a header from the start of `buf`, returning it and its length.
    pub fn parse(buf: &[u8]) -> Result<(Header, usize), KeysError> {
        if buf.len() < 4 || buf[..4] != MAGIC {
            return Err(KeysError::BadMagic {
                found: buf[..buf.len().min(4)].to_vec(),
            });
        }
        if buf.len() < FIXED_PREFIX {
            return Err(malformed(format!(
                "{} bytes, need at least {FIXED_PREFIX}",
                buf.len()
            )));
        }
        if buf[4] != FORMAT_VERSION {
            return Err(KeysError::UnsupportedVersion { found: buf[4] });
        }
        let k = buf[5] as usize;
        let segment_size = u32::from_be_bytes(buf[6..10].try_into().expect("4 bytes"));
        validate_segment_size(segment_size)?;
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = buf[10..17].try_into().expect("7 bytes");
        let p = FIXED_PREFIX + k;
        if buf.len() < p + 7 {
            return Err(malformed(format!(
                "key id of {k} bytes runs past the end ({} bytes)",
                buf.len()
            )));
        }
        let key_id = std::str::from_utf8(&buf[FIXED_PREFIX..p])
            .map_err(|_| malformed("key id is not UTF-8"))?
            .to_owned();
        validate_key_id(&key_id).map_err(|_| malformed(format!("invalid key id {key_id:?}")))?;
        let algorithm = WrapAlgorithm::from_id(buf[p])?;
        let version = u32::from_be_bytes(buf[p + 1..p + 5].try_into().expect("4 bytes"));
        let w = u16::from_be_bytes([buf[p + 5], buf[p + 6]]) as usize;
        let end = p + 7 + w + TAG_LEN;
        if buf.len() < end {
            return Err(malformed(format!(
                "wrapped key of {w} bytes runs past the end ({} bytes)",
                buf.len()
            )));
        }
        let bytes = buf[p + 7..p + 7 + w].to_vec();
        let tag: [u8; TAG_LEN] = buf[end - TAG_LEN..end].try_into().expect("16 bytes");
        let wrapped = WrappedKey {
            algorithm,
            version,
            bytes,
        };
        Ok((
            Header {
                segment_size,
                nonce_prefix,
                key_id,
                wrapped,
                tag,
            },
            end,
        ))
    }

    /// Reads exactly one header from a stream, returning it and its raw bytes.
    pub fn read_from<R: Read>(r: &mut R) -> Result<(Header, Vec<u8>), KeysError> {
        let mut buf = vec![0u8; FIXED_PREFIX];
        let got = read_full(r, &mut buf)?;
        if got < FIXED_PREFIX {
            buf.truncate(got);
            Header::parse(&buf)?;
            return Err(malformed(format!(
                "{got} bytes, need at least {FIXED_PREFIX}"
            )));
        }
        // Validate magic/version before trusting the length fields.
        if buf[..4] != MAGIC {
            return Err(KeysError::BadMagic {
                found: buf[..4].to_vec(),
            });
        }
        if buf[4] != FORMAT_VERSION {
            return Err(KeysError::UnsupportedVersion { found: buf[4] });
        }
        let k = buf[5] as usize;
        extend_exact(r, &mut buf, k + 7)?;
        let p = FIXED_PREFIX + k;
        let w = u16::from_be_bytes([buf[p + 5], buf[p + 6]]) as usize;
        extend_exact(r, &mut buf, w + TAG_LEN)?;
        let (header, _) = Header::parse(&buf)?;
        Ok((header, buf))
    }
}

fn extend_exact<R: Read>(r: &mut R, buf: &mut Vec<u8>, n: usize) -> Result<(), KeysError> {
    let start = buf.len();
    buf.resize(start + n, 0);
    let got = read_full(r, &mut buf[start..])?;
    if got < n {
        return Err(malformed(format!(
            "header ends after {} bytes",
            start + got
        )));
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, KeysError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(m) => n += m,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(KeysError::io("reading encrypted object", e)),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            segment_size: 65536,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
            key_id: "device-kek".into(),
            wrapped: WrappedKey {
                algorithm: WrapAlgorithm::Aes256KwPad,
                version: 3,
                bytes: vec![9; 40],
            },
            tag: [7; TAG_LEN],
        }
    }

    #[test]
    fn parse_of_emit_is_the_identity() {
        let h = sample();
        let bytes = h.emit();
        assert_eq!(bytes.len(), h.buffer_len());
        let (back, len) = Header::parse(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(len, bytes.len());
        let (again, raw) = Header::read_from(&mut &bytes[..]).unwrap();
        assert_eq!(again, h);
        assert_eq!(raw, bytes);
    }

    #[test]
    fn wrong_magic_and_version_are_named() {
        let mut bytes = sample().emit();
        bytes[4] = 9;
        assert!(matches!(
            Header::parse(&bytes),
            Err(KeysError::UnsupportedVersion { found: 9 })
        ));
        bytes[0] = b'X';
        assert!(matches!(
            Header::parse(&bytes),
            Err(KeysError::BadMagic { .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_header_is_an_error_not_a_panic() {
        let bytes = sample().emit();
        for n in 0..bytes.len() {
            assert!(
                Header::parse(&bytes[..n]).is_err(),
                "prefix of {n} bytes parsed"
            );
            assert!(Header::read_from(&mut &bytes[..n]).is_err());
        }
    }
}
