//! Errors: what a plugin sees (a `wasi:nn` error code and a message) and why a model did not load.

use std::fmt;

/// The `wasi:nn` error codes the host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The caller passed a bad argument: a wrong tensor type, shape or size, an unknown input.
    InvalidArgument,
    /// The graph's encoding is not one the host runs.
    InvalidEncoding,
    /// The computation did not finish in time.
    Timeout,
    /// The engine failed.
    RuntimeError,
    /// The operation is not supported (e.g. a tensor type an engine cannot carry).
    UnsupportedOperation,
    /// The graph is larger than the plugin may load.
    TooLarge,
    /// No such graph, or not granted.
    NotFound,
    /// The host refused: loading bytes without the grant.
    Security,
}

/// A failed `wasi:nn` operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct NnError {
    /// The code the plugin sees.
    pub code: Code,
    /// What went wrong, for the plugin's author and the host's log.
    pub message: String,
}

impl NnError {
    /// An `invalid-argument` error.
    pub fn invalid(message: impl Into<String>) -> NnError {
        NnError {
            code: Code::InvalidArgument,
            message: message.into(),
        }
    }
    /// A `runtime-error`.
    pub fn runtime(message: impl Into<String>) -> NnError {
        NnError {
            code: Code::RuntimeError,
            message: message.into(),
        }
    }
    /// An `unsupported-operation` error.
    pub fn unsupported(message: impl Into<String>) -> NnError {
        NnError {
            code: Code::UnsupportedOperation,
            message: message.into(),
        }
    }
    /// A `not-found` error.
    pub fn not_found(message: impl Into<String>) -> NnError {
        NnError {
            code: Code::NotFound,
            message: message.into(),
        }
    }
    /// Any code.
    pub fn new(code: Code, message: impl Into<String>) -> NnError {
        NnError {
            code,
            message: message.into(),
        }
    }
}

/// Why a model could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Reading the file failed.
    #[error("model {model}: cannot read {path}: {reason}")]
    Read {
        /// Model name.
        model: String,
        /// File.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The file is not the one the manifest pinned.
    #[error("model {model}: {path} has sha256 {actual}, the manifest expects {expected}")]
    Digest {
        /// Model name.
        model: String,
        /// File.
        path: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        actual: String,
    },
    /// The manifest asks for ONNX Runtime but its library is not available.
    #[error("model {model}: engine onnxruntime is not available: {reason}")]
    EngineUnavailable {
        /// Model name.
        model: String,
        /// Why.
        reason: String,
    },
    /// The engine refused the model.
    #[error("model {model}: {engine} could not load it: {reason}")]
    Engine {
        /// Model name.
        model: String,
        /// Engine name.
        engine: String,
        /// The engine's message.
        reason: String,
    },
}

/// Formats an engine error as one line (engines like to nest causes).
pub(crate) fn one_line(e: &dyn fmt::Display) -> String {
    let text = format!("{e:#}");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
