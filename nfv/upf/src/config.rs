//! The UPF's configuration, from the plugin's `config` block.

use alloc::format;
use alloc::string::String;
use core::net::Ipv4Addr;

/// Default interval between our Heartbeat Requests to each associated SMF.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 5_000;

/// Consecutive unanswered Heartbeat Requests after which a peer is reported as unreachable.
pub const HEARTBEAT_MISSES_WARN: u32 = 3;

/// Validated configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// `n3-address`: the UPF's GTP-U address on N3 (outer source of encapsulated packets, the
    /// address of the F-TEIDs it allocates). Required.
    pub n3_address: Ipv4Addr,
    /// `node-id`: the PFCP Node ID and UP F-SEID address (default: `n3-address`).
    pub node_id: Ipv4Addr,
    /// `heartbeat-interval-ms`: how often to send Heartbeat Requests to associated SMFs
    /// (default 5000; 0 disables them).
    pub heartbeat_interval_ms: u64,
}

impl Config {
    /// A configuration with the given N3 address and every default.
    pub fn new(n3_address: Ipv4Addr) -> Self {
        Config {
            n3_address,
            node_id: n3_address,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
        }
    }

    /// Reads and validates the keys through `get` (the plugin passes `outpost_sdk::config::get`);
    /// the error names the key and what was expected.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let addr = |key: &str, text: &str| {
            text.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("config `{key}` = {text:?} is not an IPv4 address (a.b.c.d)"))
        };
        let n3 = get("n3-address").ok_or_else(|| {
            String::from("config `n3-address` is missing: the UPF's IPv4 address on N3 is required")
        })?;
        let n3_address = addr("n3-address", &n3)?;
        if n3_address.is_unspecified() || n3_address.is_broadcast() || n3_address.is_multicast() {
            return Err(format!(
                "config `n3-address` = {n3:?} must be a unicast address"
            ));
        }
        let node_id = match get("node-id") {
            Some(text) => addr("node-id", &text)?,
            None => n3_address,
        };
        let heartbeat_interval_ms = match get("heartbeat-interval-ms") {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                format!("config `heartbeat-interval-ms` = {text:?} is not a number of milliseconds")
            })?,
            None => DEFAULT_HEARTBEAT_INTERVAL_MS,
        };
        Ok(Config {
            n3_address,
            node_id,
            heartbeat_interval_ms,
        })
    }
}
