//! Encryption at rest for Outpost: envelope encryption with a streaming AEAD format.
//!
//! Every object gets a random AES-256 data key, wrapped by a key-encryption key (KEK) from a
//! [`KeyProvider`]; the object body is split into fixed-size segments sealed with AES-256-GCM
//! in the STREAM construction, so it can be written and read as a stream and read at random
//! offsets. The format is described in [`header`].
//!
//! Two KEK providers, both wrapping with AES-256 key wrap with padding (RFC 5649), so their
//! headers are interchangeable and data moves between them by rewrapping:
//!
//! * [`DeviceKeyStore`] ([`device`]): device-managed versioned KEKs in a private directory,
//!   optionally sealed with a passphrase.
//! * [`Pkcs11Provider`] ([`pkcs11`]): customer-managed KEKs generated and kept inside an HSM
//!   (non-extractable, sensitive), used over PKCS#11 with `CKM_AES_KEY_WRAP_PAD`.
//!
//! Rotating a KEK ([`DeviceKeyStore::rotate`], [`Pkcs11Provider::rotate`]) makes a new version
//! current while older versions keep unwrapping, so nothing goes offline; [`rewrap`] and
//! [`rewrap_file`] then move an object's data key to the new version without touching its
//! segments (`rewrap_file` replaces the file atomically, so concurrent readers never see a torn
//! header). A disabled, expired or missing KEK version is an error naming the key and version
//! ([`KeysError::KeyVersionDisabled`], [`KeysError::KeyVersionExpired`],
//! [`KeysError::KeyVersionMissing`]); there is no fallback that could yield plaintext.
//!
//! ```
//! use std::io::{Read, Write};
//! use outpost_keys::{DeviceKeyStore, EncryptingWriter, DecryptingReader};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let keys = DeviceKeyStore::open(dir.path().join("keys"), "device-kek").unwrap();
//! let mut w = EncryptingWriter::new(&keys, Vec::new()).unwrap();
//! w.write_all(b"telemetry").unwrap();
//! let object = w.finish().unwrap();
//!
//! let mut plain = Vec::new();
//! DecryptingReader::new(&keys, &object[..]).unwrap().read_to_end(&mut plain).unwrap();
//! assert_eq!(plain, b"telemetry");
//! ```

pub mod device;
mod error;
pub mod header;
pub mod pkcs11;
mod provider;
mod stream;

pub use device::{DeviceKeyStore, WipeReport, write_private};
pub use error::KeysError;
pub use header::Header;
pub use pkcs11::{Pkcs11Config, Pkcs11Provider};
pub use provider::{DATA_KEY_LEN, DataKey, KeyProvider, WrapAlgorithm, WrappedKey};
pub use stream::{
    DEFAULT_SEGMENT_SIZE, DecryptingReader, EncryptingWriter, RangeReader, open, rewrap,
    rewrap_file, seal,
};
