//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while sealing, opening or managing keys.
///
/// Integrity failures are split into distinct variants so that an operator can tell a truncated
/// upload from a tampered byte from a reordered file; none of them ever yields plaintext.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// An I/O operation failed; `context` names what was being done and to which path.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or stream.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The input does not start with the `OPKE` magic, so it is not an Outpost encrypted object.
    #[error("not an encrypted object: expected magic \"OPKE\", found {found:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: Vec<u8>,
    },
    /// The format version is not one this build understands.
    #[error("unsupported encrypted-object format version {found} (this build reads version 1)")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The header is shorter than its own length fields promise, or a field is out of range.
    #[error("malformed encrypted-object header: {reason}")]
    MalformedHeader {
        /// What was wrong.
        reason: String,
    },
    /// The header names a key-wrapping algorithm this build does not know.
    #[error("unknown key-wrapping algorithm id {id}")]
    UnknownWrapAlgorithm {
        /// The algorithm id found.
        id: u8,
    },
    /// The object was wrapped by a different key than the provider manages.
    #[error("object was wrapped by key {found:?} but the provider manages key {expected:?}")]
    KeyIdMismatch {
        /// The provider's key id.
        expected: String,
        /// The key id in the header.
        found: String,
    },
    /// The key version the header names is not in the key store.
    #[error("key {key_id} version {version} is missing")]
    KeyVersionMissing {
        /// The key id.
        key_id: String,
        /// The missing version.
        version: u32,
    },
    /// The key version the header names has passed its end date (PKCS#11 `CKA_END_DATE`).
    #[error("key {key_id} version {version} has expired (end date {end_date})")]
    KeyVersionExpired {
        /// The key id.
        key_id: String,
        /// The expired version.
        version: u32,
        /// The end date, `YYYY-MM-DD`.
        end_date: String,
    },
    /// The key version the header names was disabled (revoked) by an operator.
    #[error("key {key_id} version {version} is disabled")]
    KeyVersionDisabled {
        /// The key id.
        key_id: String,
        /// The disabled version.
        version: u32,
    },
    /// The wrapped data key failed its integrity check under the named KEK version.
    #[error(
        "wrapped data key failed to unwrap under key {key_id} version {version} (tampered header or wrong KEK)"
    )]
    WrappedKeyRejected {
        /// The key id.
        key_id: String,
        /// The KEK version used.
        version: u32,
    },
    /// The header's own authentication tag does not match: a header byte was changed.
    #[error("encrypted-object header was tampered with (header tag mismatch)")]
    HeaderTampered,
    /// A segment failed authentication and is not a valid segment from anywhere else in the object.
    #[error("segment {index} was tampered with (authentication failed)")]
    SegmentTampered {
        /// Index of the segment that failed.
        index: u64,
    },
    /// A segment authenticates, but at a different position: segments were reordered or swapped.
    #[error("segment at position {position} was sealed as segment {sealed_at}: segments reordered")]
    SegmentOutOfOrder {
        /// Where the segment was found.
        position: u64,
        /// Where it was sealed.
        sealed_at: u64,
    },
    /// The object ends before its final segment: it was truncated.
    #[error("object is truncated: it ends after {segments} segment(s) without a final segment")]
    Truncated {
        /// Complete segments read before the end.
        segments: u64,
    },
    /// Bytes follow the final segment: data was appended.
    #[error("data appended after the final segment (segment {final_index})")]
    TrailingData {
        /// Index of the real final segment.
        final_index: u64,
    },
    /// A range read asked for bytes past the end of the plaintext.
    #[error("range {offset}+{len} is outside the plaintext of {plaintext_len} bytes")]
    RangeOutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Plaintext length of the object.
        plaintext_len: u64,
    },
    /// The segment size is outside 1 ..= 16 MiB.
    #[error("segment size {size} is outside 1..=16777216 bytes")]
    InvalidSegmentSize {
        /// The rejected size.
        size: u32,
    },
    /// The object would need more segments than the 32-bit segment counter allows.
    #[error("object exceeds the maximum of 2^32 - 1 segments")]
    TooManySegments,
    /// A key id is empty, too long, or uses characters other than `[A-Za-z0-9_-]`.
    #[error("invalid key id {key_id:?}: expected 1..=64 characters of [A-Za-z0-9_-]")]
    InvalidKeyId {
        /// The rejected id.
        key_id: String,
    },
    /// The passphrase does not unseal the key file.
    #[error("wrong passphrase for key file {}", path.display())]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is passphrase-sealed but no passphrase was given.
    #[error("key file {} is sealed with a passphrase but none was given", path.display())]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is not sealed but a passphrase was given (refusing to silently ignore it).
    #[error("key file {} is not passphrase-sealed but a passphrase was given", path.display())]
    NotSealed {
        /// The key file.
        path: PathBuf,
    },
    /// A key file has the wrong size or magic.
    #[error("key file {} is corrupt: {reason}", path.display())]
    KeyFileCorrupt {
        /// The key file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The operating system random number generator failed.
    #[error("OS random number generator failed: {0}")]
    Random(String),
    /// The object was not wrapped under the algorithm the provider supports.
    #[error("provider cannot unwrap keys wrapped with algorithm {algorithm:?}")]
    UnsupportedWrapForProvider {
        /// The algorithm in the header.
        algorithm: crate::WrapAlgorithm,
    },
    /// Rewrapping would change the header length, so it cannot be rewritten in place. Not
    /// returned by [`crate::rewrap_file`] any more, which now rewrites the whole file.
    #[error(
        "rewrapped header is {new} bytes but the file's header is {old} bytes; cannot rewrite in place"
    )]
    HeaderLengthChanged {
        /// Old header length.
        old: usize,
        /// New header length.
        new: usize,
    },
    /// The PKCS#11 module could not be found, loaded or initialized.
    #[error("PKCS#11 module {} is unavailable: {reason}", module.display())]
    Pkcs11ModuleUnavailable {
        /// The module path.
        module: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The PKCS#11 token is not present, not found by its label, or failing.
    #[error("PKCS#11 token {token:?} is unavailable: {reason}")]
    TokenUnavailable {
        /// The token label.
        token: String,
        /// What went wrong.
        reason: String,
    },
    /// The token rejected the user PIN.
    #[error("wrong user PIN for PKCS#11 token {token:?}")]
    WrongPin {
        /// The token label.
        token: String,
    },
    /// The token's user PIN is locked after too many wrong attempts.
    #[error("the user PIN of PKCS#11 token {token:?} is locked")]
    PinLocked {
        /// The token label.
        token: String,
    },
    /// A PKCS#11 operation failed for a reason without a more specific variant.
    #[error("PKCS#11 {operation} failed on token {token:?}: {reason}")]
    Hsm {
        /// The token label.
        token: String,
        /// The PKCS#11 function or step that failed.
        operation: String,
        /// The token's answer.
        reason: String,
    },
    /// A PIN file is empty, too widely readable or otherwise unusable.
    #[error("PIN file {}: {reason}", path.display())]
    PinFile {
        /// The PIN file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl KeysError {
    /// Builds an [`KeysError::Io`] naming what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        KeysError::Io {
            context: context.into(),
            source,
        }
    }

    /// Finds the `KeysError` inside an `io::Error` returned by the streaming reader or writer.
    pub fn from_io(error: &io::Error) -> Option<&KeysError> {
        error.get_ref()?.downcast_ref::<KeysError>()
    }

    /// Recovers a `KeysError` from an `io::Error`, wrapping plain I/O failures as [`KeysError::Io`].
    pub fn from_io_owned(error: io::Error, context: &str) -> KeysError {
        if error.get_ref().is_some_and(|e| e.is::<KeysError>()) {
            match error.into_inner().map(|e| e.downcast::<KeysError>()) {
                Some(Ok(e)) => return *e,
                _ => unreachable!("checked above"),
            }
        }
        KeysError::io(context, error)
    }
}

impl From<KeysError> for io::Error {
    fn from(e: KeysError) -> Self {
        match e {
            KeysError::Io { source, .. } => source,
            other => io::Error::other(other),
        }
    }
}

/// Fills `buf` from the OS random number generator.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), KeysError> {
    getrandom::fill(buf).map_err(|e| KeysError::Random(e.to_string()))
}
