//! Encryption of small records at rest (kv values, spooled messages).
//!
//! Each store (the kv database, each sink's spool) has its own random data key, kept in the
//! store only wrapped by a key-encryption key from an [`outpost_keys::KeyProvider`]. Every record
//! is sealed with AES-256-GCM under a key derived from the data key and a fresh random 24-byte
//! salt (HKDF-SHA256), so no (key, nonce) pair ever repeats however many records a store
//! writes, and a crash that re-uses a sequence number cannot re-use a nonce. The record's
//! context (namespace and key, spool sequence number and topic) is authenticated as associated
//! data: a value copied under another key, or a message moved to another position, fails to
//! open.
//!
//! Record layout: `0x01 | salt (24) | ciphertext | tag (16)`.
//!
//! Rotation re-wraps the data key under the KEK's newest version; records are not rewritten.

use std::sync::Arc;

use outpost_keys::{DataKey, KeyProvider, KeysError, WrapAlgorithm, WrappedKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};

/// Record format version byte.
const RECORD_V1: u8 = 1;
/// Random salt per record.
const SALT_LEN: usize = 24;
/// AES-GCM tag.
const TAG_LEN: usize = 16;
/// Bytes a sealed record adds to its plaintext.
pub const RECORD_OVERHEAD: usize = 1 + SALT_LEN + TAG_LEN;
/// Format byte of a stored wrapped data key.
const STORED_V1: u8 = 1;

/// A KEK provider shared by the host's stores.
pub type SharedProvider = Arc<dyn KeyProvider + Send + Sync>;

/// Why a record could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The key provider refused (key disabled, missing, HSM unavailable, ...).
    #[error("{0}")]
    Key(String),
    /// The record is not one this format wrote, or it was altered or moved.
    #[error("encrypted record {0}")]
    Corrupt(&'static str),
    /// A record was stored in plaintext although the store is encrypted.
    #[error("record is not encrypted (the store expects encrypted records)")]
    Plaintext,
}

impl From<KeysError> for CipherError {
    fn from(e: KeysError) -> Self {
        CipherError::Key(e.to_string())
    }
}

/// One store's data key, ready to seal and open records.
pub struct RecordCipher {
    provider: SharedProvider,
    key: DataKey,
    wrapped: std::sync::Mutex<StoredKey>,
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCipher")
            .field("key_id", &self.provider.key_id())
            .finish_non_exhaustive()
    }
}

/// A data key as a store keeps it: wrapped, with the KEK id and version that wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The KEK's id.
    pub key_id: String,
    /// The wrapped data key.
    pub wrapped: WrappedKey,
}

impl StoredKey {
    /// `1 | alg | version (4, BE) | id len (1) | id | wrapped bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(7 + self.key_id.len() + self.wrapped.bytes.len());
        out.push(STORED_V1);
        out.push(self.wrapped.algorithm.id());
        out.extend_from_slice(&self.wrapped.version.to_be_bytes());
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.wrapped.bytes);
        out
    }

    /// Parses [`StoredKey::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<StoredKey, CipherError> {
        let bad = CipherError::Corrupt("key: malformed stored data key");
        if bytes.len() < 7 || bytes[0] != STORED_V1 {
            return Err(bad);
        }
        let algorithm = WrapAlgorithm::from_id(bytes[1])?;
        let version = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let id_len = bytes[6] as usize;
        let rest = &bytes[7..];
        if rest.len() <= id_len {
            return Err(bad);
        }
        let key_id = std::str::from_utf8(&rest[..id_len]).map_err(|_| bad.clone())?;
        Ok(StoredKey {
            key_id: key_id.to_string(),
            wrapped: WrappedKey {
                algorithm,
                version,
                bytes: rest[id_len..].to_vec(),
            },
        })
    }
}

struct DerivedLen;

impl KeyType for DerivedLen {
    fn len(&self) -> usize {
        32
    }
}

impl RecordCipher {
    /// A new random data key, wrapped under the provider's current KEK version. The caller
    /// stores [`RecordCipher::stored_key`] next to the records.
    pub fn generate(provider: SharedProvider) -> Result<RecordCipher, CipherError> {
        let key = DataKey::generate()?;
        let wrapped = provider.wrap(&key)?;
        let stored = StoredKey {
            key_id: provider.key_id().to_string(),
            wrapped,
        };
        Ok(RecordCipher {
            provider,
            key,
            wrapped: std::sync::Mutex::new(stored),
        })
    }

    /// Unwraps a stored data key. A disabled, missing or unavailable KEK is an error naming it.
    pub fn unwrap(
        provider: SharedProvider,
        stored: StoredKey,
    ) -> Result<RecordCipher, CipherError> {
        let key = provider.unwrap(&stored.key_id, &stored.wrapped)?;
        Ok(RecordCipher {
            provider,
            key,
            wrapped: std::sync::Mutex::new(stored),
        })
    }

