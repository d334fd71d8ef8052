//! The crate's error type.

use std::path::PathBuf;

/// Why a security operation failed. Every variant names the file, input or peer involved.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its contents are unusable.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Part of a device identity exists but one of its files is missing.
    #[error(
        "{} is missing but other identity files exist in {}; restore it, or remove the whole \
         directory to create a new identity (clients that pinned the old CA must then re-pin)",
        path.display(),
        dir.display()
    )]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// The identity directory.
        dir: PathBuf,
    },
    /// Generating a key or certificate failed.
    #[error("generating {what}: {reason}")]
    Generate {
        /// `CA certificate`, `endpoint certificate`, ...
        what: &'static str,
        /// The underlying error.
        reason: String,
    },
    /// Building a TLS configuration failed.
    #[error("TLS configuration: {0}")]
    TlsConfig(String),
    /// A token name is not `[a-z0-9_-]{1,64}`.
    #[error("invalid token name `{0}`: use 1 to 64 of a-z, 0-9, `_` and `-`")]
    InvalidTokenName(String),
    /// A token with this name already exists.
    #[error("a token named `{0}` already exists")]
    DuplicateToken(String),
    /// No token has this name.
    #[error("no token named `{0}`")]
    NoSuchToken(String),
    /// A role name is not `viewer`, `operator` or `ingest`.
    #[error("unknown role `{0}`: expected `viewer`, `operator` or `ingest`")]
    InvalidRole(String),
    /// The system random number generator failed.
    #[error("random number generator: {0}")]
    Random(String),
    /// An API base URL or path cannot be used.
    #[error("invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An API token cannot be sent in an HTTP header.
    #[error("the API token contains characters that are not allowed in an HTTP header")]
    InvalidTokenValue,
    /// Connecting to the API server failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server's certificate was rejected (not issued by the pinned CA, wrong name, expired).
    #[error("certificate of {server} rejected: {reason}")]
    Certificate {
        /// The server name that was checked.
        server: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake with {server}: {reason}")]
    Handshake {
        /// The server name.
        server: String,
        /// Why it failed.
        reason: String,
    },
    /// The HTTP exchange failed.
    #[error("{method} {url}: {reason}")]
    Http {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The server answered with a status that is not a success.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// The request method.
        method: String,
        /// The request URL.
        url: String,
        /// The status code.
        status: u16,
        /// The response body (lossy UTF-8, truncated).
        body: String,
    },
    /// A response body is not the expected JSON.
    #[error("{url}: response is not the expected JSON: {reason}")]
    BadJson {
        /// The request URL.
        url: String,
        /// The parse error.
        reason: String,
    },
}

impl SecurityError {
    /// An `Io` error for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SecurityError {
        SecurityError::Io {
            path: path.into(),
            source,
        }
    }

    /// A `Corrupt` error for `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> SecurityError {
        SecurityError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
