//! Host services that plugins reach through their grants: the message [`bus`] and the
//! key-value store [`kv`]. Neither knows about WebAssembly; the runtime adapts them to the
//! `outpost:plugin` interfaces and enforces grants before calling them.

pub mod bus;
pub mod kv;

pub use bus::{Bus, BusMessage, Subscription};
pub use kv::{KvError, KvNamespace, KvStore};