    /// The wrapped data key to persist.
    pub fn stored_key(&self) -> StoredKey {
        self.wrapped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The KEK version the data key is wrapped under now.
    pub fn kek_version(&self) -> u32 {
        self.stored_key().wrapped.version
    }

    /// Wraps the same data key again under the provider's current KEK version and returns it
    /// (the caller persists it; records stay as they are).
    pub fn rewrap(&self) -> Result<StoredKey, CipherError> {
        let wrapped = self.provider.wrap(&self.key)?;
        let stored = StoredKey {
            key_id: self.provider.key_id().to_string(),
            wrapped,
        };
        *self.wrapped.lock().unwrap_or_else(|p| p.into_inner()) = stored.clone();
        Ok(stored)
    }

    /// Checks the KEK can still unwrap the stored data key (a disabled or removed customer key
    /// shows up here before the next restart would fail).
    pub fn check(&self) -> Result<(), CipherError> {
        let stored = self.stored_key();
        self.provider.unwrap(&stored.key_id, &stored.wrapped)?;
        Ok(())
    }

    fn record_key(&self, salt: &[u8]) -> LessSafeKey {
        let prk = Salt::new(HKDF_SHA256, salt).extract(self.key.as_bytes());
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        prk.expand(&[b"outpost record v1"], DerivedLen)
            .and_then(|okm| okm.fill(&mut bytes[..]))
            .expect("HKDF output of 32 bytes is within its limit");
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &bytes[..]).expect("a 32-byte key is an AES-256 key"),
        )
    }

    /// Seals `plaintext`, binding `context` (authenticated, not stored).
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CipherError> {
        let mut out = Vec::with_capacity(plaintext.len() + RECORD_OVERHEAD);
        out.push(RECORD_V1);
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| CipherError::Key(format!("random: {e}")))?;
        out.extend_from_slice(&salt);
        let mut body = plaintext.to_vec();
        // Each record has its own derived key, so the all-zero nonce is used once per key.
        let tag = self
            .record_key(&salt)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(context),
                &mut body,
            )
            .map_err(|_| CipherError::Corrupt("could not be sealed"))?;
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a record sealed with the same `context`.
    pub fn open(&self, context: &[u8], record: &[u8]) -> Result<Vec<u8>, CipherError> {
        if record.len() < RECORD_OVERHEAD {
            return Err(CipherError::Corrupt("is truncated"));
        }
        if record[0] != RECORD_V1 {
            return Err(CipherError::Corrupt("has an unknown format"));
        }
        let salt = &record[1..1 + SALT_LEN];
        let mut body = record[1 + SALT_LEN..].to_vec();
        let plain = self
            .record_key(salt)
            .open_in_place(
                Nonce::assume_unique_for_key([0u8; 12]),
                Aad::from(context),
                &mut body,
            )
            .map_err(|_| CipherError::Corrupt("failed authentication (altered or moved)"))?;
        Ok(plain.to_vec())
    }

    /// The plaintext length of a sealed record of `len` bytes.
    pub fn plain_len(len: usize) -> usize {
        len.saturating_sub(RECORD_OVERHEAD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_keys::DeviceKeyStore;

    fn provider(dir: &std::path::Path) -> (Arc<DeviceKeyStore>, SharedProvider) {
        let keys = Arc::new(DeviceKeyStore::open(dir.join("keys"), "device-kek").unwrap());
        let shared: SharedProvider = keys.clone();
        (keys, shared)
    }

    #[test]
    fn a_record_opens_only_under_its_own_context() {
        let dir = tempfile::tempdir().unwrap();
        let (_, p) = provider(dir.path());
        let c = RecordCipher::generate(p).unwrap();
        let sealed = c.seal(b"ns\0k", b"secret").unwrap();
        assert_eq!(sealed.len(), 6 + RECORD_OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(c.open(b"ns\0k", &sealed).unwrap(), b"secret");
        assert_eq!(
            c.open(b"ns\0other", &sealed),
            Err(CipherError::Corrupt(
                "failed authentication (altered or moved)"
            ))
        );
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let (_, p) = provider(dir.path());
        let c = RecordCipher::generate(p).unwrap();
        assert_ne!(c.seal(b"", b"x").unwrap(), c.seal(b"", b"x").unwrap());
    }

    #[test]
    fn flipped_and_truncated_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_, p) = provider(dir.path());
        let c = RecordCipher::generate(p).unwrap();
        let sealed = c.seal(b"", b"payload").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(c.open(b"", &bad).is_err(), "flip at {i} went unnoticed");
        }
        assert_eq!(
            c.open(b"", &sealed[..RECORD_OVERHEAD - 1]),
            Err(CipherError::Corrupt("is truncated"))
        );
    }

    #[test]
    fn a_rewrapped_key_opens_old_records_after_rotation_and_a_disabled_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (keys, p) = provider(dir.path());
        let c = RecordCipher::generate(p.clone()).unwrap();
        let sealed = c.seal(b"", b"kept").unwrap();
        let before = c.stored_key();
        let v2 = keys.rotate().unwrap();
        let after = c.rewrap().unwrap();
        assert_eq!(after.wrapped.version, v2);
        let again =
            RecordCipher::unwrap(p.clone(), StoredKey::decode(&after.encode()).unwrap()).unwrap();
        assert_eq!(again.open(b"", &sealed).unwrap(), b"kept");
        keys.disable_version(before.wrapped.version).unwrap();
        let err = RecordCipher::unwrap(p, before).unwrap_err();
        assert!(err.to_string().contains("disabled"), "{err}");
    }
}
