//! Errors of the runtime, and the classification of a failed call into what the plugin did.

use wasmtime::Trap;
use wasmtime::component::ResourceTableError;

use crate::limits::LimitExceeded;

/// Why loading or running something in the runtime failed (not a plugin's own failure).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine could not be configured.
    #[error("engine: {0}")]
    Engine(String),
    /// The compile cache could not be opened.
    #[error("compile cache: {0}")]
    Cache(String),
    /// The bytes are not a valid component or module for this host.
    #[error("compile: {0}")]
    Compile(String),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path involved.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The plugin's imports exceed its grants, or name something the host does not provide.
    #[error(transparent)]
    Capability(#[from] crate::capability::CapabilityError),
    /// The plugin cannot be prepared (linking, kind mismatch, missing export).
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// Plugin name.
        plugin: String,
        /// What was wrong.
        message: String,
    },
    /// A host service failed.
    #[error("{0}")]
    Service(String),
}

impl RuntimeError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub(crate) fn plugin(plugin: &str, message: impl std::fmt::Display) -> RuntimeError {
        RuntimeError::Plugin {
            plugin: plugin.to_string(),
            message: message.to_string(),
        }
    }
}

/// Why one call into a plugin failed. The host keeps running in every case; the variant says
/// whether the plugin misbehaved (a limit) or merely reported an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its deadline of {deadline_ms} ms")]
    DeadlineExceeded {
        /// Plugin name.
        plugin: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The plugin tried to grow its memory past its ceiling.
    #[error(
        "plugin `{plugin}` tried to grow its memory to {requested} bytes, above its ceiling of {limit} bytes"
    )]
    MemoryLimitExceeded {
        /// Plugin name.
        plugin: String,
        /// Bytes asked for.
        requested: u64,
        /// The ceiling.
        limit: u64,
    },
    /// The plugin tried to grow a table past its limit.
    #[error(
        "plugin `{plugin}` tried to grow a table to {requested} elements, above its limit of {limit}"
    )]
    TableLimitExceeded {
        /// Plugin name.
        plugin: String,
        /// Elements asked for.
        requested: u64,
        /// The limit.
        limit: u64,
    },
    /// The plugin holds too many host resource handles.
    #[error("plugin `{plugin}` holds more than {limit} resource handles")]
    HandleLimitExceeded {
        /// Plugin name.
        plugin: String,
        /// The limit.
        limit: u64,
    },
    /// The plugin exhausted its wasm stack.
    #[error("plugin `{plugin}` overflowed its stack")]
    StackOverflow {
        /// Plugin name.
        plugin: String,
    },
    /// The plugin returned more than its output limit allows.
    #[error("plugin `{plugin}` returned {size} bytes, above its output limit of {limit} bytes")]
    OutputTooLarge {
        /// Plugin name.
        plugin: String,
        /// Bytes it tried to return.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Any other trap (unreachable, a panic in the guest, a bad memory access, ...).
    #[error("plugin `{plugin}` trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The trap, as wasmtime describes it.
        message: String,
    },
    /// The plugin ran fine and returned an error of its own.
    #[error("plugin `{plugin}` returned an error: {message}")]
    Guest {
        /// Plugin name.
        plugin: String,
        /// Its error text.
        message: String,
    },
    /// The plugin could not be instantiated for this call.
    #[error("plugin `{plugin}` could not be instantiated: {message}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// Why.
        message: String,
    },
    /// The plugin published or returned a message the host refused.
    #[error("plugin `{plugin}`: {message}")]
    Refused {
        /// Plugin name.
        plugin: String,
        /// Why.
        message: String,
    },
}

impl CallError {
    /// Whether this failure was the plugin breaking a limit or trapping (counts towards restart
    /// and rollback policies), as opposed to an error it returned.
    pub fn is_trap(&self) -> bool {
        !matches!(self, CallError::Guest { .. } | CallError::Refused { .. })
    }

    /// A short stable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::DeadlineExceeded { .. } => "deadline",
            CallError::MemoryLimitExceeded { .. } => "memory",
            CallError::TableLimitExceeded { .. } => "table",
            CallError::HandleLimitExceeded { .. } => "handles",
            CallError::StackOverflow { .. } => "stack",
            CallError::OutputTooLarge { .. } => "output",
            CallError::Trap { .. } => "trap",
            CallError::Guest { .. } => "guest",
            CallError::Instantiate { .. } => "instantiate",
            CallError::Refused { .. } => "refused",
        }
    }
}

/// Marker error raised by the epoch callback when a call's deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub(crate) struct DeadlinePassed;

/// Turns a wasmtime error from a call into what the plugin did.
pub(crate) fn classify(
    plugin: &str,
    deadline_ms: u64,
    handle_limit: u64,
    err: &wasmtime::Error,
) -> CallError {
    let plugin = plugin.to_string();
    if err.downcast_ref::<DeadlinePassed>().is_some() {
        return CallError::DeadlineExceeded {
            plugin,
            deadline_ms,
        };
    }
    if let Some(limit) = err.downcast_ref::<LimitExceeded>() {
        return match *limit {
            LimitExceeded::Memory { requested, limit } => CallError::MemoryLimitExceeded {
                plugin,
                requested,
                limit,
            },
            LimitExceeded::Table { requested, limit } => CallError::TableLimitExceeded {
                plugin,
                requested,
                limit,
            },
        };
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::StackOverflow => CallError::StackOverflow { plugin },
            Trap::Interrupt => CallError::DeadlineExceeded {
                plugin,
                deadline_ms,
            },
            other => CallError::Trap {
                plugin,
                message: format!("{other}: {err:#}"),
            },
        };
    }
    if err.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    }) {
        return CallError::HandleLimitExceeded {
            plugin,
            limit: handle_limit,
        };
    }
    CallError::Trap {
        plugin,
        message: format!("{err:#}"),
    }
}
