//! Host services that plugins reach through their grants: the message [`bus`] and the
//! key-value store [`kv`]. Neither knows about WebAssembly; the runtime adapts them to the
//! `outpost:plugin` interfaces and enforces grants before calling them.
//!
//! The delivery side of routes lives here too: a [`sink`] (MQTT broker or HTTP webhook) takes
//! messages through a durable, bounded [`spool`] (store and forward).
//!
//! Both stores can keep their values encrypted at rest ([`cipher`]): a data key per store,
//! wrapped by the host's key-encryption key.

pub mod bus;
pub mod cipher;
pub mod kv;
pub mod sink;
pub mod spool;

pub use bus::{Bus, BusMessage, SubscriberStats, Subscription};
pub use cipher::{CipherError, RecordCipher, SharedProvider, StoredKey};
pub use kv::{KvError, KvNamespace, KvStore};
pub use sink::{Sink, SinkConfig, SinkError, SinkStats, SinkTarget};
pub use spool::{Spool, SpoolError, SpoolLimits, SpoolStats, Spooled};
