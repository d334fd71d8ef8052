//! Encryption at rest for Outpost: envelope encryption with a streaming AEAD format.
//!
//! Every object gets a random AES-256 data key, wrapped by a key-encryption key (KEK) from a
//! [`KeyProvider`]; the object body is split into fixed-size segments sealed with AES-256-GCM
//! in the STREAM construction, so it can be written and read as a stream and read at random
//! offsets. The format is described in [`header`].
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
mod provider;
mod stream;

pub use device::{DeviceKeyStore, WipeReport};
pub use error::KeysError;
pub use header::Header;
pub use provider::{DATA_KEY_LEN, DataKey, KeyProvider, WrapAlgorithm, WrappedKey};
pub use stream::{
    DEFAULT_SEGMENT_SIZE, DecryptingReader, EncryptingWriter, RangeReader, open, rewrap,
    rewrap_file, seal,
};
