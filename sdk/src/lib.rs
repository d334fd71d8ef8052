//! The Outpost plugin SDK: write a plugin as a plain Rust type, the SDK does the bindings.
//!
//! Enable the cargo feature of the world you implement (`pipeline`, `tiering-policy`,
//! `network-function`); jobs (`wasi:cli/command`) need no feature and use `fn main`. Every
//! plugin can use the host helpers in [`log`], [`config`], [`bus`] and [`kv`]; each works only if
//! the operator granted it (the host refuses to load a plugin that imports an ungranted
//! interface).
//!
//! ```ignore
//! use outpost_sdk::pipeline::{Guest, Message};
//!
//! struct Upper;
//!
//! impl Guest for Upper {
//!     fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
//!         outpost_sdk::log::info(&format!("message on {topic}"));
//!         Ok(vec![Message { topic: "upper".into(), payload: payload.to_ascii_uppercase() }])
//!     }
//! }
//!
//! outpost_sdk::export_pipeline!(Upper);
//! ```

#![no_std]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// Raw bindings for the host interfaces, shared by every world.
#[doc(hidden)]
pub mod host {
    wit_bindgen::generate!({
        world: "imports",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
    });
}

pub use host::outpost::plugin::bus::BusError;
pub use host::outpost::plugin::kv::KvError;

#[cfg(feature = "network-function")]
pub use network_function::export_network_function;
#[cfg(feature = "pipeline")]
pub use pipeline::export_pipeline;
#[cfg(feature = "tiering-policy")]
pub use tiering_policy::export_tiering_policy;

/// Bindings for the `pipeline` world: implement [`pipeline::Guest`], then call
/// [`export_pipeline!`].
#[cfg(feature = "pipeline")]
pub mod pipeline {
    wit_bindgen::generate!({
        world: "pipeline",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
            "outpost:plugin/bus@0.1.0": crate::host::outpost::plugin::bus,
            "outpost:plugin/kv@0.1.0": crate::host::outpost::plugin::kv,
        },
        pub_export_macro: true,
        export_macro_name: "export_pipeline",
        default_bindings_module: "outpost_sdk::pipeline",
    });
}

/// Bindings for the `tiering-policy` world: implement [`tiering_policy::Guest`], then call
/// [`export_tiering_policy!`].
#[cfg(feature = "tiering-policy")]
pub mod tiering_policy {
    wit_bindgen::generate!({
        world: "tiering-policy",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
            "outpost:plugin/kv@0.1.0": crate::host::outpost::plugin::kv,
        },
        pub_export_macro: true,
        export_macro_name: "export_tiering_policy",
        default_bindings_module: "outpost_sdk::tiering_policy",
    });
}

/// Bindings for the `network-function` world: implement [`network_function::Guest`], then
/// call [`export_network_function!`].
#[cfg(feature = "network-function")]
pub mod network_function {
    wit_bindgen::generate!({
        world: "network-function",
        path: "../wit",
        runtime_path: "wit_bindgen::rt",
        with: {
            "outpost:plugin/log@0.1.0": crate::host::outpost::plugin::log,
            "outpost:plugin/config@0.1.0": crate::host::outpost::plugin::config,
        },
        pub_export_macro: true,
        export_macro_name: "export_network_function",
        default_bindings_module: "outpost_sdk::network_function",
    });
    pub use outpost::plugin::tables::{Table, open as open_table};
}

/// Structured logging into the host's log, tagged with the plugin's name.
pub mod log {
    use crate::host::outpost::plugin::log::{Level, log};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's configuration block from the manifest.
pub mod config {
    use super::*;
    use crate::host::outpost::plugin::config as raw;

    /// The value for `key`, if set.
    pub fn get(key: &str) -> Option<String> {
        raw::get(key)
    }
    /// The value for `key`, or `default` when unset.
    pub fn get_or(key: &str, default: &str) -> String {
        raw::get(key).unwrap_or_else(|| String::from(default))
    }
    /// All configured keys, sorted.
    pub fn keys() -> Vec<String> {
        raw::keys()
    }
}

/// Publishing on the host's message bus (granted topics only).
pub mod bus {
    use crate::BusError;
    use crate::host::outpost::plugin::bus as raw;

    /// Publishes `payload` on `topic`.
    pub fn publish(topic: &str, payload: &[u8]) -> Result<(), BusError> {
        raw::publish(topic, payload)
    }
}

/// The plugin's key-value namespace in the host's store.
pub mod kv {
    use super::*;
    use crate::KvError;
    use crate::host::outpost::plugin::kv as raw;

    /// The value under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        raw::get(key)
    }
    /// Stores `value` under `key`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
        raw::set(key, value)
    }
    /// Removes `key`; returns whether it existed.
    pub fn delete(key: &str) -> Result<bool, KvError> {
        raw::delete(key)
    }
    /// Keys starting with `prefix`, sorted.
    pub fn list_keys(prefix: &str) -> Result<Vec<String>, KvError> {
        raw::list_keys(prefix)
    }
    /// Reads a little-endian `u64` counter (0 when absent), adds `delta`, stores and returns it.
    pub fn increment(key: &str, delta: u64) -> Result<u64, KvError> {
        let current = match raw::get(key)? {
            Some(bytes) if bytes.len() == 8 => {
                let mut raw_bytes = [0u8; 8];
                raw_bytes.copy_from_slice(&bytes);
                u64::from_le_bytes(raw_bytes)
            }
            _ => 0,
        };
        let next = current.wrapping_add(delta);
        raw::set(key, &next.to_le_bytes())?;
        Ok(next)
    }
}
