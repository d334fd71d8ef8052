//! Per-store resource ceilings: linear memory and tables.
//!
//! Growth past a ceiling is an immediate trap carrying [`LimitExceeded`], so the host can tell
//! "ran out of its memory grant" apart from any other trap.

use wasmtime::ResourceLimiter;

/// A ceiling the plugin hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Linear memory growth past the ceiling.
    #[error("memory growth to {requested} bytes exceeds the ceiling of {limit} bytes")]
    Memory {
        /// Bytes asked for.
        requested: u64,
        /// The ceiling.
        limit: u64,
    },
    /// Table growth past the limit.
    #[error("table growth to {requested} elements exceeds the limit of {limit}")]
    Table {
        /// Elements asked for.
        requested: u64,
        /// The limit.
        limit: u64,
    },
}

/// The limiter kept in each store.
#[derive(Debug, Clone)]
pub struct PluginLimiter {
    memory_bytes: u64,
    table_elements: u64,
    /// The largest memory any instance in this store reached, in bytes.
    pub peak_memory: u64,
}

impl PluginLimiter {
    /// A limiter with the given ceilings.
    pub fn new(memory_bytes: u64, table_elements: u64) -> PluginLimiter {
        PluginLimiter {
            memory_bytes,
            table_elements,
            peak_memory: 0,
        }
    }
}

impl ResourceLimiter for PluginLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.memory_bytes {
            return Err(LimitExceeded::Memory {
                requested: desired,
                limit: self.memory_bytes,
            }
            .into());
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.table_elements {
            return Err(LimitExceeded::Table {
                requested: desired,
                limit: self.table_elements,
            }
            .into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}
