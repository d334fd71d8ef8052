//! The key-encryption-key (KEK) abstraction: wraps and unwraps per-object data keys.

use zeroize::Zeroizing;

use crate::KeysError;

/// Length in bytes of a data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;

/// A per-object AES-256 data key; zeroed when dropped.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// Generates a fresh data key from the OS random number generator.
    pub fn generate() -> Result<Self, KeysError> {
        let mut k = Zeroizing::new([0u8; DATA_KEY_LEN]);
        crate::error::random(&mut k[..])?;
        Ok(DataKey(k))
    }

    /// Wraps existing key bytes (used by providers after unwrapping).
    pub fn from_bytes(bytes: [u8; DATA_KEY_LEN]) -> Self {
        DataKey(Zeroizing::new(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// How a data key was wrapped; stored as one byte in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WrapAlgorithm {
    /// AES-256 key wrap with padding, RFC 5649 (PKCS#11 `CKM_AES_KEY_WRAP_PAD`); 40-byte output
    /// for a 32-byte data key.
    Aes256KwPad,
}

impl WrapAlgorithm {
    /// The header byte for this algorithm.
    pub fn id(self) -> u8 {
        match self {
            WrapAlgorithm::Aes256KwPad => 1,
        }
    }

    /// Parses a header byte.
    pub fn from_id(id: u8) -> Result<Self, KeysError> {
        match id {
            1 => Ok(WrapAlgorithm::Aes256KwPad),
            _ => Err(KeysError::UnknownWrapAlgorithm { id }),
        }
    }
}

/// A data key encrypted under a KEK version: opaque bytes plus the algorithm and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// The wrapping algorithm.
    pub algorithm: WrapAlgorithm,
    /// The KEK version that wrapped it.
    pub version: u32,
    /// The opaque wrapped bytes.
    pub bytes: Vec<u8>,
}

/// A source of key-encryption keys: the device key store or a customer's HSM over PKCS#11.
///
/// Implementations must be usable from many threads at once.
pub trait KeyProvider {
    /// The id of the KEK this provider manages; written into every header.
    fn key_id(&self) -> &str;

    /// The version new data keys are wrapped under.
    fn current_version(&self) -> Result<u32, KeysError>;

    /// Wraps `data_key` under the current KEK version.
    fn wrap(&self, data_key: &DataKey) -> Result<WrappedKey, KeysError>;

    /// Unwraps a data key wrapped under `key_id` at `wrapped.version`. A missing, disabled or
    /// expired version is an error naming the key and version.
    fn unwrap(&self, key_id: &str, wrapped: &WrappedKey) -> Result<DataKey, KeysError>;
}

/// What every provider checks before unwrapping: the key id is its own and the wrapping is the
/// one it performs (AES-256 key wrap with padding).
pub(crate) fn check_unwrap_request(
    own_key_id: &str,
    key_id: &str,
    wrapped: &WrappedKey,
) -> Result<(), KeysError> {
    if key_id != own_key_id {
        return Err(KeysError::KeyIdMismatch {
            expected: own_key_id.to_owned(),
            found: key_id.to_owned(),
        });
    }
    if wrapped.algorithm != WrapAlgorithm::Aes256KwPad {
        return Err(KeysError::UnsupportedWrapForProvider {
            algorithm: wrapped.algorithm,
        });
    }
    Ok(())
}
